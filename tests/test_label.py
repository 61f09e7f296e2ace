"""Labellers: real PySCF and EMT numbers; failures recorded; nothing labelled twice."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from jobflow import run_locally

from alflow.frames import Frame
from alflow.label.calculators import EMTSettings, PySCFSettings
from alflow.label.jobs import LabelMaker, compute_label, implausible, label_all
from alflow.label.pyscf import PySCFCalculator, SCFNotConverged
from alflow.query import dataset
from alflow.store import embedded_store


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


def test_scf_non_convergence_is_a_recorded_failure():
    frame = Frame.from_atoms(molecule("H2O"))
    labelled, reason = compute_label(
        frame, PySCFSettings(calculator="pyscf", basis="sto-3g", max_cycle=1)
    )
    assert labelled is None
    assert reason.startswith("SCFNotConverged")
    with pytest.raises(SCFNotConverged):
        atoms = molecule("H2O")
        atoms.calc = PySCFCalculator(basis="sto-3g", max_cycle=1)
        atoms.get_potential_energy()


def test_emt_label_carries_stress_and_level_of_theory():
    cell = bulk("Cu", cubic=True)
    cell.rattle(0.05, seed=1)
    labelled, reason = compute_label(Frame.from_atoms(cell), EMTSettings(calculator="emt"))
    assert reason is None
    assert labelled.is_labelled and labelled.stress is not None
    assert labelled.level_of_theory.code == "ase-emt"


def test_implausible_labels():
    assert "non-finite energy" in implausible(np.nan, np.zeros((2, 3)), 10)
    assert "non-finite forces" in implausible(0.0, np.array([[np.inf, 0, 0]]), 10)
    assert "above max_force" in implausible(0.0, np.array([[0, 0, 11.0]]), 10)
    assert implausible(0.0, np.ones((2, 3)), 10) is None


class Exploding(Calculator):
    """A labeller that crashes, standing in for a DFT code that dies."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        raise RuntimeError("segmentation fault in the DFT code")


def test_label_jobs_store_failures_and_never_relabel(tmp_path, monkeypatch):
    store = embedded_store(tmp_path)
    frames = []
    for seed in range(3):
        cell = bulk("Cu", cubic=True)
        cell.rattle(0.05, seed=seed)
        frames.append(Frame.from_atoms(cell))
    calls = {"n": 0}
    real_make = EMTSettings.make

    def counting_make(self):
        calls["n"] += 1
        return Exploding() if calls["n"] == 2 else real_make(self)

    monkeypatch.setattr(EMTSettings, "make", counting_make)
    maker = LabelMaker(settings=EMTSettings(calculator="emt"))
    run_locally(label_all(frames, maker, "c", 1), store=store, log=False, raise_immediately=True)
    data = dataset(store, "c")
    assert calls["n"] == 3
    assert data.count("ok") == 2 and data.count("failed") == 1
    [failed] = data.entries("failed")
    assert "segmentation fault" in failed.reason
    assert failed.compute is not None and failed.compute.stage == "label"

    # the same frames again (a resumed campaign): the labeller is not called
    responses = run_locally(
        label_all(frames, maker, "c", 1), store=store, log=False, raise_immediately=True
    )
    assert calls["n"] == 3
    statuses = [r[1].output.status for r in responses.values() if hasattr(r[1].output, "status")]
    assert sorted(statuses) == ["reused"] * 3
    assert data.count() == 3
