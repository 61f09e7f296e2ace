"""Calibration factors: global and per element (pure functions, synthetic errors)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from ase import Atoms

from alflow.uncertainty.base import UncertaintyCalculator
from alflow.uncertainty.calibrate import (
    atom_factors,
    calibrate,
    fit_element_scales,
    fit_scale,
)
from alflow.uncertainty.frame_error import expected_max_error


def gaussian_errors(sigma: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Norms of 3-vector errors whose per-component std is factor * sigma / sqrt(3)."""
    components = rng.normal(size=(sigma.size, 3)) * (factor * sigma / np.sqrt(3))[:, None]
    return np.linalg.norm(components, axis=1)


def test_fit_scale_recovers_the_true_factor() -> None:
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.05, 0.5, 20000)
    assert fit_scale(sigma, gaussian_errors(sigma, 2.5, rng)) == pytest.approx(2.5, rel=0.02)


def test_energy_factor_is_fitted_beside_the_force_factor() -> None:
    rng = np.random.default_rng(3)
    sigma = [rng.uniform(0.05, 0.5, 10) for _ in range(500)]
    errors = [gaussian_errors(s, 2.0, rng) for s in sigma]
    energy_sigma = rng.uniform(0.001, 0.01, 500)  # eV/atom
    energy_errors = np.abs(rng.normal(size=500) * 4.0 * energy_sigma)
    calibration = calibrate(sigma, errors, None, energy_sigma, energy_errors)
    assert calibration.scale == pytest.approx(2.0, rel=0.05)
    assert calibration.energy_scale == pytest.approx(4.0, rel=0.1)
    # no energy spreads (a single model, or energies not given): the factor stays 1
    assert calibrate(sigma, errors, None, np.zeros(500), energy_errors).energy_scale == 1.0
    assert calibrate(sigma, errors).energy_scale == 1.0


def test_element_factors_recover_each_element() -> None:
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.05, 0.5, 20000)
    symbols = np.where(np.arange(sigma.size) % 2 == 0, "H", "O")
    errors = np.where(
        symbols == "H", gaussian_errors(sigma, 3.0, rng), gaussian_errors(sigma, 1.0, rng)
    )
    scales = fit_element_scales(sigma, errors, symbols, fit_scale(sigma, errors))
    assert scales["H"] == pytest.approx(3.0, rel=0.03)
    assert scales["O"] == pytest.approx(1.0, rel=0.03)


def test_few_atoms_stay_near_the_global_factor() -> None:
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.05, 0.5, 1002)
    symbols = np.array(["H"] * 1000 + ["O"] * 2)
    errors = gaussian_errors(sigma, 2.0, rng)
    errors[-2:] = 10 * sigma[-2:]  # two wild oxygen errors: not enough to trust
    scale = fit_scale(sigma, errors)
    scales = fit_element_scales(sigma, errors, symbols, scale)
    own = fit_scale(sigma[-2:], errors[-2:])  # 10, from two atoms alone
    assert abs(scales["O"] - scale) < 0.3 * abs(own - scale)


def test_single_element_factor_is_the_global_one() -> None:
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.05, 0.5, 50)
    errors = gaussian_errors(sigma, 1.7, rng)
    scale = fit_scale(sigma, errors)
    assert fit_element_scales(sigma, errors, ["Cu"] * 50, scale) == {"Cu": pytest.approx(scale)}


def test_per_element_calibration_matches_each_elements_errors() -> None:
    rng = np.random.default_rng(4)
    frames = [rng.uniform(0.05, 0.5, 9) for _ in range(400)]
    symbols = [["H"] * 6 + ["C"] * 3 for _ in frames]
    errors = [
        np.concatenate([gaussian_errors(s[:6], 4.0, rng), gaussian_errors(s[6:], 1.0, rng)])
        for s in frames
    ]
    plain = calibrate(frames, errors)
    per_element = calibrate(frames, errors, symbols)
    assert plain.element_scales == {} and per_element.scale == pytest.approx(plain.scale)
    assert per_element.element_scales["H"] > 3 * per_element.element_scales["C"]
    # root mean calibrated variance over RMSE, on carbon atoms only: one global
    # factor overstates carbon's uncertainty about threefold, per element it fits
    sigma, error, elements = map(np.concatenate, (frames, errors, symbols))
    carbon = elements == "C"

    def carbon_ratio(calibration) -> float:
        factors = atom_factors(elements, calibration.scale, calibration.element_scales)
        variance = np.mean((factors * sigma)[carbon] ** 2)
        return float(np.sqrt(variance / np.mean(error[carbon] ** 2)))

    assert carbon_ratio(plain) > 2.5
    assert carbon_ratio(per_element) == pytest.approx(1.0, abs=0.05)


def test_atom_factors_fall_back_to_the_global_factor() -> None:
    factors = atom_factors(["H", "C", "N"], 2.0, {"H": 3.0, "C": 1.0})
    assert factors.tolist() == [3.0, 1.0, 2.0]
    assert atom_factors(["H", "C"], 2.0, None).tolist() == [2.0, 2.0]


class FixedSpread(UncertaintyCalculator):
    """An estimator whose raw per-atom uncertainty is 0.1 eV/Å on every atom."""

    implemented_properties: ClassVar[list[str]] = UncertaintyCalculator.implemented_properties

    def calculate(self, atoms=None, properties=None, system_changes=None) -> None:
        super().calculate(atoms, properties, system_changes or [])
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}
        self._store_uncertainty(0.3, np.full(len(self.atoms), 0.1))


def test_calculators_apply_the_factor_of_each_atoms_element() -> None:
    calc = FixedSpread(scale=2.0, element_scales={"H": 5.0, "O": 1.0})
    assert calc.calibrated
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    calc.calculate(water, ["force_deviation"])
    assert calc.results["forces_std"] == pytest.approx([0.1, 0.5, 0.5])
    assert calc.results["max_force_std"] == pytest.approx(0.5)
    # the frame uncertainty is the expected largest error of the three atoms
    assert calc.results["force_deviation"] == pytest.approx(
        expected_max_error(np.array([0.1, 0.5, 0.5]))
    )
    assert calc.results["force_deviation"] > 0.5
    assert calc.results["raw_force_deviation"] == pytest.approx(0.1)
    # the energy spread of 0.3 eV over 3 atoms, uncalibrated then calibrated
    assert calc.results["energy_deviation"] == pytest.approx(0.1)
    calc = FixedSpread(energy_scale=2.0)
    assert calc.calibrated
    calc.calculate(water, ["energy_deviation"])
    assert calc.results["energy_deviation"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="H must be positive"):
        FixedSpread(element_scales={"H": 0.0})
    with pytest.raises(ValueError, match="energy_scale must be positive"):
        FixedSpread(energy_scale=-1.0)
    assert not FixedSpread().calibrated
