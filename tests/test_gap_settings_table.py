"""The seed means of benchmarks/gap_settings.py, which its README table quotes.

The fits themselves are the benchmark, not a test; here the roll-up is checked on
hand-made fits.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
# a plain import, not importorskip: a broken benchmark module must fail this test
gap_settings = importlib.import_module("gap_settings")


def fit(setting: str, seed: int, labels: int, force: float, wall: float) -> dict:
    return {
        "dataset": "si",
        "labels": labels,
        "seed": seed,
        "setting": setting,
        "fit_wall_s": wall,
        "fit_kwh": wall / 1000,
        "fit_peak_gib": 0.1 * labels,
        "eval_ms_per_frame": 50.0,
        "tests": {"test": {"force_rmse": force, "energy_rmse_per_atom": force / 10}},
    }


def test_summary_averages_seeds_per_setting_and_frame_count() -> None:
    fits = [
        fit("default", 0, 25, 0.20, 4.0),
        fit("all", 0, 25, 0.10, 10.0),
        fit("default", 1, 25, 0.30, 6.0),
        fit("all", 1, 25, 0.14, 14.0),
        fit("default", 0, 100, 0.16, 20.0),
    ]
    rows = gap_settings.summarise(fits)
    assert [(r["setting"], r["labels"], r["seeds"]) for r in rows] == [
        ("default", 25, 2),
        ("all", 25, 2),
        ("default", 100, 1),
    ]
    assert rows[0]["tests"]["test"]["force_rmse"] == pytest.approx(0.25)
    assert rows[1]["tests"]["test"]["energy_rmse_per_atom"] == pytest.approx(0.012)
    assert rows[1]["fit_wall_s"] == pytest.approx(12.0)
    assert rows[2]["fit_peak_gib"] == pytest.approx(10.0)


def test_every_setting_is_a_valid_gap_config() -> None:
    for name, changes in gap_settings.SETTINGS.items():
        settings = gap_settings.GAPConfig(model="gap", **changes)
        assert settings.model_dump(include=set(changes)) == changes, name


def test_the_same_frames_for_every_setting_and_new_ones_per_seed() -> None:
    pool = list(range(50))
    first = gap_settings.random_frames(pool, 10, seed=0)
    assert first == gap_settings.random_frames(pool, 10, seed=0)
    assert first != gap_settings.random_frames(pool, 10, seed=1)
    assert len(set(first)) == 10
