"""Committee uncertainty: K independently trained models, their mean and spread.

The per-atom spread is the one DP-GEN made standard: the norm of the per-component
standard deviation of the K predicted forces,

    sigma_i = sqrt( sum_c Var_k[F_kic] ) = sqrt( mean_k |F_ki - <F_i>|^2 ),

whose maximum over atoms is DP-GEN's frame measure (``raw_force_deviation``,
``max_force_std`` once calibrated). alflow's frame measure, ``force_deviation``, is
the expected largest force error given the calibrated sigma_i (see
:mod:`alflow.uncertainty.frame_error`).

:class:`CommitteeCalculator` is an ASE calculator that returns the committee mean as
energy and forces plus these spreads, so that the same object drives MD and scores
candidate frames in batch.

With ``forces="first"`` it returns member 0's energy and forces instead and
evaluates the other members only when an uncertainty is asked for, as DP-GEN's
LAMMPS driver does: MD then integrates one model at every step and pays for the
committee only at the steps it records (about 1/K of the cost per step at
``record_every`` 10, see benchmarks/md_throughput.py).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

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
    forces
        ``"mean"``: energy, forces and stress are the committee mean and every member
        runs at every call. ``"first"``: they are member 0's, and the other members
        run only when an uncertainty property is requested.

    Notes
    -----
    ``forces_committee`` (K, N, 3) and ``energy_committee`` (K,) hold the members'
    forces and energies whenever all ran.
    """

    kind = "committee"

    def __init__(
        self,
        model_paths: Sequence[str | Path],
        scale: float = 1.0,
        device: str = "cpu",
        default_dtype: str = "float64",
        forces: Literal["mean", "first"] = "mean",
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, **kwargs)
        if len(model_paths) < 2:
            raise ValueError("a committee needs at least two model files")
        if forces not in ("mean", "first"):
            raise ValueError(f"forces must be 'mean' or 'first', got {forces!r}")
        self.model_paths = [str(p) for p in model_paths]
        self.forces_from = forces
        if forces == "mean":
            self._mace = _mace_calculator(self.model_paths, device, default_dtype)
        else:
            self._first = _mace_calculator(self.model_paths[:1], device, default_dtype)
            self._others = _mace_calculator(self.model_paths[1:], device, default_dtype)

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
        """Evaluate the members and reduce to the prediction and the spread."""
        super().calculate(atoms, properties, system_changes)
        if self.forces_from == "first":
            self._calculate_first(properties)
            return
        self._mace.calculate(self.atoms, ["energy", "forces"], all_changes)
        members, energies = _members(self._mace)
        self.results = {
            "energy": float(energies.mean()),
            "free_energy": float(energies.mean()),
            "forces": members.mean(axis=0),
            "forces_committee": members,
            "energy_committee": energies,
        }
        if self.atoms.pbc.all() and self._mace.results.get("stress") is not None:
            self.results["stress"] = np.asarray(self._mace.results["stress"])  # for NPT
        self._store_uncertainty(float(energies.std()), per_atom_force_deviation(members))

    def _calculate_first(self, properties: list[str] | None) -> None:
        """Member 0 always; the others only for an uncertainty."""
        self._first.calculate(self.atoms, ["energy", "forces"], all_changes)
        first = self._first.results
        energy = float(first["energy"])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(first["forces"]),
        }
        if self.atoms.pbc.all() and first.get("stress") is not None:
            self.results["stress"] = np.asarray(first["stress"])
        if not self.wants_uncertainty(properties):
            return
        self._others.calculate(self.atoms, ["energy", "forces"], all_changes)
        others, other_energies = _members(self._others)
        members = np.concatenate([np.asarray(first["forces"])[None], others])
        energies = np.concatenate([[energy], other_energies])
        self.results["forces_committee"] = members
        self.results["energy_committee"] = energies
        self._store_uncertainty(float(energies.std()), per_atom_force_deviation(members))


def _mace_calculator(paths: list[str], device: str, default_dtype: str) -> Any:
    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        # mace-torch loads its own pickled models on purpose and warns about it
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        return MACECalculator(model_paths=paths, device=device, default_dtype=default_dtype)


def _members(calc: Any) -> tuple[np.ndarray, np.ndarray]:
    """Forces (K, N, 3) and energies (K,) of every model of a MACE calculator."""
    if len(calc.models) == 1:
        return np.asarray(calc.results["forces"])[None], np.asarray([calc.results["energy"]])
    return np.asarray(calc.results["forces_comm"]), np.asarray(calc.results["energy_comm"])
