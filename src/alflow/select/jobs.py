"""The selection job: from explored frames to the batch that goes to the labeller."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from jobflow import JobConfig, Maker, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.config import SelectConfig
from alflow.dataset import job_dataset
from alflow.explore.md import ExploreResult
from alflow.frames import Frame
from alflow.select.physical import physically_sane
from alflow.select.policy import Pick, select_frames, selection_cap
from alflow.select.soap import SOAPDescriptor, score_candidates
from alflow.select.window import WindowCounts, count_window, in_window


def energy_of(run: ExploreResult) -> list[float]:
    """Energy uncertainties of a run's frames.

    Zeros for a run recorded without them (an iteration resumed across an upgrade):
    its frames then count by their forces only.
    """
    if len(run.energy_deviations) == len(run.deviations):
        return list(run.energy_deviations)
    return [0.0] * len(run.deviations)


class SelectionSummary(BaseModel):
    """What selection saw and chose."""

    iteration: int = Field(description="Iteration.")
    explored: WindowCounts = Field(description="Explored frames per window class.")
    median_deviation: float | None = Field(
        None, description="Median committee deviation of the explored frames (eV/Å)."
    )
    runs: int = Field(description="MD runs looked at.")
    runs_stopped_early: int = Field(description="Runs that ended before their steps.")
    cap: int = Field(description="Most frames this iteration could label.")
    n_selected: int = Field(description="Frames selected.")
    explore_compute: list[ComputeRecord] = Field(
        default_factory=list, description="Compute of the MD runs."
    )
    compute: ComputeRecord | None = Field(None, description="Cost of selecting.")


class SelectionResult(BaseModel):
    """Summary plus the selected frames (in the data store)."""

    summary: SelectionSummary
    selected: list[Frame] = Field(description="Frames to label, in selection order.")


@dataclass
class SelectMaker(Maker):
    """Pick the frames worth labelling with the configured policy (see ``policy.py``).

    Parameters
    ----------
    name
        Job name.
    settings
        Window and cap.
    max_labels
        Label budget of the campaign (None: unlimited).
    energy_model
        Power model for the compute record.
    """

    name: str = "select"
    settings: SelectConfig = field(default_factory=SelectConfig)
    max_labels: int | None = None
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    @job(data=["selected"], config=JobConfig(expose_store=True))
    def make(self, explored: list[ExploreResult], campaign: str, iteration: int) -> SelectionResult:
        """Select frames to label from the MD runs of one iteration."""
        with Meter("select", self.name, self.energy_model) as meter:
            dataset = job_dataset(campaign)
            explored = [ExploreResult.model_validate(e) for e in explored]
            frames = [f for run in explored for f in run.frames]
            deviations = np.array([d for run in explored for d in run.deviations])
            energy_deviations = np.array([e for run in explored for e in energy_of(run)])
            # only what existed before this iteration counts: a resumed iteration
            # must make the same choices as the interrupted one, so that the labels
            # it already finished are found again instead of replaced
            spent = dataset.labels_spent(max_iteration=iteration - 1)
            cap = selection_cap(self.settings.max_per_iteration, spent, self.max_labels)
            training = dataset.frames(max_iteration=iteration - 1)
            picks = self._choose(frames, deviations, energy_deviations, training, cap, iteration)
            selected = [
                frames[p.index].model_copy(
                    update={
                        "provenance": frames[p.index].provenance.model_copy(
                            update={
                                "selection_rank": p.rank,
                                "novelty": p.novelty,
                                "selection_reason": p.reason,
                            }
                        )
                    }
                )
                for p in picks
            ]
        summary = SelectionSummary(
            iteration=iteration,
            explored=count_window(
                deviations,
                self.settings.lo,
                self.settings.hi,
                energy_deviations,
                self.settings.energy_lo,
            ),
            median_deviation=float(np.median(deviations)) if len(deviations) else None,
            runs=len(explored),
            runs_stopped_early=sum(run.stopped_early for run in explored),
            cap=cap,
            n_selected=len(selected),
            explore_compute=[run.compute for run in explored if run.compute is not None],
            compute=meter.record,
        )
        progress.report(
            iteration,
            "select",
            f"{summary.explored.candidate} candidates of {summary.explored.total} "
            f"explored frames; {len(selected)} selected (cap {cap})",
        )
        return SelectionResult(summary=summary, selected=selected)

    def _choose(
        self,
        frames: list[Frame],
        deviations: np.ndarray,
        energy_deviations: np.ndarray,
        training: list[Frame],
        cap: int,
        iteration: int,
    ) -> list[Pick]:
        """Run the selection policy; SOAP only for the frames it can pick from."""
        settings = self.settings
        if not frames or cap <= 0:
            return []
        atoms = [f.to_atoms(with_labels=False) for f in frames]
        usable = physically_sane(atoms)
        if settings.strategy != "soap-fps":
            usable &= in_window(
                deviations, settings.lo, settings.hi, energy_deviations, settings.energy_lo
            )
        pool = np.flatnonzero(usable)
        if len(pool) == 0:
            return []
        species = sorted({z for f in frames + training for z in f.numbers})
        periodic = any(any(f.pbc) for f in frames)
        soap = SOAPDescriptor(species, settings.soap, periodic)
        scores = score_candidates(
            soap,
            [atoms[i] for i in pool],
            [f.to_atoms(with_labels=False) for f in training],
        )
        picks = select_frames(
            settings.strategy,
            deviations[pool],
            scores.vectors,
            settings.lo,
            settings.hi,
            cap,
            reference=scores.training_vectors,
            novelty=scores.novelty,
            novelty_min=settings.novelty_min,
            seed=iteration,
            energy_deviations=energy_deviations[pool],
            energy_lo=settings.energy_lo,
        )
        return [
            Pick(int(pool[p.index]), p.rank, p.reason, float(scores.novelty[p.index]))
            for p in picks
        ]
