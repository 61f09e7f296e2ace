from __future__ import annotations

import numpy as np
import pytest

from alflow.uncertainty.frame_error import expected_max_error, maxwell_cdf


def sampled_max_error(sigma: np.ndarray, samples: int, seed: int = 0) -> float:
    """Monte Carlo: per-atom 3-vector errors with component variance sigma^2/3."""
    rng = np.random.default_rng(seed)
    errors = rng.normal(size=(samples, sigma.size, 3)) * (sigma / np.sqrt(3))[None, :, None]
    return float(np.linalg.norm(errors, axis=-1).max(axis=1).mean())


def test_one_atom_is_the_mean_of_a_maxwell_distribution():
    assert expected_max_error(np.array([0.3])) == pytest.approx(
        0.3 * np.sqrt(8 / (3 * np.pi)), rel=1e-3
    )


@pytest.mark.parametrize(
    "sigma",
    [
        np.array([0.1, 0.5, 0.5]),
        np.full(40, 0.2),
        np.array([1.0, *np.full(200, 0.4)]),
        np.geomspace(0.01, 1.0, 64),
    ],
)
def test_matches_monte_carlo(sigma):
    assert expected_max_error(sigma) == pytest.approx(sampled_max_error(sigma, 20000), rel=0.01)


def test_more_uncertain_atoms_raise_the_expected_maximum():
    one = expected_max_error(np.array([0.5, 0.01, 0.01]))
    three = expected_max_error(np.array([0.5, 0.5, 0.5]))
    assert three > 1.2 * one
    # and DP-GEN's max sigma would call the two frames equal
    assert one < 0.5 < three


def test_scales_linearly_and_handles_empty_frames():
    sigma = np.array([0.2, 0.7, 0.1])
    assert expected_max_error(3 * sigma) == pytest.approx(3 * expected_max_error(sigma))
    assert expected_max_error(np.array([])) == 0.0
    assert expected_max_error(np.zeros(5)) == 0.0


def test_maxwell_cdf_is_a_distribution():
    t = np.linspace(0, 5, 500)
    cdf = maxwell_cdf(t, np.array(1.0))
    assert cdf[0] == 0.0
    assert np.all(np.diff(cdf) >= 0)
    assert cdf[-1] == pytest.approx(1.0, abs=1e-6)
