"""Train MACE models with mace-torch's own training code.

Training runs ``mace.cli.run_train`` in a child process: MACE configures global
logging and torch defaults, which must not leak into the workflow process, and the
child's CPU time is then measured exactly. The child is forked from a server that has
already imported mace-torch (:func:`alflow.train.child.run_module`), so small
trainings do not pay seconds of imports each. Each committee member is its own job so
that a workflow manager can run members in parallel.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import JobConfig, Maker, job

from alflow import progress
from alflow.accounting import EnergyModel, Meter
from alflow.config import MACEConfig
from alflow.dataset import job_dataset
from alflow.frames import Frame, read_frames, write_extxyz
from alflow.train.child import run_module
from alflow.train.records import ModelRecord, dataset_hash, file_sha256, kept_model

#: Replay frames for multihead fine-tuning, in the training work folder.
REPLAY_FILE = "replay.xyz"

_EPOCH = re.compile(r"Epoch (\d+):.*RMSE_F=\s*([\d.]+)")


class TrainingError(RuntimeError):
    """mace-torch exited with an error."""


@dataclass
class StartPoint:
    """Where a training run starts and how long it runs (see :func:`plan_start`)."""

    mode: str
    model: Path | None
    parent_sha256: str | None
    epochs: int
    lr: float


def plan_start(
    settings: MACEConfig, iteration: int, member: int, previous: list[ModelRecord]
) -> StartPoint:
    """Decide how member ``member`` of ``iteration`` starts (pure).

    Warm start (when ``warm_start_epochs`` is set and a previous model exists)
    continues from the previous iteration's weights of the same member, for fewer
    epochs at the same learning rate (a lower or decaying one absorbed new frames
    more slowly on acetylacetone; see docs/architecture.md). Otherwise a foundation
    model is fine-tuned when one is configured, else training starts from scratch.
    """
    if settings.warm_start_epochs is not None and iteration >= 1 and previous:
        parent = previous[member % len(previous)]
        model = Path(parent.backbone or parent.path)
        sha = file_sha256(model) if parent.backbone else parent.sha256
        return StartPoint("warm", model, sha, settings.warm_start_epochs, settings.lr)
    if settings.foundation is not None:
        path = Path(settings.foundation.path)
        return StartPoint(
            settings.foundation.mode, path, file_sha256(path), settings.epochs, settings.lr
        )
    return StartPoint("scratch", None, None, settings.epochs, settings.lr)


def bootstrap_resample(frames: list[Frame], seed: int) -> list[Frame]:
    """A bootstrap resample: as many frames, drawn with replacement."""
    rng = np.random.default_rng(seed)
    return [frames[i] for i in rng.integers(0, len(frames), len(frames))]


@dataclass
class MACETrainMaker(Maker):
    """Train one MACE model on the campaign's labelled frames.

    With ``settings.uncertainty == "committee"`` this is one committee member; with
    ``"shallow"`` the model's last layer then receives a shallow ensemble fitted on
    the same frames.

    Parameters
    ----------
    name
        Job name.
    settings
        Architecture and optimisation settings.
    energy_model
        Power model for the compute record.
    """

    name: str = "train mace"
    settings: MACEConfig = field(default_factory=MACEConfig)
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    @job(config=JobConfig(expose_store=True))
    def make(
        self,
        campaign: str,
        iteration: int,
        member: int,
        seed: int,
        model_dir: str,
        after: Any = None,
        previous: list[ModelRecord] | None = None,
    ) -> ModelRecord:
        """Train member ``member`` of iteration ``iteration``.

        Parameters
        ----------
        campaign
            Campaign whose dataset to train on.
        iteration
            Current iteration; frames labelled up to and including it are used.
        member
            Committee member index.
        seed
            Random seed for initialisation and data order.
        model_dir
            Folder that receives the model file and the training log.
        after
            Outputs of the jobs that must finish first (the iteration's labels);
            passing them makes every workflow manager order the jobs.
        previous
            The previous iteration's models, for a warm start.
        """
        frames = job_dataset(campaign).frames(max_iteration=iteration)
        previous = [ModelRecord.model_validate(m) for m in previous or []]
        labelled = dataset_hash([f.frame_id for f in frames])
        kept = kept_model(previous, member, labelled)
        if kept is not None:
            progress.report(iteration, "train", f"member {member}: no new labels, model kept")
            return kept
        start = plan_start(self.settings, iteration, member, previous)
        start = with_min_steps(start, self.settings, len(frames))
        if self.settings.bootstrap and self.settings.uncertainty == "committee":
            frames = bootstrap_resample(frames, seed)
        progress.report(
            iteration, "train", f"member {member}: {len(frames)} frames ({start.mode})", member
        )
        with Meter("train", self.name, self.energy_model) as meter:
            record = train_mace(
                frames,
                self.settings,
                Path(model_dir),
                f"member_{member}",
                seed,
                on_epoch=lambda epoch, rmse_f: progress.report(
                    iteration,
                    "train",
                    f"member {member} epoch {epoch}, valid force RMSE {rmse_f:.0f} meV/Å",
                    epoch,
                    start.epochs,
                ),
                start=start,
            )
            if self.settings.uncertainty == "shallow":
                record = add_shallow_ensemble(record, frames, self.settings, seed)
        return record.model_copy(
            update={
                "iteration": iteration,
                "member": member,
                "compute": meter.record,
                "labelled_hash": labelled,
            }
        )


def add_shallow_ensemble(
    record: ModelRecord, frames: list[Frame], settings: MACEConfig, seed: int
) -> ModelRecord:
    """Fit a shallow ensemble on a trained model; the record then points to it."""
    backbone = Path(record.path)
    target = backbone.with_name(backbone.stem + ".shallow.model")
    fit = fit_shallow_ensemble(backbone, frames, settings, seed, target)
    return record.model_copy(
        update={
            "path": str(target.resolve()),
            "sha256": file_sha256(target),
            "kind": "mace-shallow",
            "backbone": str(backbone),
            "architecture": {**record.architecture, "shallow_members": settings.shallow_members},
            "metrics": {**record.metrics, **{f"shallow_{k}": v for k, v in fit.items()}},
        }
    )


def fit_shallow_ensemble(
    backbone: Path, frames: list[Frame], settings: MACEConfig, seed: int, target: Path
) -> dict[str, float]:
    """Fit the shallow ensemble that ``settings`` ask for on a trained model.

    The model ``backbone`` with its members is saved to ``target``; returns the fit's
    metrics.
    """
    from alflow.train.shallow import build_shallow_model

    return build_shallow_model(
        backbone,
        frames,
        target,
        settings.shallow_members,
        seed,
        settings.shallow_steps,
        settings.dtype,
        settings.shallow_fit,
    )


def mace_arguments(
    settings: MACEConfig,
    train_file: Path,
    work_dir: Path,
    name: str,
    seed: int,
    n_frames: int,
    start: StartPoint | None = None,
) -> list[str]:
    """Command-line arguments for ``mace.cli.run_train``."""
    start = start or StartPoint("scratch", None, None, settings.epochs, settings.lr)
    e0s = settings.e0s if isinstance(settings.e0s, str) else json.dumps(settings.e0s)
    if start.mode == "multihead" and e0s == "average":
        e0s = "foundation"  # mace-torch refuses averaged E0s for multihead fine-tuning
    batch = batch_size(settings, n_frames)
    args = [
        f"--name={name}",
        f"--work_dir={work_dir}",
        f"--train_file={train_file}",
        f"--valid_fraction={settings.valid_fraction}",
        f"--E0s={e0s}",
        "--model=MACE",
        f"--num_channels={settings.num_channels}",
        f"--max_L={settings.max_L}",
        f"--r_max={settings.r_max}",
        f"--num_interactions={settings.num_interactions}",
        f"--correlation={settings.correlation}",
        f"--max_num_epochs={start.epochs}",
        f"--batch_size={batch}",
        f"--valid_batch_size={batch}",
        f"--lr={start.lr}",
        f"--energy_weight={settings.energy_weight}",
        f"--forces_weight={settings.forces_weight}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        f"--seed={seed}",
        f"--default_dtype={settings.dtype}",
        "--device=cpu",
        "--eval_interval=1",
        "--plot=False",
        "--num_workers=0",
    ]
    if start.model is not None:
        args += [f"--foundation_model={start.model}"]
        if start.mode == "multihead":
            assert settings.foundation is not None and settings.foundation.replay_file
            args += [
                "--multiheads_finetuning=True",
                f"--pt_train_file={work_dir / REPLAY_FILE}",
                f"--num_samples_pt={settings.foundation.replay_samples}",
                "--force_mh_ft_lr=True",  # keep the configured learning rate
            ]
        else:
            args += ["--multiheads_finetuning=False"]
    if settings.stage_two_from is not None:
        stage_two = max(1, round(start.epochs * settings.stage_two_from))
        args += [
            "--swa",
            f"--start_swa={stage_two}",
            f"--swa_energy_weight={settings.stage_two_energy_weight}",
            f"--swa_forces_weight={settings.forces_weight}",
        ]
    if settings.ema_decay is not None:
        args += ["--ema", f"--ema_decay={settings.ema_decay}"]
    return args


def mace_train_size(n_frames: int, valid_fraction: float) -> int:
    """Frames mace-torch trains on after splitting off its validation frames."""
    return min(n_frames - int(valid_fraction * n_frames), n_frames - 1)


def batch_size(settings: MACEConfig, n_frames: int) -> int:
    """The batch size, capped by the number of training frames."""
    return max(1, min(settings.batch_size, mace_train_size(n_frames, settings.valid_fraction)))


def with_min_steps(start: StartPoint, settings: MACEConfig, n_frames: int) -> StartPoint:
    """``start`` with enough epochs for ``settings.min_steps`` optimiser steps (pure).

    mace-torch drops the last incomplete batch, so an epoch of n training frames is
    ``n // batch`` steps: 8 frames at batch 5 make one step an epoch, and 80 epochs
    would train a model for only 80 steps. A warm start gets the same share of
    ``min_steps`` as of the epochs (``warm_start_epochs / epochs``), so that its cost
    relative to a full training stays what the settings say.
    """
    if settings.min_steps is None:
        return start
    steps = settings.min_steps
    if start.mode == "warm":
        steps = settings.min_steps * start.epochs / settings.epochs
    per_epoch = max(
        1, mace_train_size(n_frames, settings.valid_fraction) // batch_size(settings, n_frames)
    )
    epochs = max(start.epochs, math.ceil(steps / per_epoch))
    return dataclasses.replace(start, epochs=epochs)


def train_mace(
    frames: list[Frame],
    settings: MACEConfig,
    model_dir: Path,
    name: str,
    seed: int,
    on_epoch: Any = None,
    start: StartPoint | None = None,
) -> ModelRecord:
    """Train one MACE model and return its record (without compute).

    Parameters
    ----------
    frames
        Labelled training frames (at least two).
    settings
        MACE settings.
    model_dir
        Receives ``<name>.model`` and ``<name>.log``.
    name
        Base name of the files.
    seed
        Random seed.
    on_epoch
        Called as ``on_epoch(epoch, valid_force_rmse_meV_per_A)`` while training.
    start
        Where training starts (default: from scratch, ``settings.epochs``).

    Raises
    ------
    ValueError
        With fewer than two labelled frames.
    TrainingError
        If mace-torch fails; the message holds the end of its log.
    """
    if len(frames) < 2:
        raise ValueError(f"MACE needs at least 2 labelled frames, got {len(frames)}")
    model_dir = Path(model_dir).resolve()  # mace-torch runs in the work folder
    model_dir.mkdir(parents=True, exist_ok=True)
    work = model_dir / f".{name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        train_file = work / "train.xyz"
        write_extxyz(
            frames,
            train_file,
            "REF_energy",
            "REF_forces",
            "REF_stress",
            with_provenance=False,
        )
        start = start or StartPoint("scratch", None, None, settings.epochs, settings.lr)
        start = with_min_steps(start, settings, len(frames))
        if start.mode == "multihead":
            assert settings.foundation is not None and settings.foundation.replay_file
            replay = read_frames(settings.foundation.replay_file)
            write_extxyz(
                replay, work / REPLAY_FILE, "REF_energy", "REF_forces", "REF_stress", False
            )
        args = mace_arguments(settings, train_file, work, name, seed, len(frames), start)
        _run_mace(args, work, model_dir / f"{name}.log", settings.threads, on_epoch)
        target = model_dir / f"{name}.model"
        if start.mode == "multihead":
            save_without_replay_head(final_model(work, name), target)
        else:
            shutil.copyfile(final_model(work, name), target)
        metrics = _final_metrics(work / "results")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ModelRecord(
        path=str(target.resolve()),
        sha256=file_sha256(target),
        kind="mace",
        architecture=model_architecture(target),
        start=start.mode,
        parent_sha256=start.parent_sha256,
        iteration=0,
        seed=seed,
        n_train_frames=len(frames),
        dataset_hash=dataset_hash([f.frame_id for f in frames]),
        metrics=metrics,
    )


def final_model(work: Path, name: str) -> Path:
    """The model MACE finished with: the stage-two model when stage two ran.

    MACE writes ``<name>.model`` after stage one and ``<name>_stagetwo.model`` after
    stage two; the stage-one model can carry a large energy offset that only stage
    two (with its high energy weight) removes.
    """
    stage_two = work / f"{name}_stagetwo.model"
    return stage_two if stage_two.is_file() else work / f"{name}.model"


def model_architecture(path: Path) -> dict[str, Any]:
    """The hyper-parameters of a trained MACE model, read from the model itself.

    Read from the file rather than the settings because fine-tuned and warm-started
    models keep the architecture of the model they started from.
    """
    import torch
    from ase.data import chemical_symbols

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        model = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "model": type(model).__name__,
        "r_max": float(model.r_max),
        "num_interactions": len(model.interactions),
        "hidden_irreps": str(model.products[0].linear.irreps_out),
        "elements": [chemical_symbols[int(z)] for z in model.atomic_numbers],
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }


def save_without_replay_head(source: Path, target: Path) -> None:
    """Save a multihead fine-tuned model with only the new head.

    The replay head only served to keep the foundation's knowledge during
    training; a single-head model is what MD and the estimators expect.
    """
    import torch
    from mace.tools.scripts_utils import remove_pt_head

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        model = torch.load(source, map_location="cpu", weights_only=False)
    if len(getattr(model, "heads", [])) > 1:
        model = remove_pt_head(model)
    torch.save(model, target)


def _run_mace(args: list[str], work: Path, log_path: Path, threads: int, on_epoch: Any) -> None:
    def report_epoch(line: str) -> None:
        match = _EPOCH.search(line)
        if match and on_epoch is not None:
            on_epoch(int(match.group(1)) + 1, float(match.group(2)))

    code, tail = run_module("mace.cli.run_train", args, work, log_path, threads, report_epoch)
    if code != 0:
        raise TrainingError(
            f"mace-torch training failed (exit {code}); full log in "
            f"{log_path}. Last lines:\n" + "\n".join(tail)
        )


def _final_metrics(results_dir: Path) -> dict[str, float]:
    """Errors of the last evaluation on MACE's own validation split."""
    last: dict[str, Any] = {}
    for path in sorted(results_dir.glob("*_train.txt")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("mode") == "eval":
                last = entry
    return {k: float(last[k]) for k in ("rmse_e_per_atom", "rmse_f", "mae_f") if k in last}
