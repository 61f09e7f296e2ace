"""Batch selection as Bayesian experimental design on the model's last layer.

The last layer of a MACE model is linear in its output weights ``w``: a frame's
energy and forces change by ``G · d`` and ``-Jᵀ d`` when ``w`` moves by ``d`` (see
:mod:`alflow.train.shallow`). Labelling a frame therefore adds the precision

    P = G Gᵀ / σ_E² + J Jᵀ / σ_F²                    (H × H)

to the posterior of ``w``, with σ_E, σ_F the label noise (the trained model's
residuals). With Σ the posterior covariance from the training frames, labelling
frame i turns it into ``Σ' = Σ - Σ (I + P_i Σ)⁻¹ P_i Σ`` (Woodbury, valid for a
singular Σ too). Frames are picked greedily, Σ updated after each pick, so a
frame that repeats what an earlier pick of the same batch taught gains little. Two
criteria:

- ``information``: the expected information gain ``log det(I + Σ P_i)`` (D-optimal
  design: the frames that shrink the posterior's volume most);
- ``variance``: the drop of the posterior force variance averaged over the pool,
  ``tr(A (Σ - Σ'))`` with ``A`` the pool's mean ``J Jᵀ`` (V-optimal design: the
  frames that make the model most certain where the data are, which is what a test
  set drawn like the pool measures).

Only H × H matrices are formed (H is the readout's hidden width, 16 in MACE's
defaults), so a pool of thousands of frames is scored in well under a second.

Not a campaign strategy (yet): in the pool replay of ``benchmarks/data_efficiency.py``
(``design-variance``, ``design-information``) these picks were worth fewer labels than
alflow's window → SOAP farthest-point policy on acac (benchmarks/README.md), so the
policy does not offer them; they are kept for that comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

Criterion = Literal["information", "variance"]


def frame_precision(
    g: np.ndarray, jac: np.ndarray, energy_noise: float, force_noise: float
) -> np.ndarray:
    """What labelling one frame adds to the weights' precision, shape (H, H).

    Parameters
    ----------
    g
        Summed hidden features per atom of the frame (energy per atom = ``g · w``),
        shape (H,).
    jac
        Derivatives of the summed features with respect to the positions, shape
        (H, N, 3) (forces = ``-jacᵀ w``).
    energy_noise, force_noise
        Label noise variances: eV²/atom² and eV²/Å².
    """
    g = np.asarray(g, dtype=float)
    flat = np.asarray(jac, dtype=float).reshape(len(g), -1)
    return np.outer(g, g) / energy_noise + flat @ flat.T / force_noise


def posterior_covariance(precisions: Sequence[np.ndarray], rcond: float = 1e-12) -> np.ndarray:
    """Covariance of the weights given the labelled frames' precisions (flat prior).

    Directions no labelled frame constrains get no variance (pseudo-inverse): the
    criteria then see only what the labelled data can be compared with.
    """
    total = np.sum(np.asarray(precisions, dtype=float), axis=0)
    return np.linalg.pinv(total, rcond=rcond, hermitian=True)


def updated_covariance(covariance: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The covariance after labelling one frame of ``precision``."""
    h = len(covariance)
    gain = np.linalg.solve(np.eye(h) + precision @ covariance, precision @ covariance)
    updated = covariance - covariance @ gain
    return 0.5 * (updated + updated.T)  # keep it symmetric against rounding


def design_scores(
    covariance: np.ndarray,
    precisions: np.ndarray,
    criterion: Criterion,
    pool_moment: np.ndarray | None = None,
) -> np.ndarray:
    """The criterion for every candidate at once, shape (C,).

    ``precisions`` has shape (C, H, H); ``pool_moment`` (H, H) is needed by
    ``variance``.
    """
    h = len(covariance)
    products = precisions @ covariance  # P_i Σ, shape (C, H, H)
    shifted = np.eye(h) + products
    if criterion == "information":
        sign, logdet = np.linalg.slogdet(shifted)
        return np.where(sign > 0, logdet, 0.0)
    if criterion == "variance":
        if pool_moment is None:
            raise ValueError("the variance criterion needs the pool's moment")
        # tr(A Σ (I + P Σ)⁻¹ P Σ) = sum of A Σ ∘ ((I + P Σ)⁻¹ P Σ)ᵀ
        reduction = np.linalg.solve(shifted, products)
        weighted = pool_moment @ covariance
        return np.einsum("ij,cji->c", weighted, reduction)
    raise ValueError(f"unknown design criterion {criterion!r}: use 'information' or 'variance'")


def greedy_design(
    covariance: np.ndarray,
    precisions: Sequence[np.ndarray] | np.ndarray,
    cap: int,
    criterion: Criterion = "variance",
    pool_moment: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """Pick up to ``cap`` candidates greedily, updating the posterior after each pick.

    Parameters
    ----------
    covariance
        Posterior covariance of the weights given the training frames, (H, H).
    precisions
        Each candidate's precision (:func:`frame_precision`), (C, H, H).
    cap
        How many to pick.
    criterion
        ``information`` or ``variance`` (module docstring).
    pool_moment
        The pool's mean force-design moment ``mean_i J_i J_iᵀ / σ_F²``, (H, H); for
        ``variance`` only.

    Returns
    -------
    list of (int, float)
        Candidate index and its score when it was picked, in the order picked.
        Stops early when no candidate would gain anything.
    """
    stack = np.asarray(precisions, dtype=float)
    if stack.ndim != 3 or cap <= 0 or len(stack) == 0:
        return []
    sigma = np.asarray(covariance, dtype=float)
    available = np.ones(len(stack), dtype=bool)
    picks: list[tuple[int, float]] = []
    while len(picks) < min(cap, len(stack)):
        scores = design_scores(sigma, stack, criterion, pool_moment)
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        if not scores[best] > 0.0:
            break  # nothing left teaches the last layer anything
        picks.append((best, float(scores[best])))
        available[best] = False
        sigma = updated_covariance(sigma, stack[best])
    return picks
