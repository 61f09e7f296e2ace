"""Train MACE models with mace-torch's own training code.

Training runs ``mace.cli.run_train`` in a child process: MACE configures global
logging and torch defaults, which must not leak into the workflow process, and the
child's CPU time is then measured exactly. Each committee member is its own job so
that a workflow manager can run members in parallel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobflow import JobConfig, Maker, job

from alflow import progress
from alflow.accounting import EnergyModel, Meter
from alflow.config import MACEConfig
from alflow.dataset import job_dataset
from alflow.frames import Frame, write_extxyz
from alflow.train.records import ModelRecord, dataset_hash, file_sha256

_EPOCH = re.compile(r"Epoch (\d+):.*RMSE_F=\s*([\d.]+)")


class TrainingError(RuntimeError):
    """mace-torch exited with an error."""


@dataclass
class MACETrainMaker(Maker):
    """Train one MACE committee member on the campaign's labelled frames.

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
        """
        frames = job_dataset(campaign).frames(max_iteration=iteration)
        progress.report(iteration, "train", f"member {member}: {len(frames)} frames", member, None)
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
                    self.settings.epochs,
                ),
            )
        return record.model_copy(
            update={"iteration": iteration, "member": member, "compute": meter.record}
        )


def mace_arguments(
    settings: MACEConfig,
    train_file: Path,
    work_dir: Path,
    name: str,
    seed: int,
    n_frames: int,
) -> list[str]:
    """Command-line arguments for ``mace.cli.run_train``."""
    e0s = settings.e0s if isinstance(settings.e0s, str) else json.dumps(settings.e0s)
    batch = max(1, min(settings.batch_size, int(n_frames * (1 - settings.valid_fraction))))
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
        f"--max_num_epochs={settings.epochs}",
        f"--batch_size={batch}",
        f"--valid_batch_size={batch}",
        f"--lr={settings.lr}",
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
    if settings.stage_two_from is not None:
        start = max(1, round(settings.epochs * settings.stage_two_from))
        args += [
            "--swa",
            f"--start_swa={start}",
            f"--swa_energy_weight={settings.stage_two_energy_weight}",
            f"--swa_forces_weight={settings.forces_weight}",
        ]
    if settings.ema_decay is not None:
        args += ["--ema", f"--ema_decay={settings.ema_decay}"]
    return args


def train_mace(
    frames: list[Frame],
    settings: MACEConfig,
    model_dir: Path,
    name: str,
    seed: int,
    on_epoch: Any = None,
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

    Raises
    ------
    ValueError
        With fewer than two labelled frames.
    TrainingError
        If mace-torch fails; the message holds the end of its log.
    """
    if len(frames) < 2:
        raise ValueError(f"MACE needs at least 2 labelled frames, got {len(frames)}")
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
        args = mace_arguments(settings, train_file, work, name, seed, len(frames))
        _run_mace(args, work, model_dir / f"{name}.log", settings.threads, on_epoch)
        target = model_dir / f"{name}.model"
        shutil.copyfile(final_model(work, name), target)
        metrics = _final_metrics(work / "results")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ModelRecord(
        path=str(target.resolve()),
        sha256=file_sha256(target),
        kind="mace",
        architecture=architecture(settings),
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


def architecture(settings: MACEConfig) -> dict[str, Any]:
    """The hyper-parameters that define the network."""
    keys = (
        "r_max",
        "num_channels",
        "max_L",
        "num_interactions",
        "correlation",
        "dtype",
    )
    return {"model": "MACE", **{k: getattr(settings, k) for k in keys}}


def _run_mace(args: list[str], work: Path, log_path: Path, threads: int, on_epoch: Any) -> None:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "mace.cli.run_train", *args]
    tail: deque[str] = deque(maxlen=25)
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            match = _EPOCH.search(line)
            if match and on_epoch is not None:
                on_epoch(int(match.group(1)) + 1, float(match.group(2)))
    if proc.returncode != 0:
        raise TrainingError(
            f"mace-torch training failed (exit {proc.returncode}); full log in "
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
