"""The selection policy as composable pure functions on arrays.

alflow's default (``strategy: alflow``)::

    physical filter  →  window [lo, hi) (or energy ≥ energy_lo)  →  novelty ≥ novelty_min
    →  farthest-point sampling in SOAP space seeded with the training set  →  cap

(the physical filter, :mod:`alflow.select.physical`, runs in the select job before
this; the explorer has already discarded broken frames of its own runs).
For comparison the strategies of other tools are selectable: ``dpgen`` (random
frames inside the window, as DP-GEN does), ``max-uncertainty`` (largest calibrated
uncertainty in the window first) and ``soap-fps`` (farthest-point sampling in SOAP
space alone, no uncertainty: the autoplex/wfl approach). Every pick says why it was
chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from alflow.select.fps import farthest_point_sampling
from alflow.select.window import in_window

if TYPE_CHECKING:
    from collections.abc import Sequence

Strategy = Literal["alflow", "dpgen", "max-uncertainty", "soap-fps"]


@dataclass(frozen=True)
class Pick:
    """One selected frame and why."""

    index: int
    rank: int
    reason: str
    novelty: float | None = None


def selection_cap(max_per_iteration: int, labels_used: int, max_labels: int | None) -> int:
    """How many frames may be labelled this iteration."""
    if max_labels is None:
        return max_per_iteration
    return max(0, min(max_per_iteration, max_labels - labels_used))


def novel_enough(novelty: np.ndarray | None, novelty_min: float, n: int) -> np.ndarray:
    """Mask of frames whose novelty reaches ``novelty_min`` (all when unknown)."""
    if novelty is None:
        return np.ones(n, dtype=bool)
    return np.asarray(novelty) >= novelty_min


def fps_in(pool: np.ndarray, vectors: np.ndarray, cap: int, reference: np.ndarray | None):
    """Farthest-point order of the frames in ``pool`` (indices into all frames)."""
    picks = farthest_point_sampling(np.asarray(vectors)[pool], cap, reference)
    return [int(pool[p]) for p in picks]


def select_frames(
    strategy: Strategy,
    deviations: Sequence[float] | np.ndarray,
    vectors: np.ndarray,
    lo: float,
    hi: float,
    cap: int,
    reference: np.ndarray | None = None,
    novelty: np.ndarray | None = None,
    novelty_min: float = 0.0,
    seed: int = 0,
    energy_deviations: Sequence[float] | np.ndarray | None = None,
    energy_lo: float | None = None,
) -> list[Pick]:
    """Frames to label, in the order chosen, with the reason for each.

    Parameters
    ----------
    strategy
        Which policy (see module docstring).
    deviations
        Calibrated frame uncertainties (eV/Å).
    vectors
        One descriptor vector per frame (for farthest-point sampling).
    lo, hi
        Uncertainty window.
    cap
        Labels allowed this iteration.
    reference
        Descriptor vectors of the training frames (seed of the sampling).
    novelty
        Per-frame SOAP novelty, if computed.
    novelty_min
        Frames less novel than this are not labelled (alflow strategy).
    seed
        Seed of the random pick (dpgen strategy).
    energy_deviations, energy_lo
        Calibrated energy uncertainties per atom (eV/atom) and the threshold from
        which a frame below ``lo`` is a candidate too (None: forces only).
    """
    deviations = np.asarray(deviations, dtype=float)
    n = len(deviations)
    if cap <= 0 or n == 0:
        return []
    window = in_window(deviations, lo, hi, energy_deviations, energy_lo)
    if strategy == "soap-fps":
        order = fps_in(np.arange(n), vectors, cap, reference)
    elif strategy == "dpgen":
        pool = np.flatnonzero(window)
        rng = np.random.default_rng(seed)
        order = [int(i) for i in rng.permutation(pool)[:cap]]
    elif strategy == "max-uncertainty":
        pool = np.flatnonzero(window)
        order = [int(i) for i in pool[np.argsort(-deviations[pool], kind="stable")][:cap]]
    elif strategy == "alflow":
        pool = np.flatnonzero(window & novel_enough(novelty, novelty_min, n))
        order = fps_in(pool, vectors, cap, reference) if len(pool) else []
    else:
        raise ValueError(f"unknown selection strategy '{strategy}'")
    energy = None if energy_lo is None else energy_deviations
    return [
        Pick(i, rank, _reason(strategy, deviations[i], novelty, i, rank, energy))
        for rank, i in enumerate(order)
    ]


def _reason(
    strategy: str,
    deviation: float,
    novelty: np.ndarray | None,
    i: int,
    rank: int,
    energy: Sequence[float] | np.ndarray | None = None,
) -> str:
    parts = [f"{strategy}: uncertainty {deviation:.3f} eV/Å"]
    if energy is not None:
        parts.append(f"energy uncertainty {1000 * float(energy[i]):.1f} meV/atom")
    if novelty is not None:
        parts.append(f"SOAP novelty {float(novelty[i]):.3f}")
    parts.append(f"rank {rank}")
    return ", ".join(parts)
