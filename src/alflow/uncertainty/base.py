"""One interface for every uncertainty estimator.

An estimator is an ASE calculator whose results hold, besides ``energy`` and
``forces`` (the prediction MD integrates):

``energy_std``
    spread of the predicted total energy (eV);
``forces_std``
    per-atom force uncertainty, shape (N,) (eV/Å);
``force_deviation``
    the frame's predicted largest force error (eV/Å): the expected maximum over
    atoms of the force-error norm if each atom's error were Gaussian with its
    calibrated uncertainty (:mod:`alflow.uncertainty.frame_error`). This is what
    selection and early stopping compare with ``lo`` and ``hi``;
``max_force_std``
    the largest calibrated per-atom uncertainty (DP-GEN's frame measure, calibrated);
``energy_deviation``
    the calibrated energy uncertainty per atom (eV/atom): ``energy_std`` divided by
    the number of atoms, times the energy calibration factor. Selection compares it
    with ``select.energy_lo``: a strained perfect crystal has zero forces for every
    model, so only its energy can show that the models disagree.

Force uncertainties are multiplied by the calibration factors fitted on held-out
frames (:mod:`alflow.uncertainty.calibrate`): ``element_scales`` per element where
given, else ``scale``; ``raw_force_deviation`` keeps DP-GEN's uncalibrated
``max_i sigma_i``. Energy uncertainties are multiplied by ``energy_scale``.
Estimators that are expensive compute the uncertainty only when one of these
properties is asked for (``calc.get_property("force_deviation")``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from ase.calculators.calculator import Calculator

from alflow.uncertainty.calibrate import atom_factors
from alflow.uncertainty.frame_error import expected_max_error

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ase import Atoms

UNCERTAINTY_PROPERTIES = (
    "energy_std",
    "forces_std",
    "force_deviation",
    "max_force_std",
    "raw_force_deviation",
    "energy_deviation",
)

#: Suffixes of the result keys under which estimators report their members' energies
#: (M,) and forces (M, N, 3): ``energy_committee``/``forces_committee`` for a committee,
#: ``energy_members``/``forces_members`` for a shallow ensemble.
MEMBER_SUFFIXES = ("committee", "members")


def members_in_results(results: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """The members' energies (M,) and forces (M, N, 3) in ``results``, or None."""
    for suffix in MEMBER_SUFFIXES:
        if f"energy_{suffix}" in results and f"forces_{suffix}" in results:
            return results[f"energy_{suffix}"], results[f"forces_{suffix}"]
    return None


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

    def __init__(
        self,
        scale: float = 1.0,
        element_scales: Mapping[str, float] | None = None,
        energy_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        element_scales = dict(element_scales or {})
        factors = [("scale", scale), ("energy_scale", energy_scale), *element_scales.items()]
        for name, value in factors:
            if not value > 0:
                raise ValueError(f"calibration factor {name} must be positive, got {value}")
        self.scale = float(scale)
        self.element_scales = {k: float(v) for k, v in element_scales.items()}
        self.energy_scale = float(energy_scale)

    @property
    def calibrated(self) -> bool:
        """Whether any calibration factor differs from 1."""
        factors = [self.scale, self.energy_scale, *self.element_scales.values()]
        return any(v != 1.0 for v in factors)

    @staticmethod
    def wants_uncertainty(properties: Sequence[str] | None) -> bool:
        """Whether any uncertainty property was requested."""
        return bool(properties) and any(p in UNCERTAINTY_PROPERTIES for p in properties)

    def _store_uncertainty(self, energy_std: float, per_atom_force_std: np.ndarray) -> None:
        """Record calibrated and raw uncertainties (``self.atoms`` gives the elements)."""
        per_atom = np.asarray(per_atom_force_std, dtype=float)
        raw = float(per_atom.max()) if per_atom.size else 0.0
        symbols = self.atoms.get_chemical_symbols() if self.atoms is not None else []
        calibrated = per_atom * atom_factors(symbols, self.scale, self.element_scales)
        n_atoms = max(1, len(per_atom))
        self.results.update(
            energy_std=float(energy_std),
            energy_deviation=self.energy_scale * float(energy_std) / n_atoms,
            forces_std=calibrated,
            force_deviation=expected_max_error(calibrated),
            max_force_std=float(calibrated.max()) if calibrated.size else 0.0,
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
