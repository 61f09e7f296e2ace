"""The typed state that passes from one iteration to the next."""

from __future__ import annotations

from pydantic import BaseModel, Field

from alflow.accounting import StageTotals, merge_roll_ups
from alflow.select.window import WindowCounts
from alflow.train.records import ModelRecord
from alflow.uncertainty.calibrate import Calibration
from alflow.validate import ErrorMetrics


class IterationRecord(BaseModel):
    """What one iteration did, found and cost."""

    iteration: int = Field(description="0 is the bootstrap; 1, 2, ... the AL loop.")
    temperature_K: float | None = Field(None, description="MD temperature.")
    explored: WindowCounts | None = Field(
        None,
        description="Explored frames per window class (models of the previous "
        "iteration drove the MD).",
    )
    median_deviation: float | None = Field(
        None, description="Median committee deviation of the explored frames (eV/Å)."
    )
    runs: int = Field(0, description="MD runs.")
    runs_stopped_early: int = Field(0, description="MD runs that stopped early.")
    selected: int = Field(0, description="Frames sent to the labeller.")
    labels_new: int = Field(0, description="New good labels.")
    labels_failed: int = Field(0, description="Labels that failed.")
    labels_reused: int = Field(0, description="Labels found in the dataset already.")
    failures: list[str] = Field(
        default_factory=list, description="'frame_id: reason' of each failed label."
    )
    labels_total: int = Field(0, description="Good labels in the dataset afterwards.")
    validation: ErrorMetrics | None = Field(
        None, description="Held-out errors of this iteration's committee mean."
    )
    member_force_rmse: list[float] = Field(
        default_factory=list, description="Held-out force RMSE of each member."
    )
    mean_force_deviation: float | None = Field(
        None,
        description="Mean frame uncertainty (calibrated predicted max force error) on the "
        "held-out frames.",
    )
    calibration: Calibration | None = Field(
        None, description="Uncertainty calibration fitted on the held-out frames."
    )
    models: list[ModelRecord] = Field(
        default_factory=list, description="Models trained in this iteration."
    )
    compute: dict[str, StageTotals] = Field(
        default_factory=dict, description="Compute per stage and 'total'."
    )
    wall_s: float = Field(0.0, description="Wall time of the whole iteration (s).")

    def fraction(self, kind: str) -> float | None:
        """Fraction of explored frames in a window class, if anything was explored."""
        return self.explored.fraction(kind) if self.explored is not None else None


class CampaignState(BaseModel):
    """Everything the next iteration needs to know."""

    campaign: str = Field(description="Campaign name.")
    iteration: int = Field(-1, description="Last finished iteration (-1: none yet).")
    history: list[IterationRecord] = Field(default_factory=list)
    models: list[ModelRecord] = Field(default_factory=list, description="The current models.")
    uncertainty_scale: float = Field(
        1.0,
        description="Calibration factor of the current models' force uncertainty "
        "(1 when no held-out frames were given).",
    )
    uncertainty_element_scales: dict[str, float] = Field(
        default_factory=dict,
        description="Calibration factor per element, used instead of uncertainty_scale "
        "for atoms of that element.",
    )
    uncertainty_energy_scale: float = Field(
        1.0,
        description="Calibration factor of the current models' energy uncertainty per atom "
        "(1 when no held-out frames were given).",
    )
    labels_used: int = Field(0, description="Frames sent to the labeller so far (good and failed).")
    stopped: bool = Field(False, description="Whether the campaign has ended.")
    stop_reason: str | None = Field(None, description="Why it ended.")
    stop_kind: str | None = Field(None, description="Which stop rule ended it.")
    iteration_started: float | None = Field(
        None, description="Unix time at which the running iteration began."
    )

    def cumulative_compute(self) -> dict[str, StageTotals]:
        """Compute per stage summed over all finished iterations."""
        return merge_roll_ups(record.compute for record in self.history)
