"""Uncertainty-biased MD on a real committee of analytic potentials.

The committee is three Morse potentials for copper of different stiffness (ASE's
MorsePotential) that agree on the perfect lattice: real energies and forces whose
members disagree more the further the atoms move from the geometry they were
"fitted" to, which is what the bias should pull the dynamics towards. MACE members
are tested in test_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.morse import MorsePotential

from alflow.config import ExploreConfig
from alflow.explore.bias import BiasedCalculator, uncertainty_bias
from alflow.explore.md import run_md
from alflow.frames import Frame
from alflow.uncertainty.base import UncertaintyCalculator
from alflow.uncertainty.committee import per_atom_force_deviation


class MorseCommittee(UncertaintyCalculator):
    """Morse potentials of different stiffness, as a committee fitted at the lattice.

    Each member's energy is shifted to agree with the others on the perfect fcc
    lattice, so the members agree there and disagree more the further the atoms move
    from it, as models trained on near-equilibrium frames do.
    """

    def __init__(self, stiffness=(3.8, 4.0, 4.2), **kwargs) -> None:
        super().__init__(**kwargs)
        self.members = [MorsePotential(epsilon=0.35, r0=2.55, rho0=rho) for rho in stiffness]
        self.offsets = -self._predict(bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))[0]

    def _predict(self, atoms):
        energies, forces = [], []
        for member in self.members:
            work = atoms.copy()
            work.calc = member
            energies.append(work.get_potential_energy())
            forces.append(work.get_forces())
        return np.asarray(energies), np.asarray(forces)

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        energies, forces = self._predict(self.atoms)
        energies = energies + self.offsets
        self.results = {
            "energy": float(energies.mean()),
            "free_energy": float(energies.mean()),
            "forces": forces.mean(axis=0),
            "energy_committee": energies,
            "forces_committee": forces,
        }
        self._store_uncertainty(float(energies.std()), per_atom_force_deviation(forces))


@pytest.fixture
def copper():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    return atoms


def test_bias_forces_are_minus_the_gradient_of_the_bias_energy(copper):
    calc = BiasedCalculator(MorseCommittee(energy_scale=2.0), depth=0.02, width=0.005)
    copper.calc = calc
    forces = copper.get_forces()
    step = 1e-5
    for atom, axis in [(0, 0), (5, 1), (17, 2)]:
        energies = []
        for sign in (1, -1):
            moved = copper.copy()
            moved.positions[atom, axis] += sign * step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        numerical = -(energies[0] - energies[1]) / (2 * step)
        assert forces[atom, axis] == pytest.approx(numerical, rel=1e-5, abs=1e-7)
    # and the bias is a real push, not a rounding error on the mean forces
    unbiased = MorseCommittee(energy_scale=2.0)
    unbiased.calculate(copper.copy(), ["forces"])
    assert np.abs(forces - unbiased.results["forces"]).max() > 1e-3


def test_bias_is_bounded_and_vanishes_when_members_agree():
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(1, 4, 3)).repeat(3, axis=0)
    energy, bias_forces = uncertainty_bias(np.full(3, -7.0), forces, depth=0.1, width=0.01)
    assert energy == 0.0 and np.allclose(bias_forces, 0.0)
    # members that disagree wildly: the bias saturates at -N a and stops pushing
    energy, bias_forces = uncertainty_bias(
        np.array([-7.0, 3.0, 13.0]), rng.normal(size=(3, 4, 3)), depth=0.1, width=0.01
    )
    assert energy == pytest.approx(-4 * 0.1) and np.abs(bias_forces).max() < 1e-12
    with pytest.raises(ValueError, match="width"):
        uncertainty_bias(np.zeros(3), np.zeros((3, 4, 3)), depth=0.1, width=0.0)
    with pytest.raises(ValueError, match="expected energies"):
        uncertainty_bias(np.zeros(2), np.zeros((3, 4, 3)), depth=0.1, width=0.01)


def test_biased_md_visits_more_uncertain_frames(copper):
    """Same seed and thermostat: the bias raises the committee's energy uncertainty."""
    settings = dict(steps=200, timestep_fs=2.0, record_every=10, temperature_K=[300])
    plain = ExploreConfig(**settings)
    biased = ExploreConfig(**settings, bias_depth=0.02, bias_width=0.005)
    structure = Frame.from_atoms(copper)
    runs = {
        name: run_md(MorseCommittee(), structure, config, 300.0, hi=50.0, seed=2)
        for name, config in (("plain", plain), ("biased", biased))
    }
    assert runs["plain"].bias_energies == []
    assert len(runs["biased"].bias_energies) == 20
    assert all(-0.02 <= e <= 0.0 for e in runs["biased"].bias_energies)
    # the bias was felt (not saturated, not zero) over the run
    assert -0.018 < np.mean(runs["biased"].bias_energies) < -0.002
    # measured 4.4 against 3.3 meV/atom (seeds 2 and 3 alike)
    second_half = {k: np.mean(r.energy_deviations[10:]) for k, r in runs.items()}
    assert second_half["biased"] > 1.2 * second_half["plain"]
    # selection and early stopping see the unbiased committee: recorded deviations
    # are the committee's own at the recorded frames
    frame = runs["biased"].frames[-1].to_atoms(with_labels=False)
    committee = MorseCommittee()
    committee.calculate(frame, ["force_deviation"])
    assert runs["biased"].deviations[-1] == pytest.approx(committee.results["force_deviation"])


def test_bias_needs_every_member(copper):
    class NoMembers(MorseCommittee):
        def calculate(self, atoms=None, properties=None, system_changes=None):
            super().calculate(atoms, properties, system_changes)
            del self.results["energy_committee"]

    copper.calc = BiasedCalculator(NoMembers(), depth=0.01, width=0.01)
    with pytest.raises(ValueError, match="committee_forces: mean"):
        copper.get_forces()


@pytest.mark.parametrize(
    "settings",
    [{"ensemble": "npt-mtk"}, {"committee_forces": "first"}],
)
def test_bias_config_needs_nvt_and_the_committee_mean(settings):
    with pytest.raises(ValueError, match="bias_depth"):
        ExploreConfig(bias_depth=0.01, **settings)
    ExploreConfig(bias_depth=0.0, **settings)
