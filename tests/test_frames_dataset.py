"""Frames survive conversions; the dataset is append-only and keeps failures apart."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from alflow.dataset import Dataset, DuplicateLabelError, MixedLevelOfTheoryError
from alflow.frames import Frame, LevelOfTheory, Provenance, read_frames, write_extxyz
from alflow.store import FRAMES, embedded_store

LOT = LevelOfTheory(code="ase-emt", method="EMT", settings_hash="abc")


def labelled_copper(shift=0.0):
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.positions[0] += shift
    atoms.calc = EMT()
    atoms.get_potential_energy()
    atoms.get_stress()
    return atoms


def test_frame_round_trip_keeps_labels_and_identity(tmp_path):
    atoms = labelled_copper(0.1)
    frame = Frame.from_atoms(atoms, provenance=Provenance(source="explore", iteration=2, step=30))
    assert frame.is_labelled and frame.stress is not None
    back = frame.to_atoms()
    assert np.allclose(back.get_forces(), atoms.get_forces())
    assert back.get_potential_energy() == pytest.approx(atoms.get_potential_energy())
    path = tmp_path / "f.xyz"
    write_extxyz([frame], path)
    [reread] = read_frames(path)
    assert reread.frame_id == frame.frame_id
    assert np.allclose(reread.forces, frame.forces)
    assert np.allclose(reread.stress, frame.stress)


def test_model_predictions_are_not_taken_as_labels():
    atoms = molecule("H2O")
    atoms.calc = EMT()
    atoms.get_potential_energy()
    assert not Frame.from_atoms(atoms, labels_from_calc=False).is_labelled


def test_structure_hash_distinguishes_structures():
    a = Frame.from_atoms(labelled_copper(0.0))
    b = Frame.from_atoms(labelled_copper(0.01))
    assert a.frame_id != b.frame_id
    assert a.frame_id == Frame.from_atoms(labelled_copper(0.0)).frame_id


def test_dataset_appends_refuses_duplicates_and_separates_failures(tmp_path):
    store = embedded_store(tmp_path).additional_stores[FRAMES]
    dataset = Dataset(store, "camp")
    good = Frame.from_atoms(labelled_copper(0.0)).model_copy(update={"level_of_theory": LOT})
    dataset.add(good, "ok", iteration=1)
    with pytest.raises(DuplicateLabelError):
        dataset.add(good, "ok", iteration=2)
    bad = Frame.from_atoms(labelled_copper(0.2), labels_from_calc=False).model_copy(
        update={"level_of_theory": LOT}
    )
    dataset.add(bad, "failed", iteration=2, reason="SCF did not converge")
    with pytest.raises(ValueError, match="needs energy and forces"):
        dataset.add(bad.model_copy(update={"positions": [[0, 0, 0], [9, 9, 9]] * 4}), "ok", 2)
    assert [f.frame_id for f in dataset.frames()] == [good.frame_id]
    assert dataset.count() == 2 and dataset.count("failed") == 1
    assert dataset.get(bad.frame_id, "abc").reason == "SCF did not converge"
    assert dataset.frames(max_iteration=0) == []
    # another campaign in the same store sees nothing of this one
    assert Dataset(store, "other").count() == 0
    # and a new connection (another process) sees what was written
    reopened = Dataset(embedded_store(tmp_path).additional_stores[FRAMES], "camp")
    assert reopened.count("ok") == 1


def test_dataset_refuses_a_second_level_of_theory_unless_allowed(tmp_path):
    dataset = Dataset(embedded_store(tmp_path).additional_stores[FRAMES], "camp")
    pbe = LOT.model_copy(update={"code": "pyscf", "method": "PBE", "settings_hash": "pbe"})
    b3lyp = LOT.model_copy(update={"code": "pyscf", "method": "B3LYP", "settings_hash": "b3"})
    first = Frame.from_atoms(labelled_copper(0.0)).model_copy(update={"level_of_theory": pbe})
    second = Frame.from_atoms(labelled_copper(0.1)).model_copy(update={"level_of_theory": b3lyp})
    dataset.add(first, "ok", 1)
    with pytest.raises(MixedLevelOfTheoryError, match=r"pyscf PBE .pbe.*pyscf B3LYP .b3."):
        dataset.add(second, "ok", 1)
    assert dataset.other_level("b3").method == "PBE"
    dataset.add(second, "ok", 1, allow_mixed_levels=True)
    assert dataset.count("ok") == 2
