"""One interface for every uncertainty estimator.

An estimator is an ASE calculator whose results hold, besides ``energy`` and
``forces`` (the prediction MD integrates):

``energy_std``
    spread of the predicted total energy (eV);
``forces_std``
    per-atom force uncertainty, shape (N,) (eV/Å);
``force_deviation``
    the frame's largest per-atom force uncertainty (eV/Å): what selection and
    early stopping compare with ``lo`` and ``hi``.

Force uncertainties are multiplied by ``scale``, the calibration factor fitted on
held-out frames (:mod:`alflow.uncertainty.calibrate`); ``raw_force_deviation`` keeps
the uncalibrated value. Estimators that are expensive compute the uncertainty only
when one of these properties is asked for (``calc.get_property("force_deviation")``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from ase.calculators.calculator import Calculator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms

UNCERTAINTY_PROPERTIES = ("energy_std", "forces_std", "force_deviation", "raw_force_deviation")


class UncertaintyCalculator(Calculator):
    """Base class: subclasses fill ``results`` via :meth:`_store_uncertainty`."""

    kind: ClassVar[str] = ""
    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "forces",
        "stress",
        *UNCERTAINTY_PROPERTIES,
    ]

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f"calibration scale must be positive, got {scale}")
        self.scale = float(scale)

    @staticmethod
    def wants_uncertainty(properties: Sequence[str] | None) -> bool:
        """Whether any uncertainty property was requested."""
        return bool(properties) and any(p in UNCERTAINTY_PROPERTIES for p in properties)

    def _store_uncertainty(self, energy_std: float, per_atom_force_std: np.ndarray) -> None:
        """Record calibrated and raw uncertainties."""
        per_atom = np.asarray(per_atom_force_std, dtype=float)
        raw = float(per_atom.max()) if per_atom.size else 0.0
        self.results.update(
            energy_std=float(energy_std),
            forces_std=per_atom * self.scale,
            force_deviation=raw * self.scale,
            raw_force_deviation=raw,
        )


def force_deviation(calc: Calculator, atoms: Atoms) -> float:
    """Calibrated frame uncertainty of ``atoms`` (computing it if needed)."""
    return float(calc.get_property("force_deviation", atoms))


def score_frames(calc: UncertaintyCalculator, atoms_list: Sequence[Atoms]) -> dict[str, Any]:
    """Predictions and uncertainties for many frames.

    Returns
    -------
    dict
        ``energy``, ``energy_std``, ``force_deviation`` (F,) arrays, and ``forces``
        and ``forces_std``: lists of per-frame arrays.
    """
    out: dict[str, list[Any]] = {
        "energy": [],
        "energy_std": [],
        "force_deviation": [],
        "forces": [],
        "forces_std": [],
    }
    for atoms in atoms_list:
        atoms = atoms.copy()
        atoms.calc = calc
        calc.calculate(atoms, ["energy", "forces", "force_deviation"])
        for key in out:
            out[key].append(calc.results[key])
    return {
        "energy": np.asarray(out["energy"]),
        "energy_std": np.asarray(out["energy_std"]),
        "force_deviation": np.asarray(out["force_deviation"]),
        "forces": out["forces"],
        "forces_std": out["forces_std"],
    }
