"""Seed frames for iteration 0: perturbed copies of the starting structures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from alflow.frames import Frame, Provenance

if TYPE_CHECKING:
    from collections.abc import Sequence


def perturbed_copies(
    structures: Sequence[Frame],
    n_frames: int,
    rattle_std: float,
    strain: float,
    seed: int,
) -> list[Frame]:
    """``n_frames`` copies of the structures (cycled) with random displacements.

    Periodic cells are also strained by a random symmetric strain with components
    up to ``strain`` (positions follow the cell).
    """
    if not structures:
        raise ValueError("no structures to perturb")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_frames):
        atoms = structures[k % len(structures)].to_atoms(with_labels=False)
        if strain > 0 and atoms.pbc.any():
            eps = rng.uniform(-strain, strain, size=(3, 3))
            eps = 0.5 * (eps + eps.T)
            atoms.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle_std, size=atoms.positions.shape)
        out.append(
            Frame.from_atoms(
                atoms,
                labels_from_calc=False,
                provenance=Provenance(source="bootstrap", iteration=0, step=k),
            )
        )
    return out
