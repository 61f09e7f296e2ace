"""The selection window, farthest-point sampling and the selection cap."""

from __future__ import annotations

import numpy as np
import pytest

from alflow.select.fps import farthest_point_sampling
from alflow.select.policy import select_frames, selection_cap
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


def test_energy_threshold_adds_frames_below_lo_but_never_above_hi():
    forces = [0.0, 0.01, 0.1, 0.6, 0.0]
    energy = [0.004, 0.0, 0.0, 0.02, 0.001]  # eV/atom
    assert in_window(forces, 0.05, 0.5).tolist() == [False, False, True, False, False]
    with_energy = in_window(forces, 0.05, 0.5, energy, energy_lo=0.003)
    # frame 0: a strained crystal, zero forces, unsure energy; frame 3 is still failed
    assert with_energy.tolist() == [True, False, True, False, False]
    counts = count_window(forces, 0.05, 0.5, energy, energy_lo=0.003)
    assert (counts.accurate, counts.candidate, counts.failed) == (2, 2, 1)
    # without a threshold the energies change nothing
    assert in_window(forces, 0.05, 0.5, energy).tolist() == in_window(forces, 0.05, 0.5).tolist()
    with pytest.raises(ValueError, match="2 energy uncertainties for 5"):
        in_window(forces, 0.05, 0.5, [0.1, 0.2], energy_lo=0.003)


def test_policy_selects_energy_candidates_and_says_why():
    energy = np.array([0.009, 0, 0, 0, 0, 0, 0.00002, 0])  # eV/atom
    picks = select_frames(
        "alflow", DEVIATIONS, VECTORS, 0.05, 0.5, cap=8, energy_deviations=energy, energy_lo=0.005
    )
    chosen = {p.index for p in picks}
    assert 0 in chosen and 6 not in chosen  # 9 meV/atom reaches the threshold, 0.02 does not
    assert chosen - {0} == {1, 2, 3, 5, 7}
    reason = next(p.reason for p in picks if p.index == 0)
    assert "energy uncertainty 9.0 meV/atom" in reason


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


def test_selection_cap_respects_budget():
    assert selection_cap(8, labels_used=0, max_labels=None) == 8
    assert selection_cap(8, labels_used=95, max_labels=100) == 5
    assert selection_cap(8, labels_used=120, max_labels=100) == 0


DEVIATIONS = np.array([0.01, 0.1, 0.2, 0.3, 0.9, 0.15, 0.02, 0.25])
VECTORS = np.random.default_rng(0).normal(size=(8, 4))


def test_alflow_strategy_picks_from_window_with_reasons():
    novelty = np.array([0.5, 0.4, 0.01, 0.3, 0.6, 0.2, 0.1, 0.35])
    picks = select_frames("alflow", DEVIATIONS, VECTORS, 0.05, 0.5, cap=3, novelty=novelty)
    assert len(picks) == 3 and [p.rank for p in picks] == [0, 1, 2]
    assert {p.index for p in picks} <= {1, 2, 3, 5, 7}
    assert "uncertainty" in picks[0].reason and "novelty" in picks[0].reason
    # frames too close to the training set are not labelled
    picks = select_frames(
        "alflow", DEVIATIONS, VECTORS, 0.05, 0.5, cap=10, novelty=novelty, novelty_min=0.25
    )
    assert sorted(p.index for p in picks) == [1, 3, 7]
    assert select_frames("alflow", DEVIATIONS, VECTORS, 0.05, 0.5, cap=0) == []


def test_comparison_strategies():
    ranked = select_frames("max-uncertainty", DEVIATIONS, VECTORS, 0.05, 0.5, cap=3)
    assert [p.index for p in ranked] == [3, 7, 2]
    first = select_frames("dpgen", DEVIATIONS, VECTORS, 0.05, 0.5, cap=3, seed=1)
    again = select_frames("dpgen", DEVIATIONS, VECTORS, 0.05, 0.5, cap=3, seed=1)
    assert first == again and {p.index for p in first} <= {1, 2, 3, 5, 7}
    seeds = {
        tuple(p.index for p in select_frames("dpgen", DEVIATIONS, VECTORS, 0.05, 0.5, 3, seed=s))
        for s in range(10)
    }
    assert len(seeds) > 1  # really random
    # SOAP-FPS ignores the uncertainty: it may pick frames outside the window
    everything = select_frames("soap-fps", DEVIATIONS, VECTORS, 0.05, 0.5, cap=8)
    assert sorted(p.index for p in everything) == list(range(8))
    with pytest.raises(ValueError, match="unknown selection strategy"):
        select_frames("random", DEVIATIONS, VECTORS, 0.05, 0.5, cap=3)


def ethanol():
    from pathlib import Path

    from ase.io import read

    return read(Path(__file__).resolve().parents[1] / "configs" / "data" / "ethanol.xyz")


