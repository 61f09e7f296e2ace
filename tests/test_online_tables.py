"""The pure parts of benchmarks/online.py: what each loop explores with and what
reaching the target costs (the campaigns themselves are the benchmark)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
# a plain import, not importorskip: a broken benchmark module must fail these tests
online = importlib.import_module("online")


def test_the_dpgen_style_loop_drives_md_with_one_member_as_dpgen_does(tmp_path):
    args = argparse.Namespace(
        seeds=1, iterations=2, extra_iterations=1, per_iteration=6, epochs=5, min_steps=10,
        warm_epochs=2, steps=20, bias_depth=0.005, bias_width=0.005, threads=1,
    )  # fmt: skip
    from ase.build import bulk
    from ase.io import write

    write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    (tmp_path / "held_out.xyz").write_text("")  # only named by the campaign
    dpgen = online.campaign(tmp_path, "dpgen", 0, args)
    assert dpgen.explore.committee_forces == "first"
    assert dpgen.explore.bias_depth == 0
    committee = online.campaign(tmp_path, "alflow", 0, args, target=0.05)
    assert committee.explore.committee_forces == "mean"
    assert committee.explore.bias_depth == pytest.approx(0.005)
    assert online.campaign(tmp_path, "alflow-shallow", 0, args, 0.05).explore.bias_depth == 0


def test_reaching_the_target_prices_every_frame_sent_to_the_labeller():
    points = [
        {"labels": 8, "labels_sent": 8, "force_rmse": 0.09, "kwh": 0.001},
        {"labels": 12, "labels_sent": 14, "force_rmse": 0.04, "kwh": 0.002},
    ]
    assert online.kwh_to_reach(points, 0.05, 0.0) == pytest.approx(0.002)
    # two labels failed: their DFT was paid for all the same
    assert online.kwh_to_reach(points, 0.05, 0.01) == pytest.approx(0.002 + 14 * 0.01)
    assert online.kwh_to_reach(points, 0.01, 0.01) is None
    # results written before failed labels were counted price the good ones
    (old,) = [{k: v for k, v in points[1].items() if k != "labels_sent"}]
    assert online.kwh_to_reach([old], 0.05, 0.01) == pytest.approx(0.002 + 12 * 0.01)


def test_the_verdict_set_is_an_independent_trajectory_and_the_held_out_set_is_unchanged(tmp_path):
    online.held_out_frames(tmp_path / "a.xyz", 1200.0, n=3)
    online.held_out_frames(tmp_path / "b.xyz", 1200.0, n=3)
    online.held_out_frames(tmp_path / "verdict.xyz", 1200.0, n=3, trajectory=1)
    from ase.io import read

    held_out, verdict = (read(tmp_path / name, ":") for name in ("a.xyz", "verdict.xyz"))
    # campaign caches are keyed on the held-out file's content: it must not drift
    assert online.file_hash(tmp_path / "a.xyz") == online.file_hash(tmp_path / "b.xyz")
    assert len(verdict) == 3
    for h, v in zip(held_out, verdict, strict=True):
        assert not np.allclose(h.positions, v.positions, atol=1e-3)
        assert v.get_forces().shape == (32, 3)


def test_the_verdict_compares_on_the_verdict_errors_and_over_the_whole_runs():
    dpgen = [
        {"labels": 8, "force_rmse": 0.09, "verdict_force_rmse": 0.10, "kwh": 0.010},
        {"labels": 14, "force_rmse": 0.05, "verdict_force_rmse": 0.06, "kwh": 0.040},
    ]
    # stops on its held-out set (0.05) before its verdict error reaches dpgen's 0.06
    alflow = [
        {"labels": 8, "force_rmse": 0.08, "verdict_force_rmse": 0.09, "kwh": 0.005},
        {"labels": 12, "force_rmse": 0.05, "verdict_force_rmse": 0.066, "kwh": 0.010},
    ]
    runs = {"dpgen": [dpgen], "alflow-shallow": [alflow]}
    (held_out,) = online.compare(runs, 0.0)
    assert held_out["ratio"] == pytest.approx(0.25)
    (verdict,) = online.compare(runs, 0.0, "verdict_force_rmse")
    assert verdict["target_force_rmse"] == pytest.approx(0.06)
    assert verdict["ratio"] is None
    (end,) = online.at_the_end(runs, 0.001)
    assert end["error_ratio"] == pytest.approx(1.1)
    assert end["kwh_ratio"] == pytest.approx((0.010 + 0.012) / (0.040 + 0.014))
