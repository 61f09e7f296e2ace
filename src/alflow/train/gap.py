"""Train a GAP (2-body + SOAP) with quippy's ``gap_fit``.

``gap_fit`` runs as a child process (its Fortran runtime writes to stdout and may
abort the process on bad input). It writes ``gap.xml`` plus sparse-point files that
``gap.xml`` refers to by name; they all stay together in one folder per model.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import JobConfig, Maker, job

from alflow import progress
from alflow.accounting import EnergyModel, Meter
from alflow.config import GAPConfig
from alflow.dataset import job_dataset
from alflow.frames import Frame, write_extxyz
from alflow.train.child import run_logged
from alflow.train.records import ModelRecord, dataset_hash, file_sha256, kept_model


class GAPFitError(RuntimeError):
    """gap_fit exited with an error."""


@dataclass
class GAPTrainMaker(Maker):
    """Fit a GAP on the campaign's labelled frames.

    Parameters
    ----------
    name
        Job name.
    settings
        Descriptor and regularisation settings.
    energy_model
        Power model for the compute record.
    """

    name: str = "train gap"
    settings: GAPConfig = field(default_factory=lambda: GAPConfig(model="gap"))
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
        """Fit the GAP of iteration ``iteration`` (same signature as the MACE trainer).

        ``member`` names the model folder; ``previous`` only serves to keep the
        previous GAP when no labels were added: a GAP is otherwise refitted from
        scratch (a sparse GP fit has no weights to continue from).
        """
        frames = job_dataset(campaign).frames(max_iteration=iteration)
        labelled = dataset_hash([f.frame_id for f in frames])
        previous = [ModelRecord.model_validate(m) for m in previous or []]
        kept = kept_model(previous, member, labelled)
        if kept is not None:
            progress.report(iteration, "train", "no new labels, GAP kept")
            return kept
        progress.report(iteration, "train", f"gap_fit on {len(frames)} frames")
        with Meter("train", self.name, self.energy_model) as meter:
            record = train_gap(frames, self.settings, Path(model_dir), f"gap_{member}", seed)
        return record.model_copy(
            update={
                "iteration": iteration,
                "member": member,
                "compute": meter.record,
                "labelled_hash": labelled,
            }
        )


def element_pairs(frames: list[Frame], cutoff: float) -> list[tuple[int, int]]:
    """Pairs of atomic numbers (Z1 ≤ Z2) that occur within ``cutoff`` in the frames.

    gap_fit aborts on a 2-body descriptor without data (e.g. O-O in ethanol), so
    only the pairs the data contain get one.
    """
    from ase.neighborlist import neighbor_list

    pairs: set[tuple[int, int]] = set()
    for frame in frames:
        atoms = frame.to_atoms(with_labels=False)
        i, j = neighbor_list("ij", atoms, cutoff)
        z = atoms.numbers
        low, high = np.minimum(z[i], z[j]).tolist(), np.maximum(z[i], z[j]).tolist()
        pairs.update(zip(low, high, strict=True))
    return sorted(pairs)


def gap_fit_arguments(
    settings: GAPConfig, train_file: Path | str, seed: int, pairs: list[tuple[int, int]]
) -> list[str]:
    """Command-line arguments of ``gap_fit`` for a 2-body + SOAP model."""
    two_body = " : ".join(
        f"distance_2b Z1={z1} Z2={z2} cutoff={settings.two_body_cutoff} "
        f"covariance_type=ard_se delta={settings.two_body_delta} theta_uniform=1.0 "
        f"sparse_method=uniform n_sparse={settings.two_body_n_sparse} add_species=F"
        for z1, z2 in pairs
    )
    soap = (
        f"soap l_max={settings.soap_l_max} n_max={settings.soap_n_max} "
        f"atom_sigma={settings.soap_atom_sigma} cutoff={settings.soap_cutoff} "
        f"cutoff_transition_width=1.0 delta={settings.soap_delta} "
        f"covariance_type=dot_product zeta=4 n_sparse={settings.soap_n_sparse} "
        "sparse_method=cur_points"
    )
    sigma = settings.default_sigma
    return [
        f"at_file={train_file}",
        f"gap={{{two_body} : {soap}}}",
        f"default_sigma={{{sigma[0]} {sigma[1]} {sigma[2]} 0.0}}",
        "energy_parameter_name=REF_energy",
        "force_parameter_name=REF_forces",
        "virial_parameter_name=REF_virial",
        "e0_method=average",
        "gp_file=gap.xml",
        "sparse_jitter=1e-8",
        f"rnd_seed={seed + 1}",  # gap_fit's generator rejects 0
        "do_copy_at_file=F",  # keep the training frames out of the model file
    ]


def gap_fit_executable() -> str:
    """``gap_fit`` from PATH or, when the venv is not activated, beside this Python.

    Raises
    ------
    GAPFitError
        If it is in neither place.
    """
    found = shutil.which("gap_fit") or shutil.which(
        "gap_fit", path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise GAPFitError("gap_fit not found: install quippy-ase (pip install quippy-ase)")
    return found


def train_gap(
    frames: list[Frame], settings: GAPConfig, model_dir: Path, name: str, seed: int
) -> ModelRecord:
    """Fit a GAP on ``frames``; the model is ``<model_dir>/<name>/gap.xml``.

    Raises
    ------
    ValueError
        With fewer than two labelled frames.
    GAPFitError
        If gap_fit fails; the message holds the end of its output.
    """
    if len(frames) < 2:
        raise ValueError(f"GAP needs at least 2 labelled frames, got {len(frames)}")
    executable = gap_fit_executable()
    model_dir = Path(model_dir).resolve()
    folder = model_dir / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    train_file = folder / "train.xyz"
    write_extxyz(frames, train_file, "REF_energy", "REF_forces", "REF_stress", False)
    _run_gap_fit(
        [
            executable,
            *gap_fit_arguments(
                settings, train_file.name, seed, element_pairs(frames, settings.two_body_cutoff)
            ),
        ],
        folder,
        model_dir / f"{name}.log",
        settings.threads,
    )
    train_file.unlink()
    for index in folder.glob("*.idx"):
        index.unlink()
    target = folder / "gap.xml"
    return ModelRecord(
        path=str(target.resolve()),
        sha256=file_sha256(target),
        kind="gap",
        architecture=settings.model_dump(exclude={"threads"}),
        iteration=0,
        seed=seed,
        n_train_frames=len(frames),
        dataset_hash=dataset_hash([f.frame_id for f in frames]),
    )


def _run_gap_fit(command: list[str], cwd: Path, log_path: Path, threads: int) -> None:
    code, tail = run_logged(command, cwd, log_path, threads)
    if code != 0 or not (cwd / "gap.xml").is_file():
        raise GAPFitError(
            f"gap_fit failed (exit {code}); full log in {log_path}. Last lines:\n" + "\n".join(tail)
        )
