"""Committee force deviation: the DP-GEN max-force-deviation measure."""

from __future__ import annotations

import numpy as np
import pytest

from alflow.uncertainty.committee import max_force_deviation, per_atom_force_deviation


def test_identical_members_have_zero_deviation():
    forces = np.tile(np.random.default_rng(0).normal(size=(1, 5, 3)), (4, 1, 1))
    assert max_force_deviation(forces) == pytest.approx(0.0)


def test_matches_definition():
    rng = np.random.default_rng(1)
    forces = rng.normal(size=(4, 6, 3))
    mean = forces.mean(axis=0)
    expected = np.sqrt(((forces - mean) ** 2).sum(axis=-1).mean(axis=0))
    assert np.allclose(per_atom_force_deviation(forces), expected)
    assert max_force_deviation(forces) == pytest.approx(expected.max())


def test_two_members_one_atom_by_hand():
    forces = np.zeros((2, 2, 3))
    forces[0, 1] = [1.0, 0.0, 0.0]
    forces[1, 1] = [-1.0, 0.0, 0.0]
    # std over members of x is 1, so the deviation of atom 1 is 1; atom 0 is 0
    assert per_atom_force_deviation(forces).tolist() == [0.0, 1.0]


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least two"):
        per_atom_force_deviation(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="shape"):
        per_atom_force_deviation(np.zeros((2, 3)))
