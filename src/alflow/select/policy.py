"""The selection policy: window, then diversity, then the cap.

Pure functions on arrays, so that every step can be unit-tested and swapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from alflow.select.fps import farthest_point_sampling
from alflow.select.window import in_window

if TYPE_CHECKING:
    from collections.abc import Sequence


def selection_cap(max_per_iteration: int, labels_used: int, max_labels: int | None) -> int:
    """How many frames may be labelled this iteration."""
    if max_labels is None:
        return max_per_iteration
    return max(0, min(max_per_iteration, max_labels - labels_used))


def select_candidates(
    deviations: Sequence[float] | np.ndarray,
    descriptors: np.ndarray,
    lo: float,
    hi: float,
    cap: int,
    reference: np.ndarray | None = None,
) -> list[int]:
    """Indices of the frames to label, in the order they were chosen.

    Frames outside ``[lo, hi)`` are dropped; among the rest farthest-point sampling
    (seeded with the training set's descriptors) picks at most ``cap``.
    """
    mask = in_window(deviations, lo, hi)
    pool = np.flatnonzero(mask)
    if cap <= 0 or len(pool) == 0:
        return []
    picks = farthest_point_sampling(np.asarray(descriptors)[pool], cap, reference)
    return [int(pool[p]) for p in picks]
