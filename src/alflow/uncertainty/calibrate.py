"""Calibration: one factor that makes predicted spreads match observed errors.

For every atom of held-out labelled frames the estimator gives a force uncertainty
sigma_i and the model makes an error |F_pred,i - F_ref,i|. If the spread were a
faithful Gaussian, E|dF_i|^2 = sigma_i^2 (sigma_i being the norm of the per-component
std). The scale s that makes this hold on average is

    s^2 = sum_i |dF_i|^2 / sum_i sigma_i^2,

the maximum-likelihood factor of a Gaussian model. Calibrated uncertainties are
s * sigma. :func:`expected_normalized_calibration_error` (ENCE, Levi et al. 2022)
measures what remains: bin atoms by sigma, compare the root mean variance with the
observed RMSE per bin.

The same fit is made per element (:func:`fit_element_scales`): estimators misjudge
light and heavy atoms differently (a committee's spread on hydrogen is not
comparable with its spread on oxygen), and the frame uncertainty, a maximum over
atoms, is only meaningful when each atom's value is on the same scale. Elements
with few held-out atoms are pulled towards the global factor.

Energies get a factor of their own, fitted the same way on frames: the estimator's
energy spread per atom against the energy error per atom. Per atom, because that is
what a threshold can be set in (``select.energy_lo``, eV/atom) whatever the size of
the frames. A systematic energy offset that the members share is an error the spread
cannot see; the factor absorbs it, which errs towards labelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Held-out atoms of an element that weigh as much as the global factor in the
#: element's own factor (a prior of pseudo-atoms calibrated at the global factor).
PRIOR_ATOMS = 20


class Calibration(BaseModel):
    """A fitted calibration factor and how well it does."""

    scale: float = Field(description="Factor applied to the raw force uncertainties.")
    element_scales: dict[str, float] = Field(
        default_factory=dict,
        description="Factor per element symbol, used instead of scale for atoms of "
        "that element (empty: scale applies to every atom).",
    )
    energy_scale: float = Field(
        1.0,
        description="Factor applied to the raw energy uncertainty per atom (1: no energy "
        "uncertainties were given to fit it).",
    )
    n_frames: int = Field(description="Held-out frames it was fitted on.")
    n_atoms: int = Field(description="Atoms (error/uncertainty pairs) it was fitted on.")
    ence_raw: float = Field(description="ENCE of the raw uncertainties.")
    ence_calibrated: float = Field(description="ENCE after scaling.")


def fit_scale(sigma: np.ndarray, errors: np.ndarray) -> float:
    """Maximum-likelihood scale s with ``errors ≈ s * sigma`` (see module docstring).

    Raises
    ------
    ValueError
        If the arrays differ in length, are empty, or every sigma is zero.
    """
    sigma = np.asarray(sigma, dtype=float).ravel()
    errors = np.asarray(errors, dtype=float).ravel()
    if sigma.shape != errors.shape or sigma.size == 0:
        raise ValueError("need equally many uncertainties and errors, at least one")
    denominator = float(np.sum(sigma**2))
    if denominator <= 0:
        raise ValueError("every predicted uncertainty is zero: nothing to scale")
    return float(np.sqrt(np.sum(errors**2) / denominator))


def fit_element_scales(
    sigma: np.ndarray,
    errors: np.ndarray,
    symbols: Sequence[str],
    scale: float,
    prior_atoms: int = PRIOR_ATOMS,
) -> dict[str, float]:
    """Maximum-likelihood factor per element, shrunk towards the global ``scale``.

    Element Z with n atoms gets its own fit ``s_Z`` (:func:`fit_scale` on its atoms),
    weighted against the global factor in log space:
    ``log s'_Z = (n log s_Z + n0 log s) / (n + n0)``, ``n0 = prior_atoms``. With many
    atoms this is the element's own fit; with few it stays near ``scale``.
    """
    sigma = np.asarray(sigma, dtype=float).ravel()
    errors = np.asarray(errors, dtype=float).ravel()
    symbols = np.asarray(symbols)
    if not sigma.shape == errors.shape == symbols.shape:
        raise ValueError("need one element symbol per uncertainty and error")
    scales = {}
    for element in np.unique(symbols):
        mine = symbols == element
        n = int(mine.sum())
        if not np.any(sigma[mine] > 0) or not np.any(errors[mine] > 0):
            scales[str(element)] = float(scale)  # nothing to fit on this element
            continue
        own = fit_scale(sigma[mine], errors[mine])
        log_scale = (n * np.log(own) + prior_atoms * np.log(scale)) / (n + prior_atoms)
        scales[str(element)] = float(np.exp(log_scale))
    return scales


def atom_factors(
    symbols: Sequence[str], scale: float, element_scales: Mapping[str, float] | None
) -> np.ndarray:
    """Calibration factor of each atom: its element's, else the global ``scale``."""
    if not element_scales:
        return np.full(len(symbols), float(scale))
    return np.array([element_scales.get(str(s), scale) for s in symbols], dtype=float)


