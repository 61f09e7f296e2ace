"""The uncertainty window: which frames are trusted, worth a label, or lost.

With the committee deviation d of a frame and the thresholds lo < hi:

- ``accurate``  d < lo: the models agree; nothing to learn here;
- ``candidate`` lo ≤ d < hi: uncertain but physical; worth a label;
- ``failed``    d ≥ hi: the models disagree so much that the frame is likely
  unphysical (the DP-GEN terminology).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from collections.abc import Sequence


class WindowCounts(BaseModel):
    """How explored frames fall in the uncertainty window."""

    accurate: int = Field(0, description="Frames with deviation < lo.")
    candidate: int = Field(0, description="Frames with lo ≤ deviation < hi.")
    failed: int = Field(0, description="Frames with deviation ≥ hi.")

    @property
    def total(self) -> int:
        """All classified frames."""
        return self.accurate + self.candidate + self.failed

    def fraction(self, kind: str) -> float | None:
        """Share of one class, or None when nothing was explored."""
        return getattr(self, kind) / self.total if self.total else None

    def __add__(self, other: WindowCounts) -> WindowCounts:
        return WindowCounts(
            accurate=self.accurate + other.accurate,
            candidate=self.candidate + other.candidate,
            failed=self.failed + other.failed,
        )


def in_window(deviations: Sequence[float] | np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Boolean mask of frames with ``lo <= deviation < hi``."""
    if lo >= hi:
        raise ValueError(f"lo ({lo}) must be smaller than hi ({hi})")
    d = np.asarray(deviations, dtype=float)
    return (d >= lo) & (d < hi)


def count_window(deviations: Sequence[float] | np.ndarray, lo: float, hi: float) -> WindowCounts:
    """Classify frames as accurate, candidate or failed."""
    d = np.asarray(deviations, dtype=float)
    candidate = int(in_window(d, lo, hi).sum())
    accurate = int((d < lo).sum())
    return WindowCounts(
        accurate=accurate, candidate=candidate, failed=len(d) - accurate - candidate
    )
