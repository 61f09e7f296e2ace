"""Committee uncertainty: K independently trained models, their mean and spread.

The frame-level measure is the one DP-GEN made standard: for each atom the norm of
the per-component standard deviation of the K predicted forces, then the maximum
over atoms,

    d_F = max_i sqrt( sum_c Var_k[F_kic] ) = max_i sqrt( mean_k |F_ki - <F_i>|^2 ).

:class:`CommitteeCalculator` is an ASE calculator that returns the committee mean as
energy and forces (what MD integrates) plus these spreads, so that the same object
drives MD and scores candidate frames in batch.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import all_changes

from alflow.uncertainty.base import UncertaintyCalculator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ase import Atoms


def per_atom_force_deviation(forces: np.ndarray) -> np.ndarray:
    """Per-atom force deviation of a committee.

    Parameters
    ----------
    forces
        Array of shape (K, N, 3): forces of K members on N atoms.

    Returns
    -------
    numpy.ndarray
        Shape (N,): norm over x, y, z of the population standard deviation over K.
    """
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[-1] != 3:
        raise ValueError(f"expected forces of shape (K, N, 3), got {forces.shape}")
    if forces.shape[0] < 2:
        raise ValueError("a committee needs at least two members")
    return np.sqrt(forces.var(axis=0).sum(axis=-1))


def max_force_deviation(forces: np.ndarray) -> float:
    """Frame-level deviation: the largest per-atom force deviation (eV/Å)."""
    return float(per_atom_force_deviation(forces).max())


class CommitteeCalculator(UncertaintyCalculator):
    """Mean and spread of a committee of MACE models.

    Parameters
    ----------
    model_paths
        Paths of the K ``.model`` files.
    scale
        Calibration factor for the force uncertainties.
    device
        Torch device.
    default_dtype
        Precision to evaluate in.

    Notes
    -----
    Every member runs at every call, so the uncertainty is always computed.
    ``forces_committee`` (K, N, 3) holds the members' forces.
    """

    kind = "committee"

    def __init__(
        self,
        model_paths: Sequence[str | Path],
        scale: float = 1.0,
        device: str = "cpu",
        default_dtype: str = "float64",
        **kwargs: Any,
    ) -> None:
        from mace.calculators import MACECalculator

        super().__init__(scale=scale, **kwargs)
        if len(model_paths) < 2:
            raise ValueError("a committee needs at least two model files")
        self.model_paths = [str(p) for p in model_paths]
        with warnings.catch_warnings():
            # mace-torch loads its own pickled models on purpose and warns about it
            warnings.filterwarnings("ignore", message=".*weights_only.*")
            self._mace = MACECalculator(
                model_paths=self.model_paths, device=device, default_dtype=default_dtype
            )

    @property
    def size(self) -> int:
        """Number of committee members."""
        return len(self.model_paths)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Evaluate every member and reduce to mean and spread."""
        super().calculate(atoms, properties, system_changes)
        self._mace.calculate(self.atoms, ["energy", "forces"], all_changes)
        members = np.asarray(self._mace.results["forces_comm"])
        energies = np.asarray(self._mace.results["energy_comm"])
        self.results = {
            "energy": float(energies.mean()),
            "free_energy": float(energies.mean()),
            "forces": members.mean(axis=0),
            "forces_committee": members,
        }
        if self.atoms.pbc.all() and self._mace.results.get("stress") is not None:
            self.results["stress"] = np.asarray(self._mace.results["stress"])  # for NPT
        self._store_uncertainty(float(energies.std()), per_atom_force_deviation(members))
