"""The stop decision: a pure function of the campaign's history and its criteria."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from alflow.config import StopConfig
    from alflow.state import IterationRecord


class StopDecision(BaseModel):
    """Whether to stop, and why."""

    stop: bool = Field(description="True ends the campaign.")
    reason: str = Field(description="Human-readable reason, recorded in the store.")


def decide(history: list[IterationRecord], criteria: StopConfig, labels_used: int) -> StopDecision:
    """Decide after an iteration whether the campaign goes on.

    Success criteria come first, so that a campaign that converges on its last
    allowed iteration says it converged. The order is: accurate fraction, held-out
    force RMSE, label budget, iteration limit, stall (nothing left to label).
    """
    if not history:
        return StopDecision(stop=False, reason="nothing done yet")
    last = history[-1]
    accurate = last.fraction("accurate")
    if (
        criteria.accurate_fraction is not None
        and accurate is not None
        and (accurate >= criteria.accurate_fraction)
    ):
        return StopDecision(
            stop=True,
            reason=f"converged: {accurate:.1%} of explored frames below lo "
            f"(target {criteria.accurate_fraction:.0%})",
        )
    rmse = last.validation.force_rmse if last.validation is not None else None
    if criteria.force_rmse is not None and rmse is not None and rmse <= criteria.force_rmse:
        return StopDecision(
            stop=True,
            reason=f"converged: held-out force RMSE {rmse * 1000:.1f} meV/Å ≤ target "
            f"{criteria.force_rmse * 1000:.1f} meV/Å",
        )
    if criteria.max_labels is not None and labels_used >= criteria.max_labels:
        return StopDecision(
            stop=True,
            reason=f"label budget spent: {labels_used} of {criteria.max_labels} labels",
        )
    if last.iteration >= criteria.max_iterations:
        return StopDecision(stop=True, reason=f"reached max_iterations ({criteria.max_iterations})")
    if last.iteration >= 1 and last.selected == 0:
        return StopDecision(
            stop=True,
            reason="stalled: exploration found no frame with lo ≤ deviation < hi "
            "and the accuracy target is not met; lower select.lo, raise select.hi or "
            "change the MD temperature",
        )
    return StopDecision(stop=False, reason="continue")
