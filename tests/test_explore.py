"""The MD explorer on real dynamics: EMT copper under NVT and NPT, with an
uncertainty that the test controls (a stand-in for a trained estimator, so that
early stopping can be tested deterministically)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from alflow.config import ExploreConfig
from alflow.explore.md import broken_structure, ramp_temperature, run_md
from alflow.frames import Frame
from alflow.uncertainty.base import UncertaintyCalculator
from alflow.uncertainty.frame_error import expected_max_error


class EMTWithUncertainty(UncertaintyCalculator):
    """EMT energies, forces and stress; a fixed per-atom uncertainty."""

    def __init__(self, uncertainty: float = 0.1, energy_uncertainty: float = 0.0) -> None:
        super().__init__()
        self.uncertainty = uncertainty
        self.energy_uncertainty = energy_uncertainty
        self._emt = EMT()

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        work = self.atoms.copy()
        work.calc = self._emt
        self.results = {
            "energy": work.get_potential_energy(),
            "free_energy": work.get_potential_energy(),
            "forces": work.get_forces(),
            "stress": work.get_stress(),
        }
        self._store_uncertainty(self.energy_uncertainty, np.full(len(work), self.uncertainty))


@pytest.fixture
def copper() -> Frame:
    return Frame.from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))


def explore(copper, uncertainty=0.1, hi=1.0, pressure=0.0, energy_uncertainty=0.0, **settings):
    config = ExploreConfig(
        steps=200, timestep_fs=2.0, record_every=20, **{"temperature_K": 300, **settings}
    )
    return run_md(
        EMTWithUncertainty(uncertainty, energy_uncertainty),
        copper,
        config,
        config.temperature_K[0],
        hi,
        seed=1,
        pressure_GPa=pressure,
    )


def test_ramp_is_linear_and_clamped():
    assert ramp_temperature(300, 900, 0, 100) == 300
    assert ramp_temperature(300, 900, 50, 100) == 600
    assert ramp_temperature(300, 900, 150, 100) == 900
    assert ramp_temperature(300, None, 50, 100) == 300


def test_nvt_keeps_the_cell_and_records_frames(copper):
    result = explore(copper, ramp_to_K=600, energy_uncertainty=0.32)
    assert result.steps_done == 200 and not result.stopped_early
    assert len(result.frames) == 10 and result.pressure_GPa is None
    assert all(np.allclose(f.cell, copper.cell) for f in result.frames)
    # 32 atoms at 0.1 eV/Å each: the frame's expected largest error
    expected = expected_max_error(np.full(32, 0.1))
    assert all(f.provenance.deviation == pytest.approx(expected) for f in result.frames)
    # and the energy uncertainty per atom of every frame: 0.32 eV over 32 atoms
    assert result.energy_deviations == pytest.approx([0.01] * 10)


@pytest.mark.parametrize("ensemble", ["npt-mtk", "npt-berendsen"])
def test_npt_changes_the_cell_with_pressure(copper, ensemble):
    volume0 = abs(np.linalg.det(copper.cell))
    low = explore(copper, ensemble=ensemble, pressure=0.0, barostat_fs=200)
    high = explore(copper, ensemble=ensemble, pressure=30.0, barostat_fs=200)
    assert not low.stopped_early and not high.stopped_early and high.pressure_GPa == 30.0
    v_low = abs(np.linalg.det(low.frames[-1].cell))
    v_high = abs(np.linalg.det(high.frames[-1].cell))
    assert v_high < v_low and v_high < volume0  # 30 GPa compresses copper


def test_exploding_cell_ends_the_run_with_its_reason(copper):
    result = explore(
        copper,
        ensemble="npt-berendsen",
        pressure=-200.0,
        barostat_fs=50,
        compressibility_per_GPa=0.05,
        max_volume_change=0.03,
    )
    assert result.stopped_early and "cell volume changed" in result.stop_reason
    volume0 = abs(np.linalg.det(copper.cell))
    # the broken frame was discarded: every recorded frame is within the limit
    assert all(abs(abs(np.linalg.det(f.cell)) / volume0 - 1) <= 0.03 for f in result.frames)


@pytest.mark.parametrize("patience", [1, 3])
def test_run_stops_when_uncertainty_stays_above_hi(copper, patience):
    result = explore(copper, uncertainty=2.0, hi=1.0, patience=patience)
    assert result.stopped_early and len(result.frames) == patience
    assert f"for {patience} recorded frame(s)" in result.stop_reason


def test_npt_needs_a_periodic_cell():
    from ase.build import molecule

    water = Frame.from_atoms(molecule("H2O", vacuum=5.0))
    with pytest.raises(ValueError, match="periodic cell"):
        explore(water, ensemble="npt-mtk")


def test_broken_structures_are_named():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    assert broken_structure(atoms) is None
    squeezed = atoms.copy()
    squeezed.positions[1] = squeezed.positions[0] + 0.1
    assert "apart" in broken_structure(squeezed)
    assert "volume" in broken_structure(atoms, atoms.get_volume() * 0.5, 0.2)


def test_schedules_and_invalid_combinations():
    config = ExploreConfig(temperature_K=[300, 600], pressure_GPa=[0, 1, 5], ensemble="npt-mtk")
    assert config.at_iteration(1) == (300, 0) and config.at_iteration(3) == (600, 5)
    assert config.at_iteration(9) == (600, 5)
    with pytest.raises(ValueError, match="ramp_to_K"):
        ExploreConfig(ensemble="npt-mtk", ramp_to_K=900)