def test_soap_novelty_is_invariant_and_finds_new_environments():
    from alflow.select.soap import SOAPDescriptor, frame_novelty

    molecule = ethanol()
    soap = SOAPDescriptor(molecule.numbers)
    reference = soap.all_environments([molecule])
    assert reference.dtype == np.float32
    assert np.allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    moved = molecule.copy()
    moved.rotate(67, "x", center="COM")
    moved.translate([1.0, -2.0, 0.5])
    shuffled = molecule[np.random.default_rng(0).permutation(len(molecule))]
    stretched = molecule.copy()
    stretched.set_distance(0, 1, 2.2, fix=0)  # break the C-C bond
    rattled = molecule.copy()
    rattled.rattle(0.05, seed=2)
    envs = [
        a
        for chunk in soap.environments([molecule, moved, shuffled, rattled, stretched])
        for a in chunk
    ]
    novelty = frame_novelty(envs, reference)
    assert novelty[:3] == pytest.approx([0, 0, 0], abs=2e-3)
    assert 2e-3 < novelty[3] < novelty[4]


def test_soap_chunks_and_reference_reduction_agree_with_brute_force():
    from alflow.select.soap import SOAPDescriptor, SOAPSettings, nearest_distance, reduce_reference

    molecule = ethanol()
    frames = []
    for seed in range(7):
        frame = molecule.copy()
        frame.rattle(0.1, seed=seed)
        frames.append(frame)
    whole = SOAPDescriptor(molecule.numbers, SOAPSettings(chunk_frames=100)).all_environments(
        frames
    )
    chunked = SOAPDescriptor(molecule.numbers, SOAPSettings(chunk_frames=2)).all_environments(
        frames
    )
    assert np.allclose(whole, chunked, atol=1e-6)
    reduced = reduce_reference(whole, 20)
    assert reduced.shape == (20, whole.shape[1])
    query = whole[:5] * 0.9 + whole[-5:] * 0.1
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    brute = np.sqrt(((query[:, None, :] - whole[None]) ** 2).sum(-1)).min(axis=1)
    assert np.allclose(nearest_distance(query, whole), brute, atol=1e-3)


def test_streamed_scores_match_the_direct_computation():
    from alflow.select.soap import (
        SOAPDescriptor,
        SOAPSettings,
        frame_novelty,
        score_candidates,
    )

    molecule = ethanol()
    frames = []
    for seed in range(9):
        frame = molecule.copy()
        frame.rattle(0.05 * (seed % 3), seed=seed)
        frames.append(frame)
    soap = SOAPDescriptor(molecule.numbers, SOAPSettings(chunk_frames=2))
    scores = score_candidates(soap, frames[3:], frames[:3])
    reference = soap.all_environments(frames[:3])
    direct = frame_novelty([a for c in soap.environments(frames[3:]) for a in c], reference)
    # float32 resolves unit-SOAP distances to ~1e-3 (2 - 2cos cancels near 0)
    assert np.allclose(scores.novelty, direct, atol=2e-3)
    assert scores.vectors.shape == (6, soap.size) and scores.training_vectors.shape[0] == 3
    assert np.allclose(np.linalg.norm(scores.vectors, axis=1), 1, atol=1e-5)


def test_physical_filter_drops_collapsed_and_non_finite_frames():
    from alflow.select.physical import physically_sane

    good = ethanol()
    collapsed = good.copy()
    collapsed.positions[1] = collapsed.positions[0] + [0.2, 0.0, 0.0]
    broken = good.copy()
    broken.positions[3, 2] = np.nan
    assert physically_sane([good, collapsed, broken, good]).tolist() == [True, False, False, True]


def copper_frames():
    from ase.build import bulk

    from alflow.frames import Frame

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    thermal = []
    for i in range(6):
        atoms = cell.copy()
        atoms.rattle(0.05, seed=i)
        thermal.append(Frame.from_atoms(atoms))
    strained = cell.copy()
    strained.set_cell(cell.cell * 1.04, scale_atoms=True)
    return [*thermal, Frame.from_atoms(strained)], [Frame.from_atoms(cell)]


def test_select_job_labels_a_strained_crystal_only_with_the_energy_threshold():
    from alflow.config import SelectConfig
    from alflow.select.jobs import SelectMaker

    frames, training = copper_frames()
    # the strained perfect crystal (last) has zero forces for every model: no force
    # uncertainty at all, but the models disagree on its energy
    deviations = np.array([0.2] * 6 + [0.0])
    energy = np.array([0.001] * 6 + [0.01])

    def chosen(**settings):
        maker = SelectMaker(settings=SelectConfig(lo=0.05, hi=1.0, **settings))
        return maker._choose(frames, deviations, energy, training, cap=7, iteration=1)

    assert 6 not in {p.index for p in chosen()}
    picks = chosen(energy_lo=0.005)
    assert {p.index for p in picks} == set(range(7))
    assert "energy uncertainty 10.0 meV/atom" in next(p.reason for p in picks if p.index == 6)


def test_runs_recorded_without_energy_uncertainties_select_by_forces():
    from alflow.explore.md import ExploreResult
    from alflow.select.jobs import energy_of

    frames, _ = copper_frames()
    old = ExploreResult(
        run_id="it001-run00",
        iteration=1,
        structure_index=0,
        temperature_K=300,
        steps_requested=70,
        steps_done=70,
        stopped_early=False,
        deviations=[0.1] * 7,
        frames=frames,
    )
    assert energy_of(old) == [0.0] * 7
    assert energy_of(old.model_copy(update={"energy_deviations": [0.2] * 7})) == [0.2] * 7
