"""Label jobs: one reference single point per frame, stored the moment it ends.

A label job first looks the frame up in the dataset: if it was labelled before (a
resumed campaign, or the same frame selected twice) the stored result is returned
and the labeller is not called again. Each attempt runs in a scratch folder (kept
when the attempt fails, for diagnosis) and, for most labellers, in a child process
with a time limit. A failed attempt is retried with the labeller's escalated
settings; a frame that still fails is stored as ``failed`` with every attempt's
reason, is never trained on, and does not stop the campaign.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from jobflow import Flow, JobConfig, Maker, Response, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.dataset import job_dataset
from alflow.frames import Frame
from alflow.label.registry import LabelSettings, PySCFSettings
from alflow.label.runner import Outcome, run_in_process, run_isolated

logger = logging.getLogger(__name__)


class LabelResult(BaseModel):
    """Outcome of labelling one frame (the frame itself is in the dataset)."""

    frame_id: str = Field(description="Structure hash of the frame.")
    status: Literal["ok", "failed", "reused"] = Field(
        description="'reused' means the dataset already held a label for the frame."
    )
    reason: str | None = Field(None, description="Why the label failed.")
    attempts: list[str] = Field(default_factory=list, description="What each attempt did.")
    energy: float | None = Field(None, description="Reference energy (eV).")
    max_force: float | None = Field(None, description="Largest force norm (eV/Å).")
    compute: ComputeRecord | None = Field(None, description="Cost of the label.")


@dataclass
class LabelMaker(Maker):
    """Label one frame with a reference method and append it to the dataset.

    Parameters
    ----------
    name
        Job name.
    settings
        The reference method, its limits and its retry policy.
    energy_model
        Power model for the compute record.
    """

    name: str = "label"
    settings: LabelSettings = field(default_factory=lambda: PySCFSettings(calculator="pyscf"))
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
                attempts=existing.attempts,
                energy=existing.frame.energy,
            )
        with Meter("label", self.name, self.energy_model, cores=self.settings.cores()) as meter:
            labelled, attempts, reason = label_with_retries(frame, self.settings, Path.cwd())
        status = "ok" if labelled is not None else "failed"
        stored = labelled or frame.model_copy(update={"level_of_theory": lot})
        dataset.add(
            stored,
            status,
            iteration,
            reason=reason,
            compute=meter.record,
            attempts=attempts,
            allow_mixed_levels=self.settings.allow_mixed_levels,
        )
        if labelled is None:
            logger.warning("label of frame %s failed: %s", frame.frame_id, " | ".join(attempts))
            message = f"frame {frame.frame_id} FAILED after {len(attempts)} attempt(s): {reason}"
        else:
            message = f"frame {frame.frame_id} labelled in {meter.record.wall_s:.1f} s"
        progress.report(iteration, "label", message, label_status=status)
        return LabelResult(
            frame_id=frame.frame_id,
            status=status,
            reason=reason,
            attempts=attempts,
            energy=None if labelled is None else labelled.energy,
            max_force=None if labelled is None else _max_force(labelled),
            compute=meter.record,
        )


def label_with_retries(
    frame: Frame, settings: LabelSettings, workdir: Path
) -> tuple[Frame | None, list[str], str | None]:
    """Try the labeller, then its escalations, until one attempt gives a plausible label.

    Returns
    -------
    tuple
        (labelled frame or None, one line per attempt, reason of the last failure
        or None on success).
    """
    log: list[str] = []
    attempts = settings.attempts()
    for number, attempt in enumerate(attempts):
        changes = _changes(settings, attempt)
        folder = workdir / f"label-{frame.frame_id}-attempt{number}"
        outcome = _run_attempt(frame, attempt, folder)
        reason = outcome.reason
        if reason is None:
            raw = outcome.label
            reason = implausible(raw.energy, raw.forces, attempt.max_force)
        if reason is None:
            shutil.rmtree(folder, ignore_errors=True)
            log.append(f"attempt {number}{changes}: ok in {outcome.wall_s:.1f} s")
            lot = attempt.level_of_theory()
            return frame.with_labels(raw.energy, raw.forces, raw.stress, lot), log, None
        log.append(f"attempt {number}{changes}: {reason} (files kept in {folder})")
        if reason.startswith("timeout") and not settings.retry_timeouts:
            break
    return None, log, reason


def _run_attempt(frame: Frame, settings: LabelSettings, folder: Path) -> Outcome:
    """One attempt in its own folder, isolated in a child process when the labeller allows."""
    folder.mkdir(parents=True, exist_ok=True)
    if settings.isolated:
        return run_isolated(frame, settings, settings.timeout_s, folder)
    previous = Path.cwd()
    os.chdir(folder)
    try:
        return run_in_process(frame, settings)
    finally:
        os.chdir(previous)


def _changes(base: LabelSettings, attempt: LabelSettings) -> str:
    """' (max_cycle=300, damping=0.5)' for the settings an attempt changed."""
    before, after = base.model_dump(), attempt.model_dump()
    changed = [f"{k}={after[k]}" for k in after if k != "retries" and after[k] != before[k]]
    return f" ({', '.join(changed)})" if changed else ""


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


def _max_force(frame: Frame) -> float:
    return float(np.linalg.norm(np.asarray(frame.forces), axis=1).max())


@job(config=JobConfig(expose_store=True))
def label_all(
    frames: list[Frame], maker: LabelMaker, campaign: str, iteration: int
) -> Response | list[LabelResult]:
    """Fan out one label job per frame that has no label yet.

    Frames already in the dataset (a resumed campaign) get no job at all.
    """
    dataset = job_dataset(campaign)
    lot_hash = maker.settings.level_of_theory().settings_hash
    done, todo = [], []
    for frame in (Frame.model_validate(f) for f in frames):
        entry = dataset.get(frame.frame_id, lot_hash)
        if entry is None:
            todo.append(frame)
        else:
            done.append(
                LabelResult(
                    frame_id=frame.frame_id,
                    status="reused",
                    reason=entry.reason,
                    attempts=entry.attempts,
                    energy=entry.frame.energy,
                )
            )
    if done:
        progress.report(iteration, "label", f"{len(done)} frames already labelled; reused")
    if not todo:
        return done
    progress.report(iteration, "label", f"{len(todo)} frames to label")
    jobs = []
    for i, frame in enumerate(todo):
        one = maker.make(frame, campaign, iteration)
        one.name = f"{maker.name} {i + 1}/{len(todo)}"
        jobs.append(one)
    outputs = [*done, *(j.output for j in jobs)]
    return Response(replace=Flow(jobs, output=outputs, name="label"))
