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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from collections.abc import Sequence


class Calibration(BaseModel):
    """A fitted calibration factor and how well it does."""

    scale: float = Field(description="Factor applied to the raw force uncertainties.")
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
    sigma_per_frame: Sequence[np.ndarray], errors_per_frame: Sequence[np.ndarray]
) -> Calibration:
    """Fit the scale on per-atom uncertainties and force-error norms of held-out frames."""
    sigma = np.concatenate([np.ravel(s) for s in sigma_per_frame])
    errors = np.concatenate([np.ravel(e) for e in errors_per_frame])
    scale = fit_scale(sigma, errors)
    return Calibration(
        scale=scale,
        n_frames=len(sigma_per_frame),
        n_atoms=int(sigma.size),
        ence_raw=expected_normalized_calibration_error(sigma, errors),
        ence_calibrated=expected_normalized_calibration_error(scale * sigma, errors),
    )


#: File, next to the model files of an iteration, that holds their calibration.
CALIBRATION_FILE = "calibration.json"


def save_calibration(calibration: Calibration, model_dir: Path) -> Path:
    """Store the calibration with the models it belongs to."""
    path = Path(model_dir) / CALIBRATION_FILE
    path.write_text(calibration.model_dump_json(indent=2))
    return path


def load_calibration(model_dir: Path) -> Calibration | None:
    """The calibration stored with an iteration's models, if any."""
    path = Path(model_dir) / CALIBRATION_FILE
    return Calibration.model_validate_json(path.read_text()) if path.is_file() else None
