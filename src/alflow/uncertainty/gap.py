"""GAP predictive variance as uncertainty.

A Gaussian approximation potential predicts each atom's local energy with a
posterior variance (``local_gap_variance`` in quippy). Its square root, per atom,
is the per-atom uncertainty and its maximum the frame's; the total-energy std is
the square root of the summed local variances (quippy's ``gap_variance`` would
include correlations between atoms, which sparse GAP only approximates anyway).

The local-energy std is in eV, not eV/Å: the calibration factor fitted on held-out
frames (:mod:`alflow.uncertainty.calibrate`) maps it onto observed force errors,
after which ``lo`` and ``hi`` apply as for the other estimators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import all_changes

from alflow.uncertainty.base import UncertaintyCalculator

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms


class GAPCalculator(UncertaintyCalculator):
    """Energy, forces and predictive variance of a GAP model.

    Parameters
    ----------
    model_path
        ``gap.xml`` written by ``gap_fit`` (its sparse-point files beside it).
    scale
        Calibration factor.
    """

    kind = "gap"

    def __init__(self, model_path: str | Path, scale: float = 1.0, **kwargs: Any) -> None:
        from quippy.potential import Potential

        super().__init__(scale=scale, **kwargs)
        self.model_path = str(model_path)
        self._pot = Potential(param_filename=self.model_path)
        self._pot_variance = Potential(
            param_filename=self.model_path, calc_args="local_gap_variance"
        )

    @property
    def size(self) -> int:
        """One model."""
        return 1

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Energy and forces; the variance too when an uncertainty is requested."""
        super().calculate(atoms, properties, system_changes)
        want = self.wants_uncertainty(properties)
        pot = self._pot_variance if want else self._pot
        work = self.atoms.copy()
        wanted = ["energy", "forces"] + (["stress"] if work.pbc.all() else [])
        pot.calculate(work, wanted, all_changes)
        energy = float(pot.results["energy"])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.array(pot.results["forces"], dtype=float),
        }
        if self.atoms.pbc.all() and "stress" in pot.results:
            self.results["stress"] = np.array(pot.results["stress"], dtype=float)  # for NPT
        if want:
            variance = np.clip(
                np.asarray(pot.extra_results["atoms"]["local_gap_variance"], dtype=float), 0, None
            )
            self._store_uncertainty(float(np.sqrt(variance.sum())), np.sqrt(variance))
