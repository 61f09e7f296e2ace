"""Held-out validation: how wrong the committee is on frames it never saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.frames import Frame, read_frames
from alflow.train.records import ModelRecord
from alflow.uncertainty.committee import CommitteeCalculator

if TYPE_CHECKING:
    from collections.abc import Sequence


class ErrorMetrics(BaseModel):
    """Errors of predictions against reference labels."""

    n_frames: int = Field(description="Frames compared.")
    energy_rmse_per_atom: float = Field(description="RMSE of energy per atom (eV/atom).")
    force_rmse: float = Field(description="RMSE over force components (eV/Å).")
    force_mae: float = Field(description="MAE over force components (eV/Å).")


class ValidationResult(BaseModel):
    """Errors of the committee mean and of each member on held-out frames."""

    iteration: int = Field(description="Iteration whose models were validated.")
    committee: ErrorMetrics = Field(description="Errors of the committee mean.")
    member_force_rmse: list[float] = Field(description="Force RMSE of each member.")
    mean_force_deviation: float = Field(
        description="Mean predicted max force deviation over the frames (eV/Å)."
    )
    compute: ComputeRecord | None = Field(None, description="Cost of validating.")


def error_metrics(
    predicted_energy: Sequence[float],
    reference_energy: Sequence[float],
    n_atoms: Sequence[int],
    predicted_forces: Sequence[np.ndarray],
    reference_forces: Sequence[np.ndarray],
) -> ErrorMetrics:
    """RMSE/MAE of energies (per atom) and of all force components."""
    n = np.asarray(n_atoms, dtype=float)
    de = (np.asarray(predicted_energy) - np.asarray(reference_energy)) / n
    df = np.concatenate(
        [
            (np.asarray(p) - np.asarray(r)).ravel()
            for p, r in zip(predicted_forces, reference_forces, strict=True)
        ]
    )
    return ErrorMetrics(
        n_frames=len(n),
        energy_rmse_per_atom=float(np.sqrt(np.mean(de**2))),
        force_rmse=float(np.sqrt(np.mean(df**2))),
        force_mae=float(np.mean(np.abs(df))),
    )


def validate_committee(
    calc: CommitteeCalculator, frames: Sequence[Frame]
) -> tuple[ErrorMetrics, list[float], float]:
    """Committee-mean errors, per-member force RMSEs and mean deviation."""
    ref_e = [f.energy for f in frames]
    ref_f = [np.asarray(f.forces) for f in frames]
    pred_e, pred_f, members, deviation = [], [], [], []
    for frame in frames:
        calc.calculate(frame.to_atoms(with_labels=False))
        pred_e.append(calc.results["energy"])
        pred_f.append(calc.results["forces"])
        members.append(calc.results["forces_committee"])
        deviation.append(calc.results["force_deviation"])
    committee = error_metrics(pred_e, ref_e, [f.n_atoms for f in frames], pred_f, ref_f)
    reference = np.concatenate([f.ravel() for f in ref_f])
    member_rmse = [
        float(np.sqrt(np.mean((np.concatenate([m[k].ravel() for m in members]) - reference) ** 2)))
        for k in range(calc.size)
    ]
    return committee, member_rmse, float(np.mean(deviation))


@dataclass
class ValidateMaker(Maker):
    """Score a committee on held-out labelled frames.

    Parameters
    ----------
    name
        Job name.
    energy_model
        Power model for the compute record.
    """

    name: str = "validate"
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    @job
    def make(
        self, models: list[ModelRecord], validation_file: str, iteration: int
    ) -> ValidationResult:
        """Evaluate the committee on every frame of ``validation_file``."""
        with Meter("validate", self.name, self.energy_model) as meter:
            frames = read_frames(validation_file)
            calc = CommitteeCalculator(
                [ModelRecord.model_validate(m).verified_path() for m in models]
            )
            committee, members, deviation = validate_committee(calc, frames)
        progress.report(
            iteration,
            "validate",
            f"held-out force RMSE {committee.force_rmse * 1000:.0f} meV/Å, energy RMSE "
            f"{committee.energy_rmse_per_atom * 1000:.1f} meV/atom ({committee.n_frames} frames)",
        )
        return ValidationResult(
            iteration=iteration,
            committee=committee,
            member_force_rmse=members,
            mean_force_deviation=deviation,
            compute=meter.record,
        )
