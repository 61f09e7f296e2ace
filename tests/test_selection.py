"""The selection window, farthest-point sampling and the selection cap."""

from __future__ import annotations

import numpy as np
import pytest

from alflow.select.fps import farthest_point_sampling
from alflow.select.policy import select_candidates, selection_cap
from alflow.select.window import WindowCounts, count_window, in_window


def test_window_is_lo_inclusive_hi_exclusive():
    d = [0.0, 0.049, 0.05, 0.3, 0.499, 0.5, 2.0]
    assert in_window(d, 0.05, 0.5).tolist() == [False, False, True, True, True, False, False]


def test_count_window_classes():
    counts = count_window([0.01, 0.02, 0.1, 0.2, 0.6], lo=0.05, hi=0.5)
    assert (counts.accurate, counts.candidate, counts.failed) == (2, 2, 1)
    assert counts.fraction("accurate") == pytest.approx(0.4)
    assert WindowCounts().fraction("accurate") is None
    assert (counts + counts).candidate == 4


def test_window_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="smaller than hi"):
        in_window([0.1], 0.5, 0.5)


def test_fps_picks_spread_points_in_order():
    x = np.array([[0.0], [0.1], [5.0], [10.0], [9.9], [4.0]])
    # first: farthest from the mean (4.83) is 10.0; then 0.0; then 5.0, which is
    # close to the mean but farthest from both picks
    assert farthest_point_sampling(x, 3) == [3, 0, 2]


def test_fps_seeded_with_reference_avoids_known_regions():
    x = np.array([[0.0], [0.2], [5.0], [10.0]])
    reference = np.array([[10.0], [0.1]])
    assert farthest_point_sampling(x, 1, reference) == [2]


def test_fps_stops_on_duplicates_of_reference():
    x = np.array([[1.0], [1.0]])
    assert farthest_point_sampling(x, 2, np.array([[1.0]])) == []
    assert farthest_point_sampling(x, 5) == [0]


def test_select_candidates_only_from_window_and_capped():
    deviations = np.array([0.01, 0.1, 0.2, 0.3, 0.9, 0.15])
    descriptors = np.arange(6, dtype=float)[:, None]
    chosen = select_candidates(deviations, descriptors, 0.05, 0.5, cap=3)
    assert len(chosen) == 3
    assert set(chosen) <= {1, 2, 3, 5}
    assert select_candidates(deviations, descriptors, 0.05, 0.5, cap=0) == []
    assert sorted(select_candidates(deviations, descriptors, 0.05, 0.5, cap=10)) == [1, 2, 3, 5]


def test_selection_cap_respects_budget():
    assert selection_cap(8, labels_used=0, max_labels=None) == 8
    assert selection_cap(8, labels_used=95, max_labels=100) == 5
    assert selection_cap(8, labels_used=120, max_labels=100) == 0


def test_radial_fingerprint_is_invariant_and_discriminates():
    from ase.build import molecule

    from alflow.select.descriptors import radial_fingerprint

    a = molecule("CH3CH2OH")
    b = a.copy()
    b.rotate(37, "x")
    b.translate([1.0, -2.0, 0.5])
    species = sorted(set(a.numbers))
    fa, fb = radial_fingerprint(a, species), radial_fingerprint(b, species)
    assert np.allclose(fa, fb)
    c = a.copy()
    c.positions[0] += [0.3, 0.0, 0.0]
    assert np.linalg.norm(radial_fingerprint(c, species) - fa) > 1e-3
