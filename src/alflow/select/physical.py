"""Physical filters: frames that no label should be spent on.

The explorer already ends runs at broken structures; this check guards selection
against frames from anywhere else (imported candidates, other explorers). It uses a
neighbour list with a short cut-off, so it costs microseconds per frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

#: Two atoms closer than this (Å) cannot be a physical structure.
MIN_DISTANCE = 0.5


def physically_sane(atoms_list: Sequence[Atoms], min_distance: float = MIN_DISTANCE) -> np.ndarray:
    """Mask of frames with finite coordinates and no two atoms closer than ``min_distance``."""
    return np.array([_sane(atoms, min_distance) for atoms in atoms_list], dtype=bool)


def _sane(atoms: Atoms, min_distance: float) -> bool:
    from ase.neighborlist import neighbor_list

    finite = np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell.array))
    if not finite:
        return False
    return len(atoms) < 2 or len(neighbor_list("i", atoms, min_distance)) == 0
