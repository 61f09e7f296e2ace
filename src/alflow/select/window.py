"""The uncertainty window: which frames are trusted, worth a label, or lost.

With the committee deviation d of a frame and the thresholds lo < hi:

- ``accurate``  d < lo: the models agree; nothing to learn here;
- ``candidate`` lo ≤ d < hi: uncertain but physical; worth a label;
- ``failed``    d ≥ hi: the models disagree so much that the frame is likely
  unphysical (the DP-GEN terminology).

With an energy threshold ``energy_lo`` (eV/atom), a frame below ``lo`` whose energy
uncertainty per atom reaches ``energy_lo`` is a candidate too (DP-GEN's energy trust
level plays this role): in a strained or compressed perfect crystal the forces vanish
by symmetry for every model, so the force uncertainty is zero however wrong the
energy is.
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


def in_window(
    deviations: Sequence[float] | np.ndarray,
    lo: float,
    hi: float,
    energy_deviations: Sequence[float] | np.ndarray | None = None,
    energy_lo: float | None = None,
) -> np.ndarray:
    """Boolean mask of the candidates.

    ``lo <= deviation < hi``; with ``energy_lo`` also the frames below ``lo`` whose
    energy uncertainty is ``>= energy_lo``.
    """
    if lo >= hi:
        raise ValueError(f"lo ({lo}) must be smaller than hi ({hi})")
    d = np.asarray(deviations, dtype=float)
    mask = (d >= lo) & (d < hi)
    if energy_lo is not None and energy_deviations is not None:
        e = np.asarray(energy_deviations, dtype=float)
        if e.shape != d.shape:
            raise ValueError(f"{e.size} energy uncertainties for {d.size} force uncertainties")
        mask |= (e >= energy_lo) & (d < hi)
    return mask


def count_window(
    deviations: Sequence[float] | np.ndarray,
    lo: float,
    hi: float,
    energy_deviations: Sequence[float] | np.ndarray | None = None,
    energy_lo: float | None = None,
) -> WindowCounts:
    """Classify frames as accurate, candidate or failed (see :func:`in_window`)."""
    d = np.asarray(deviations, dtype=float)
    candidate = int(in_window(d, lo, hi, energy_deviations, energy_lo).sum())
    failed = int((d >= hi).sum())
    return WindowCounts(accurate=len(d) - candidate - failed, candidate=candidate, failed=failed)
