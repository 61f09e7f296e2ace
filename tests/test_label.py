"""Labellers: real PySCF and EMT numbers; failures recorded; nothing labelled twice."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from jobflow import run_locally

from alflow.frames import Frame
from alflow.label.emt import EMTSettings
from alflow.label.generic import ASECalculatorSettings
from alflow.label.jobs import LabelMaker, implausible, label_all, label_with_retries
from alflow.label.pyscf import PySCFCalculator, PySCFSettings, SCFNotConverged
from alflow.label.runner import run_isolated
from alflow.query import dataset
from alflow.store import embedded_store
from faulty import bucket


def test_pyscf_forces_are_the_negative_energy_gradient():
    water = molecule("H2O")
    water.positions[1] += [0.05, 0.0, 0.02]
    water.calc = PySCFCalculator(xc="PBE", basis="sto-3g")
    forces = water.get_forces()
    h = 1e-3
    numeric = []
    for sign in (1, -1):
        moved = water.copy()
        moved.positions[1, 0] += sign * h
        moved.calc = PySCFCalculator(xc="PBE", basis="sto-3g")
        numeric.append(moved.get_potential_energy())
    assert forces[1, 0] == pytest.approx(-(numeric[0] - numeric[1]) / (2 * h), abs=2e-3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # no net force on a free molecule


def test_scf_non_convergence_is_retried_then_recorded(tmp_path):
    frame = Frame.from_atoms(molecule("H2O"))
    stubborn = PySCFSettings(
        calculator="pyscf", basis="sto-3g", max_cycle=1, retries=[{"max_cycle": 2}]
    )
    labelled, attempts, reason = label_with_retries(frame, stubborn, tmp_path)
    assert labelled is None and reason.startswith("SCFNotConverged")
    assert len(attempts) == 2
    assert all("SCFNotConverged: PySCF SCF did not converge" in a for a in attempts)
    assert "(max_cycle=2)" in attempts[1]
    # the default escalation (more cycles, damping, level shift) rescues it
    rescued, attempts, _ = label_with_retries(
        frame, PySCFSettings(calculator="pyscf", basis="sto-3g", max_cycle=1), tmp_path
    )
    assert rescued is not None and len(attempts) == 2
    with pytest.raises(SCFNotConverged):
        atoms = molecule("H2O")
        atoms.calc = PySCFCalculator(basis="sto-3g", max_cycle=1)
        atoms.get_potential_energy()


def test_emt_label_carries_stress_and_level_of_theory(tmp_path):
    cell = bulk("Cu", cubic=True)
    cell.rattle(0.05, seed=1)
    labelled, _, _ = label_with_retries(
        Frame.from_atoms(cell), EMTSettings(calculator="emt"), tmp_path
    )
    assert labelled.is_labelled and labelled.stress is not None
    assert labelled.level_of_theory.code == "ase-emt"


def test_implausible_labels():
    assert "non-finite energy" in implausible(np.nan, np.zeros((2, 3)), 10)
    assert "non-finite forces" in implausible(0.0, np.array([[np.inf, 0, 0]]), 10)
    assert "above max_force" in implausible(0.0, np.array([[0, 0, 11.0]]), 10)
    assert implausible(0.0, np.ones((2, 3)), 10) is None


def copper_frames(n):
    frames = []
    for seed in range(n):
        cell = bulk("Cu", cubic=True)
        cell.rattle(0.05, seed=seed)
        frames.append(Frame.from_atoms(cell))
    return frames


def settings(**kwargs):
    return ASECalculatorSettings(calculator="ase", **kwargs)


def test_label_jobs_store_failures_and_never_relabel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = embedded_store(tmp_path)
    frames = copper_frames(12)
    chaos = settings(import_path="faulty.Chaos", timeout_s=5.0, retries=[])
    maker = LabelMaker(settings=chaos)
    run_locally(label_all(frames, maker, "c", 1), store=store, log=False, raise_immediately=True)
    data = dataset(store, "c")
    assert data.count() == 12  # every frame has an entry, good or failed
    buckets = [bucket(f.to_atoms()) for f in frames]
    expected_failed = sum(b < 50 for b in buckets)
    assert 0 < expected_failed < 12
    assert data.count("failed") == expected_failed
    reasons = {e.frame_id: e.reason for e in data.entries("failed")}
    for frame, b in zip(frames, buckets, strict=True):
        if b < 30:
            assert "SCF did not converge (injected" in reasons[frame.frame_id]
        elif b < 40:
            assert reasons[frame.frame_id] == "non-finite forces"
        elif b < 50:
            assert reasons[frame.frame_id].startswith("timeout: no result after 5 s")
    assert all(e.compute is not None and e.compute.stage == "label" for e in data.entries())
    # only failed attempts leave their folder behind
    kept = sorted(p.name for p in tmp_path.glob("label-*"))
    assert len(kept) == expected_failed

    # the same frames again (a resumed campaign): no job runs, nothing is recomputed
    before = [e.labelled_at for e in data.entries()]
    responses = run_locally(
        label_all(frames, maker, "c", 1), store=store, log=False, raise_immediately=True
    )
    [outputs] = [r[1].output for r in responses.values()]
    assert sorted({o.status for o in outputs}) == ["reused"]
    assert [e.labelled_at for e in data.entries()] == before


def test_retry_escalation_rescues_a_label(tmp_path):
    patient = settings(
        import_path="faulty.NeedsPatience",
        kwargs={"max_cycles": 10},
        convergence_kwargs=["max_cycles"],
        retries=[{"kwargs": {"max_cycles": 50}}, {"kwargs": {"max_cycles": 200}}],
    )
    [frame] = copper_frames(1)
    labelled, attempts, _ = label_with_retries(frame, patient, tmp_path)
    assert labelled is not None and labelled.is_labelled
    assert len(attempts) == 3
    assert "not converged in 10 cycles" in attempts[0]
    assert "not converged in 50 cycles" in attempts[1]
    assert attempts[2].startswith("attempt 2 (kwargs={'max_cycles': 200}): ok")


def test_retries_that_change_the_level_of_theory_are_refused():
    with pytest.raises(ValueError, match="changes the level of theory"):
        PySCFSettings(calculator="pyscf", retries=[{"basis": "def2-TZVP"}])
    with pytest.raises(ValueError, match=r"retries\[0\]: max_cycle"):
        PySCFSettings(calculator="pyscf", retries=[{"max_cycle": -3}])
    escalated = PySCFSettings(calculator="pyscf").attempts()
    assert [a.max_cycle for a in escalated] == [100, 300, 300]
    assert escalated[2].newton


def test_a_crashing_labeller_does_not_take_the_job_down(tmp_path):
    [frame] = copper_frames(1)
    # generous timeout: the spawned child imports alflow, slow on a loaded machine
    outcome = run_isolated(frame, settings(import_path="faulty.Segfault"), 300, tmp_path)
    assert outcome.label is None
    assert outcome.reason == "crashed: labeller process ended with signal SIGSEGV"


def test_isolated_label_matches_in_process_label(tmp_path):
    [frame] = copper_frames(1)
    emt = EMTSettings(calculator="emt")
    isolated = run_isolated(frame, emt, 60, tmp_path)
    atoms = frame.to_atoms()
    atoms.calc = EMT()
    assert isolated.label.energy == pytest.approx(atoms.get_potential_energy())
    assert np.allclose(isolated.label.forces, atoms.get_forces())
    assert np.allclose(isolated.label.stress, atoms.get_stress())