def expected_normalized_calibration_error(
    sigma: np.ndarray, errors: np.ndarray, bins: int = 10
) -> float:
    """ENCE: mean over equal-count bins of |RMV - RMSE| / RMV (0 is perfect)."""
    sigma = np.asarray(sigma, dtype=float).ravel()
    errors = np.asarray(errors, dtype=float).ravel()
    order = np.argsort(sigma)
    values = []
    for chunk in np.array_split(order, min(bins, sigma.size)):
        rmv = float(np.sqrt(np.mean(sigma[chunk] ** 2)))
        rmse = float(np.sqrt(np.mean(errors[chunk] ** 2)))
        if rmv > 0:
            values.append(abs(rmv - rmse) / rmv)
    return float(np.mean(values)) if values else float("nan")


def calibrate(
    sigma_per_frame: Sequence[np.ndarray],
    errors_per_frame: Sequence[np.ndarray],
    symbols_per_frame: Sequence[Sequence[str]] | None = None,
    energy_sigma_per_atom: Sequence[float] | None = None,
    energy_errors_per_atom: Sequence[float] | None = None,
) -> Calibration:
    """Fit the scale on per-atom uncertainties and force-error norms of held-out frames.

    With ``symbols_per_frame`` (the element of every atom) a factor per element is
    fitted as well, and the calibrated ENCE uses those factors. With the frames'
    energy uncertainties and absolute energy errors per atom, the energy factor is
    fitted too (it stays 1 when every energy uncertainty is zero).
    """
    sigma = np.concatenate([np.ravel(s) for s in sigma_per_frame])
    errors = np.concatenate([np.ravel(e) for e in errors_per_frame])
    scale = fit_scale(sigma, errors)
    element_scales: dict[str, float] = {}
    factors = np.full(sigma.size, scale)
    if symbols_per_frame is not None:
        symbols = [str(s) for frame in symbols_per_frame for s in frame]
        element_scales = fit_element_scales(sigma, errors, symbols, scale)
        factors = atom_factors(symbols, scale, element_scales)
    energy_scale = 1.0
    if energy_sigma_per_atom is not None and energy_errors_per_atom is not None:
        energy_sigma = np.asarray(energy_sigma_per_atom, dtype=float)
        if np.any(energy_sigma > 0):
            energy_scale = fit_scale(energy_sigma, np.asarray(energy_errors_per_atom))
    return Calibration(
        scale=scale,
        element_scales=element_scales,
        energy_scale=energy_scale,
        n_frames=len(sigma_per_frame),
        n_atoms=int(sigma.size),
        ence_raw=expected_normalized_calibration_error(sigma, errors),
        ence_calibrated=expected_normalized_calibration_error(factors * sigma, errors),
    )


#: File, next to the model files of an iteration, that holds their calibration.
CALIBRATION_FILE = "calibration.json"


def save_calibration(calibration: Calibration, model_dir: Path) -> Path:
    """Store the calibration with the models it belongs to.

    The folder is created when missing: an iteration that kept the previous models
    trained nothing in it, yet its calibration is still recorded there.
    """
    path = Path(model_dir) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(calibration.model_dump_json(indent=2))
    return path


def load_calibration(model_dir: Path) -> Calibration | None:
    """The calibration stored with an iteration's models, if any."""
    path = Path(model_dir) / CALIBRATION_FILE
    return Calibration.model_validate_json(path.read_text()) if path.is_file() else None
