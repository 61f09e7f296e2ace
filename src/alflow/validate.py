"""Held-out validation: errors on frames never trained on, and the calibration.

The same frames measure how well the uncertainty predicts the errors; the scale
fitted on them is what the next iteration explores and selects with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.frames import Frame, read_frames
from alflow.train.records import ModelRecord
from alflow.uncertainty import make_estimator
from alflow.uncertainty.base import members_in_results
from alflow.uncertainty.calibrate import (
    Calibration,
    atom_factors,
    calibrate,
    save_calibration,
)
from alflow.uncertainty.frame_error import expected_max_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from alflow.state import IterationRecord
    from alflow.uncertainty.base import UncertaintyCalculator


class ErrorMetrics(BaseModel):
    """Errors of predictions against reference labels."""

    n_frames: int = Field(description="Frames compared.")
    energy_rmse_per_atom: float = Field(description="RMSE of energy per atom (eV/atom).")
    force_rmse: float = Field(description="RMSE over force components (eV/Å).")
    force_mae: float = Field(description="MAE over force components (eV/Å).")


class ValidationResult(BaseModel):
    """Errors of the models' mean prediction, and the uncertainty calibration."""

    iteration: int = Field(description="Iteration whose models were validated.")
    committee: ErrorMetrics = Field(description="Errors of the mean prediction.")
    member_force_rmse: list[float] = Field(
        default_factory=list,
        description="Force RMSE of each committee or shallow-ensemble member.",
    )
    mean_force_deviation: float = Field(
        description="Mean over the frames of the calibrated predicted max force error "
        "(the frame uncertainty that selection uses, eV/Å)."
    )
    calibration: Calibration | None = Field(
        None, description="Scale fitted on these frames for the force uncertainties."
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


def validate_estimator(
    calc: UncertaintyCalculator, frames: Sequence[Frame]
) -> tuple[ErrorMetrics, list[float], Calibration, list[float]]:
    """Mean-prediction errors, per-member force RMSEs, calibration, calibrated frame deviations.

    ``calc`` must be uncalibrated: the calibration is fitted on its raw uncertainties.
    """
    if calc.calibrated:
        raise ValueError("validate with an uncalibrated estimator (scale 1)")
    pred_e, pred_f, members, sigma, errors, symbols = [], [], [], [], [], []
    energy_sigma, energy_errors = [], []
    for frame in frames:
        calc.calculate(frame.to_atoms(with_labels=False), ["energy", "forces", "force_deviation"])
        forces = np.asarray(calc.results["forces"])
        pred_e.append(calc.results["energy"])
        energy_sigma.append(float(calc.results["energy_deviation"]))  # raw: scale 1 here
        energy_errors.append(abs(calc.results["energy"] - frame.energy) / frame.n_atoms)
        pred_f.append(forces)
        sigma.append(np.asarray(calc.results["forces_std"]))
        errors.append(np.linalg.norm(forces - np.asarray(frame.forces), axis=1))
        symbols.append(calc.atoms.get_chemical_symbols())
        predicted = members_in_results(calc.results)
        if predicted is not None:
            members.append(np.asarray(predicted[1]))
    ref_f = [np.asarray(f.forces) for f in frames]
    metrics = error_metrics(
        pred_e, [f.energy for f in frames], [f.n_atoms for f in frames], pred_f, ref_f
    )
    member_rmse = []
    if members:
        reference = np.concatenate([f.ravel() for f in ref_f])
        member_rmse = [
            _rmse(np.concatenate([m[k].ravel() for m in members]), reference)
            for k in range(members[0].shape[0])
        ]
    calibration = calibrate(sigma, errors, symbols, energy_sigma, energy_errors)
    calibrated_deviation = [
        expected_max_error(s * atom_factors(z, calibration.scale, calibration.element_scales))
        for s, z in zip(sigma, symbols, strict=True)
    ]
    return metrics, member_rmse, calibration, calibrated_deviation


def iteration_errors(
    history: Sequence[IterationRecord], frames: Sequence[Frame]
) -> list[ErrorMetrics | None]:
    """Errors of every iteration's models on labelled ``frames``, in history's order.

    None where an iteration trained no models.

    Scores a campaign's progress on frames it never saw: its own held-out set also
    calibrates the uncertainty and decides when to stop, so its errors there are not
    an independent test. The prediction is the one validation scores (committee or
    shallow-ensemble mean).
    """
    errors: list[ErrorMetrics | None] = []
    for record in history:
        if not record.models:
            errors.append(None)
            continue
        metrics, *_ = validate_estimator(make_estimator(record.models), frames)
        errors.append(metrics)
    return errors


def _rmse(predicted: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - reference) ** 2)))


@dataclass
class ValidateMaker(Maker):
    """Score the models on held-out labelled frames and calibrate their uncertainty.

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
        self,
        models: list[ModelRecord],
        validation_file: str,
        iteration: int,
        model_dir: str | None = None,
    ) -> ValidationResult:
        """Evaluate on every frame of ``validation_file``; write ``calibration.json``.

        The calibration is saved in ``model_dir`` (default: the folder of the first
        model file), so that the scale stays with the models it belongs to.
        """
        with Meter("validate", self.name, self.energy_model) as meter:
            frames = read_frames(validation_file)
            records = [ModelRecord.model_validate(m) for m in models]
            calc = make_estimator(records)
            metrics, members, calibration, deviations = validate_estimator(calc, frames)
            deviation = float(np.mean(deviations))
        save_calibration(calibration, Path(model_dir or Path(records[0].path).parent))
        progress.report(
            iteration,
            "validate",
            f"held-out force RMSE {metrics.force_rmse * 1000:.0f} meV/Å, energy RMSE "
            f"{metrics.energy_rmse_per_atom * 1000:.1f} meV/atom ({metrics.n_frames} frames); "
            f"uncertainty scale {calibration.scale:.2f} (ENCE {calibration.ence_raw:.2f} → "
            f"{calibration.ence_calibrated:.2f})",
        )
        return ValidationResult(
            iteration=iteration,
            committee=metrics,
            member_force_rmse=members,
            mean_force_deviation=deviation,
            calibration=calibration,
            compute=meter.record,
        )
