"""The stop decision: a pure function of the campaign's history and its criteria."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from alflow.config import StopConfig
    from alflow.state import IterationRecord


StopKind = Literal["continue", "failures", "converged", "budget", "iterations", "stalled"]


class StopDecision(BaseModel):
    """Whether to stop, and why."""

    stop: bool = Field(description="True ends the campaign.")
    kind: StopKind = Field(description="Which rule decided.")
    reason: str = Field(description="Human-readable reason, recorded in the store.")


def decide(history: list[IterationRecord], criteria: StopConfig, labels_used: int) -> StopDecision:
    """Decide after an iteration whether the campaign goes on.

    A labeller that fails too often stops the campaign first (its numbers would be
    suspect); then success criteria, so that a campaign that converges on its last
    allowed iteration says it converged. The order is: failed labels, accurate
    fraction, held-out force RMSE, label budget, iteration limit, stall.
    """
    if not history:
        return StopDecision(stop=False, kind="continue", reason="nothing done yet")
    last = history[-1]
    attempted = last.labels_new + last.labels_failed
    if attempted and last.labels_failed / attempted > criteria.max_failed_fraction:
        return StopDecision(
            stop=True, kind="failures", reason=too_many_failures(last, criteria.max_failed_fraction)
        )
    accurate = last.fraction("accurate")
    if (
        criteria.accurate_fraction is not None
        and accurate is not None
        and (accurate >= criteria.accurate_fraction)
    ):
        return StopDecision(
            stop=True,
            kind="converged",
            reason=f"converged: {accurate:.1%} of explored frames below lo "
            f"(target {criteria.accurate_fraction:.0%})",
        )
    rmse = last.validation.force_rmse if last.validation is not None else None
    if criteria.force_rmse is not None and rmse is not None and rmse <= criteria.force_rmse:
        return StopDecision(
            stop=True,
            kind="converged",
            reason=f"converged: held-out force RMSE {rmse * 1000:.1f} meV/Å ≤ target "
            f"{criteria.force_rmse * 1000:.1f} meV/Å",
        )
    if criteria.max_labels is not None and labels_used >= criteria.max_labels:
        return StopDecision(
            stop=True,
            kind="budget",
            reason=f"label budget spent: {labels_used} of {criteria.max_labels} labels",
        )
    if last.iteration >= criteria.max_iterations:
        return StopDecision(
            stop=True,
            kind="iterations",
            reason=f"reached max_iterations ({criteria.max_iterations})",
        )
    if last.iteration >= 1 and last.selected == 0:
        return StopDecision(
            stop=True,
            kind="stalled",
            reason="stalled: exploration found no frame with lo ≤ deviation < hi "
            "and the accuracy target is not met; lower select.lo, raise select.hi or "
            "change the MD temperature",
        )
    return StopDecision(stop=False, kind="continue", reason="continue")


def too_many_failures(record: IterationRecord, limit: float) -> str:
    """Stop message naming the failure count and the commonest reasons."""
    from collections import Counter

    attempted = record.labels_new + record.labels_failed
    causes = Counter(line.split(": ", 1)[-1].split(" (")[0] for line in record.failures)
    common = "; ".join(f"{n}x {cause}" for cause, n in causes.most_common(3))
    return (
        f"too many failed labels: {record.labels_failed} of {attempted} in iteration "
        f"{record.iteration} failed (limit {limit:.0%}). Most common: {common}. Check "
        "the labeller settings (label.retries, label.timeout_s, SCF settings); finished "
        "labels are kept; change the label settings (or raise stop.max_failed_fraction) "
        "and run again to continue"
    )
