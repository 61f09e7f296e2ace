"""Experimental design on the last layer (alflow.select.design): the closed forms
against brute force, and the greedy batch against redundancy."""

from __future__ import annotations

import numpy as np
import pytest

from alflow.select.design import (
    design_scores,
    frame_precision,
    greedy_design,
    posterior_covariance,
    updated_covariance,
)


def _random_design(rng: np.random.Generator, hidden: int = 4, atoms: int = 3):
    return rng.normal(size=hidden), rng.normal(size=(hidden, atoms, 3))


def test_frame_precision_is_the_design_outer_product() -> None:
    rng = np.random.default_rng(0)
    g, jac = _random_design(rng)
    precision = frame_precision(g, jac, energy_noise=0.5, force_noise=0.1)
    design = np.hstack([g[:, None] / 0.5**0.5, jac.reshape(4, -1) / 0.1**0.5])
    assert np.allclose(precision, design @ design.T)


def test_update_is_the_posterior_with_the_new_frame() -> None:
    rng = np.random.default_rng(1)
    trained = [frame_precision(*_random_design(rng), 1.0, 1.0) for _ in range(3)]
    new = frame_precision(*_random_design(rng), 1.0, 1.0)
    sigma = posterior_covariance(trained)
    assert np.allclose(updated_covariance(sigma, new), np.linalg.inv(sum(trained) + new))


def test_update_keeps_unconstrained_directions_at_zero() -> None:
    # one frame that only sees the first two of four hidden units
    g = np.array([1.0, 2.0, 0.0, 0.0])
    jac = np.zeros((4, 2, 3))
    jac[:2] = np.random.default_rng(2).normal(size=(2, 2, 3))
    sigma = posterior_covariance([frame_precision(g, jac, 1.0, 1.0)])
    assert np.allclose(sigma[2:], 0.0) and np.allclose(sigma[:, 2:], 0.0)
    updated = updated_covariance(sigma, frame_precision(g, jac, 1.0, 1.0))
    assert np.allclose(updated[2:], 0.0)
    assert np.trace(updated) < np.trace(sigma)


def test_scores_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    sigma = posterior_covariance(
        [frame_precision(*_random_design(rng), 1.0, 1.0) for _ in range(4)]
    )
    designs = [_random_design(rng) for _ in range(5)]
    precisions = np.asarray([frame_precision(g, j, 1.0, 1.0) for g, j in designs])
    moment = np.mean(precisions, axis=0)
    information = design_scores(sigma, precisions, "information")
    variance = design_scores(sigma, precisions, "variance", moment)
    for k, (g, jac) in enumerate(designs):
        rows = np.hstack([g[:, None], jac.reshape(4, -1)])  # H x (1 + 3N) design
        gain = np.linalg.slogdet(np.eye(rows.shape[1]) + rows.T @ sigma @ rows)[1]
        assert information[k] == pytest.approx(gain, rel=1e-10)
        drop = np.trace(moment @ (sigma - updated_covariance(sigma, precisions[k])))
        assert variance[k] == pytest.approx(drop, rel=1e-10)
    with pytest.raises(ValueError, match="pool's moment"):
        design_scores(sigma, precisions, "variance")
    with pytest.raises(ValueError, match="unknown design criterion"):
        design_scores(sigma, precisions, "entropy")  # type: ignore[arg-type]


@pytest.mark.parametrize("criterion", ["information", "variance"])
def test_a_batch_does_not_label_the_same_thing_twice(criterion) -> None:
    sigma = np.eye(2)
    strong_x = np.diag([10.0, 0.0])
    weaker_y = np.diag([0.0, 5.0])
    # two copies of the most informative frame and one that teaches the other unit
    precisions = np.asarray([strong_x, strong_x, weaker_y])
    picks = greedy_design(sigma, precisions, 2, criterion, pool_moment=np.eye(2))
    assert [i for i, _ in picks] == [0, 2]
    # scored on its own, the copy outranks the other frame: the update is what skips it
    alone = design_scores(sigma, precisions, criterion, np.eye(2))
    assert alone[1] > alone[2]


def test_variance_prefers_frames_like_the_pool() -> None:
    sigma = np.eye(2)
    common = np.diag([1.0, 0.0])
    rare = np.diag([0.0, 1.5])
    pool_moment = np.diag([1.0, 0.01])  # the pool lives almost all along the first unit
    precisions = np.asarray([rare, common])
    assert greedy_design(sigma, precisions, 1, "variance", pool_moment)[0][0] == 1
    # the information gain ignores where the pool is and takes the larger precision
    assert greedy_design(sigma, precisions, 1, "information")[0][0] == 0


def test_greedy_stops_when_nothing_gains() -> None:
    sigma = np.diag([1.0, 0.0])
    useless = np.diag([0.0, 3.0])  # only teaches a direction the posterior already knows
    picks = greedy_design(sigma, np.asarray([np.diag([2.0, 0.0]), useless]), 5, "information")
    assert [i for i, _ in picks] == [0]
    assert greedy_design(sigma, np.zeros((0, 2, 2)), 3) == []
    assert greedy_design(sigma, np.asarray([useless]), 0) == []
