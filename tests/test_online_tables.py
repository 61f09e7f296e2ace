"""The pure parts of benchmarks/online.py: what each loop explores with and what
reaching the target costs (the campaigns themselves are the benchmark)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

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
