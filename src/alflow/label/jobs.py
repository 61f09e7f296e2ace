"""Label jobs: one reference single point per frame, stored the moment it ends.

A label job first looks the frame up in the dataset: if it was labelled before (a
resumed campaign, or the same frame selected twice) the stored label is returned
and the labeller is not called again. A calculation that raises, or returns
non-finite or absurd forces, is written to the dataset as ``failed`` with its
reason and never trained on; it does not stop the campaign.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from jobflow import Flow, JobConfig, Maker, Response, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.dataset import job_dataset
from alflow.frames import Frame
from alflow.label.calculators import LabelSettings, PySCFSettings

logger = logging.getLogger(__name__)


class LabelResult(BaseModel):
    """Outcome of labelling one frame (the frame itself is in the dataset)."""

    frame_id: str = Field(description="Structure hash of the frame.")
    status: Literal["ok", "failed", "reused"] = Field(
        description="'reused' means the dataset already held a label for the frame."
    )
    reason: str | None = Field(None, description="Why the label failed.")
    energy: float | None = Field(None, description="Reference energy (eV).")
    max_force: float | None = Field(None, description="Largest force norm (eV/Å).")
    compute: ComputeRecord | None = Field(None, description="Cost of the label.")


@dataclass
class LabelMaker(Maker):
    """Label one frame with an ASE calculator and append it to the dataset.

    Parameters
    ----------
    name
        Job name.
    settings
        The reference method.
    energy_model
        Power model for the compute record.
    """

    name: str = "label"
    settings: LabelSettings = field(
        default_factory=lambda: PySCFSettings(calculator="pyscf")
    )
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    @job(config=JobConfig(expose_store=True))
    def make(self, frame: Frame, campaign: str, iteration: int) -> LabelResult:
        """Label ``frame`` unless the dataset already has it."""
        frame = Frame.model_validate(frame)
        dataset = job_dataset(campaign)
        lot = self.settings.level_of_theory()
        existing = dataset.get(frame.frame_id, lot.settings_hash)
        if existing is not None:
            progress.report(
                iteration,
                "label",
                f"frame {frame.frame_id} already labelled; reused",
                label_status="reused",
            )
            return LabelResult(
                frame_id=frame.frame_id,
                status="reused",
                reason=existing.reason,
                energy=existing.frame.energy,
            )
        with Meter("label", self.name, self.energy_model) as meter:
            labelled, reason = compute_label(frame, self.settings)
        if labelled is None:
            logger.warning("label of frame %s failed: %s", frame.frame_id, reason)
            progress.report(
                iteration,
                "label",
                f"frame {frame.frame_id} FAILED: {reason}",
                label_status="failed",
            )
            dataset.add(
                frame.model_copy(update={"level_of_theory": lot}),
                "failed",
                iteration,
                reason=reason,
                compute=meter.record,
            )
            return LabelResult(
                frame_id=frame.frame_id,
                status="failed",
                reason=reason,
                compute=meter.record,
            )
        dataset.add(labelled, "ok", iteration, compute=meter.record)
        progress.report(
            iteration,
            "label",
            f"frame {frame.frame_id} labelled in {meter.record.wall_s:.1f} s",
            label_status="ok",
        )
        forces = np.asarray(labelled.forces)
        return LabelResult(
            frame_id=frame.frame_id,
            status="ok",
            energy=labelled.energy,
            max_force=float(np.linalg.norm(forces, axis=1).max()),
            compute=meter.record,
        )


def compute_label(frame: Frame, settings: LabelSettings) -> tuple[Frame | None, str | None]:
    """Run the reference calculation.

    Returns
    -------
    tuple
        (labelled frame, None) on success, (None, reason) on failure.
    """
    atoms = frame.to_atoms(with_labels=False)
    try:
        atoms.calc = settings.make()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = None
        if atoms.pbc.all() and "stress" in atoms.calc.implemented_properties:
            stress = atoms.get_stress(voigt=True)
    except Exception as err:  # any labeller error is recorded as this frame's failure
        return None, f"{type(err).__name__}: {err}"
    reason = implausible(energy, forces, settings.max_force)
    if reason is not None:
        return None, reason
    return frame.with_labels(energy, forces, stress, settings.level_of_theory()), None


def implausible(energy: float, forces: np.ndarray, max_force: float) -> str | None:
    """Why a label cannot be right, or None if it looks plausible."""
    if not np.isfinite(energy):
        return f"non-finite energy ({energy})"
    if not np.all(np.isfinite(forces)):
        return "non-finite forces"
    largest = float(np.abs(forces).max()) if forces.size else 0.0
    if largest > max_force:
        return f"force component {largest:.1f} eV/Å above max_force {max_force}"
    return None


@job
def label_all(
    frames: list[Frame], maker: LabelMaker, campaign: str, iteration: int
) -> Response | list[LabelResult]:
    """Fan out one label job per frame (the batch size is known only now)."""
    if not frames:
        return []
    progress.report(iteration, "label", f"{len(frames)} frames to label")
    jobs = []
    for i, frame in enumerate(frames):
        one = maker.make(frame, campaign, iteration)
        one.name = f"{maker.name} {i + 1}/{len(frames)}"
        jobs.append(one)
    return Response(replace=Flow(jobs, output=[j.output for j in jobs], name="label"))
