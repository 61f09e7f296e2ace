"""A simple, cheap structural fingerprint for diversity selection.

Per pair of species, a Gaussian-smeared histogram of interatomic distances within
a cut-off, divided by the number of atoms. It is invariant to rotation, translation
and permutation of like atoms, and works for molecules and periodic cells alike.
SOAP (dscribe) replaces it where per-environment novelty is needed.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms


def radial_fingerprint(
    atoms: Atoms,
    species: Sequence[int],
    r_max: float = 5.0,
    n_bins: int = 24,
    width: float = 0.15,
) -> np.ndarray:
    """Fingerprint of one structure; length ``n_pairs * n_bins``."""
    from ase.neighborlist import neighbor_list

    species = sorted(set(species))
    pairs = list(combinations_with_replacement(species, 2))
    centres = np.linspace(0.5, r_max, n_bins)
    out = np.zeros((len(pairs), n_bins))
    i, j, d = neighbor_list("ijd", atoms, r_max)
    if len(d):
        z = atoms.numbers
        zi, zj = np.minimum(z[i], z[j]), np.maximum(z[i], z[j])
        index = {pair: k for k, pair in enumerate(pairs)}
        smeared = np.exp(-0.5 * ((d[:, None] - centres[None, :]) / width) ** 2)
        # a smooth cut-off keeps the fingerprint continuous as atoms cross r_max
        smeared *= (0.5 * (np.cos(np.pi * d / r_max) + 1.0))[:, None]
        for k, pair in enumerate(zip(zi.tolist(), zj.tolist(), strict=True)):
            if pair in index:
                out[index[pair]] += smeared[k]
    return (out / max(len(atoms), 1)).ravel()


def fingerprints(
    atoms_list: Sequence[Atoms], species: Sequence[int], r_max: float = 5.0
) -> np.ndarray:
    """Stack fingerprints of many structures, shape (F, n_pairs * n_bins)."""
    if not atoms_list:
        return np.zeros((0, 0))
    return np.stack([radial_fingerprint(a, species, r_max) for a in atoms_list])
