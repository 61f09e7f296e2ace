"""Real reference codes: CP2K (Debian), tblite xTB, any ASE calculator, and
atomate2's CP2K and VASP static makers (VASP mocked with real reference outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import read

from alflow.frames import Frame
from alflow.label.atomate2 import Cp2kStaticSettings, VaspStaticSettings
from alflow.label.cp2k import CP2KSettings
from alflow.label.generic import ASECalculatorSettings
from alflow.label.jobs import label_with_retries
from alflow.label.xtb import XTBSettings

VASP_DATA = Path(__file__).parent / "data" / "vasp"


def water_in_box() -> Frame:
    atoms = molecule("H2O")
    atoms.set_cell([6.0, 6.2, 6.4])
    atoms.center()
    atoms.pbc = True
    atoms.rattle(0.03, seed=2)
    return Frame.from_atoms(atoms)


@pytest.mark.cp2k
def test_cp2k_silicon_single_point_is_a_converged_gradient(cp2k, tmp_path):
    """Si2 with k-points and smearing; the force is checked against finite differences."""
    cell = bulk("Si", "diamond", a=5.43)
    cell.rattle(0.05, seed=1)
    settings = CP2KSettings(
        calculator="cp2k", cutoff_ry=300, kpoints=(2, 2, 2), smearing_K=1000, threads=2
    )
    labelled, attempts, reason = label_with_retries(Frame.from_atoms(cell), settings, tmp_path)
    assert reason is None, attempts
    forces = np.asarray(labelled.forces)
    assert np.abs(forces.sum(axis=0)).max() < 0.05  # Newton's third law, up to the grid
    assert labelled.stress is not None and len(labelled.stress) == 6
    lot = labelled.level_of_theory
    assert lot.code == "cp2k" and lot.kpoints == [2, 2, 2] and lot.version.startswith("20")
    # the force on atom 0 along x is minus the energy slope (smearing: free energy)
    h = 0.01
    energies = []
    for sign in (1, -1):
        moved = cell.copy()
        moved.positions[0, 0] += sign * h
        frame, _, _ = label_with_retries(Frame.from_atoms(moved), settings, tmp_path)
        energies.append(frame.energy)
    assert forces[0, 0] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=0.05)


@pytest.mark.cp2k
def test_cp2k_unconverged_scf_is_refused_not_returned(cp2k, tmp_path):
    """CP2K carries on after a failed SCF; the labeller must not."""
    cell = bulk("Si", "diamond", a=5.43, cubic=True)
    cell.rattle(0.05, seed=1)
    settings = CP2KSettings(calculator="cp2k", cutoff_ry=200, max_scf=3, retries=[])
    labelled, _, reason = label_with_retries(Frame.from_atoms(cell), settings, tmp_path)
    assert labelled is None
    assert reason.startswith("SCFNotConverged: CP2K SCF did not converge in 3 steps")
    kept = list(tmp_path.glob("label-*-attempt0/cp2k.out"))
    assert kept and "SCF run NOT converged" in kept[0].read_text()


@pytest.mark.cp2k
def test_atomate2_cp2k_static_agrees_with_direct_cp2k(cp2k, tmp_path):
    """Same physics two ways: checks atomate2 unit conversion and site order."""
    frame = water_in_box()
    direct, _, reason = label_with_retries(
        frame, CP2KSettings(calculator="cp2k", cutoff_ry=300, uks=True, threads=2), tmp_path
    )
    assert reason is None
    via_atomate2, attempts, reason = label_with_retries(
        frame,
        Cp2kStaticSettings(
            calculator="atomate2-cp2k",
            cutoff_ry=300,
            input_updates={"smearing": False, "rotation": False, "eps_default": 1e-10},
        ),
        tmp_path,
    )
    assert reason is None, attempts
    assert via_atomate2.energy == pytest.approx(direct.energy, abs=0.05)
    # forces of a few eV/Å; the two input sets differ only in grid details
    assert np.abs(np.subtract(via_atomate2.forces, direct.forces)).max() < 0.3
    assert np.abs(np.subtract(via_atomate2.stress, direct.stress)).max() < 5e-4
    assert via_atomate2.level_of_theory.code == "cp2k (atomate2)"


def test_atomate2_vasp_static_with_mocked_vasp(tmp_path, monkeypatch):
    """atomate2's own VASP mock copies real VASP outputs in place of a run (VASP cannot
    run here); the labeller must turn the task document into ASE-convention labels."""
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    reference = read(VASP_DATA / "Si_static" / "outputs" / "vasprun.xml")
    mock = monkeypatch_vasp(monkeypatch, VASP_DATA)
    next(mock)({"static": "Si_static"}, {"static": {"check_inputs": []}})
    settings = VaspStaticSettings(calculator="atomate2-vasp", incar={"ENCUT": 680})
    labelled, attempts, reason = label_with_retries(Frame.from_atoms(reference), settings, tmp_path)
    assert reason is None, attempts
    assert labelled.energy == pytest.approx(-10.8503711, abs=1e-6)  # vasprun final energy
    assert np.allclose(labelled.forces, 0.0)
    # VASP reports -0.0742 kbar on the diagonal (pressure convention); ASE's stress is
    # the negative, in eV/Å^3
    assert labelled.stress[:3] == pytest.approx([0.0742449 * 0.1 / 160.21766] * 3, rel=1e-4)
    assert labelled.level_of_theory.basis == "ENCUT 680"
    # a convergence tag does not change the level of theory; a physics tag does
    nelm = VaspStaticSettings(calculator="atomate2-vasp", incar={"ENCUT": 680, "NELM": 300})
    encut = VaspStaticSettings(calculator="atomate2-vasp", incar={"ENCUT": 520})
    assert nelm.level_of_theory().settings_hash == settings.level_of_theory().settings_hash
    assert encut.level_of_theory().settings_hash != settings.level_of_theory().settings_hash


@pytest.mark.parametrize("method", ["GFN2-xTB", "GFN1-xTB"])
def test_xtb_labels_molecules_and_forces_are_gradients(method, tmp_path):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    settings = XTBSettings(calculator="xtb", method=method)
    labelled, _, reason = label_with_retries(Frame.from_atoms(atoms), settings, tmp_path)
    assert reason is None
    h = 1e-3
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[2, 1] += sign * h
        energies.append(label_with_retries(Frame.from_atoms(moved), settings, tmp_path)[0].energy)
    assert labelled.forces[2][1] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-3)
    assert labelled.level_of_theory.method == method


def test_any_ase_calculator_by_import_path(tmp_path):
    settings = ASECalculatorSettings(
        calculator="ase",
        import_path="ase.calculators.lj.LennardJones",
        kwargs={"sigma": 2.3, "epsilon": 0.4, "rc": 6.0},
        method="LJ",
    )
    cell = bulk("Ar", "fcc", a=5.3)
    labelled, _, reason = label_with_retries(Frame.from_atoms(cell * (2, 2, 2)), settings, tmp_path)
    assert reason is None and labelled.stress is not None
    other = settings.model_copy(update={"kwargs": {"sigma": 2.4, "epsilon": 0.4, "rc": 6.0}})
    assert other.level_of_theory().settings_hash != settings.level_of_theory().settings_hash
    with pytest.raises(ValueError, match="has no 'Nope'"):
        ASECalculatorSettings(calculator="ase", import_path="ase.calculators.lj.Nope")
