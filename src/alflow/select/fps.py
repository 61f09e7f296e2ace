"""Farthest-point sampling: a diverse batch that is not redundant with the data."""

from __future__ import annotations

import numpy as np


def farthest_point_sampling(
    candidates: np.ndarray, n: int, reference: np.ndarray | None = None
) -> list[int]:
    """Pick ``n`` candidates greedily, each the farthest from everything picked so far.

    Parameters
    ----------
    candidates
        Descriptor vectors, shape (C, D).
    n
        How many to pick (fewer are returned if the candidates run out or the rest
        duplicate what is already picked).
    reference
        Descriptors already in the training set, shape (R, D). Distances start from
        them, so the first pick is the candidate least like the existing data.
        Without a reference the first pick is the candidate farthest from the
        candidates' mean.

    Returns
    -------
    list of int
        Indices into ``candidates`` in the order they were picked.
    """
    x = np.asarray(candidates, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"candidates must be 2-D, got shape {x.shape}")
    if len(x) == 0 or n <= 0:
        return []
    picked: list[int] = []
    if reference is not None and len(reference):
        ref = np.asarray(reference, dtype=float)
        nearest = np.full(len(x), np.inf)
        for row in ref:  # row by row keeps memory at O(C) for large reference sets
            nearest = np.minimum(nearest, np.linalg.norm(x - row, axis=1))
    else:
        first = int(np.argmax(np.linalg.norm(x - x.mean(axis=0), axis=1)))
        picked.append(first)
        nearest = np.linalg.norm(x - x[first], axis=1)
        nearest[first] = -np.inf
    while len(picked) < min(n, len(x)):
        best = int(np.argmax(nearest))
        if nearest[best] <= 0.0:
            break  # everything left duplicates a picked or reference point
        picked.append(best)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[best], axis=1))
        nearest[best] = -np.inf
    return picked
