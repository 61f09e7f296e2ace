"""Uncertainty estimators behind one interface (:mod:`alflow.uncertainty.base`).

:func:`make_estimator` turns the model records of an iteration into the estimator
that explores and scores with them: a committee of MACE models, a MACE model with
a shallow ensemble, or a GAP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from alflow.train.records import ModelRecord
    from alflow.uncertainty.base import UncertaintyCalculator

#: Model kind → estimator, as recorded in ``ModelRecord.kind``.
ESTIMATORS = {"mace": "committee", "mace-shallow": "shallow", "gap": "gap"}


def make_estimator(
    models: Sequence[ModelRecord],
    scale: float = 1.0,
    element_scales: Mapping[str, float] | None = None,
    committee_forces: str = "mean",
    energy_scale: float = 1.0,
) -> UncertaintyCalculator:
    """The estimator for an iteration's models (files checked against their sha256).

    Parameters
    ----------
    models
        All records of one iteration: K MACE members, or one shallow-ensemble model,
        or one GAP.
    scale
        Calibration factor of the force uncertainties.
    element_scales
        Calibration factor per element, used instead of ``scale`` where given.
    committee_forces
        For a committee: ``"mean"`` predicts with the mean of the members, ``"first"``
        with member 0 and runs the others only for uncertainties (cheaper MD);
        ignored by the other estimators, whose prediction is one model anyway.
    energy_scale
        Calibration factor of the energy uncertainty per atom.

    Raises
    ------
    ValueError
        For an empty list, mixed kinds, or a count the kind does not allow.
    """
    from alflow.train.records import ModelRecord

    records = [ModelRecord.model_validate(m) for m in models]
    kinds = {m.kind for m in records}
    if len(kinds) != 1:
        raise ValueError(f"expected models of one kind, got {sorted(kinds) or 'none'}")
    kind = kinds.pop()
    paths = [m.verified_path() for m in records]
    factors = {"scale": scale, "element_scales": element_scales, "energy_scale": energy_scale}
    if kind == "mace":
        from alflow.uncertainty.committee import CommitteeCalculator

        return CommitteeCalculator(paths, forces=committee_forces, **factors)
    if len(paths) != 1:
        raise ValueError(f"a '{kind}' estimator takes one model, got {len(paths)}")
    if kind == "mace-shallow":
        from alflow.uncertainty.shallow import ShallowEnsembleCalculator

        return ShallowEnsembleCalculator(paths[0], **factors)
    if kind == "gap":
        from alflow.uncertainty.gap import GAPCalculator

        return GAPCalculator(paths[0], **factors)
    raise ValueError(f"no uncertainty estimator for model kind '{kind}'")
