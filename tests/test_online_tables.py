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
    # the committee loop without the mean's extra models: alflow's training and selection
    first = online.campaign(tmp_path, "alflow-first", 0, args, target=0.05)
    assert first.explore.committee_forces == "first"
    assert first.explore.bias_depth == 0
    assert first.train.warm_start_epochs == 2
    assert first.select.strategy == "alflow"
    assert first.train.uncertainty == "committee"


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


def the_held_out_recipe_of_the_cached_campaigns(n: int):
    """The held-out set as the cached runs of results/online_dpgen_first made it, written
    out as it stood before 30827c6 moved it into ``md_frames``."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=1200, rng=np.random.default_rng(0))
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=1200, friction=0.02, rng=np.random.default_rng(1)
    )
    positions = []
    for _ in range(n):
        dynamics.run(40)
        positions.append(atoms.get_positions())
    return positions


def test_the_held_out_set_is_unchanged_and_the_verdict_set_is_made_alike_but_apart(tmp_path):
    from ase.io import read

    # campaign caches are keyed on the held-out file's content: it must not drift
    online.held_out_frames(tmp_path / "held_out.xyz", 1200.0)
    held_out = read(tmp_path / "held_out.xyz", ":")
    assert len(held_out) == 20
    for frame, positions in zip(
        held_out[:3], the_held_out_recipe_of_the_cached_campaigns(3), strict=True
    ):
        np.testing.assert_allclose(frame.positions, positions, atol=1e-6)
    online.verdict_frames(tmp_path / "verdict.xyz", 1200.0, trajectories=2)
    verdict = read(tmp_path / "verdict.xyz", ":")
    assert len(verdict) == 40
    for k, frame in enumerate(held_out):
        # the same 20 stages of heating from the lattice, along other trajectories
        for other in (verdict[k], verdict[20 + k]):
            assert not np.allclose(frame.positions, other.positions, atol=1e-3)
            assert other.get_forces().shape == (32, 3)
    assert not np.allclose(verdict[5].positions, verdict[25].positions, atol=1e-3)


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
    # two of alflow's labels failed: paid for all the same
    alflow[-1]["labels_sent"] = 14
    (end,) = online.at_the_end(runs, 0.001)
    assert end["kwh_ratio"] == pytest.approx((0.010 + 0.014) / (0.040 + 0.014))
    # an iteration without models has no verdict error: no ratio, no crash
    alflow[-1]["verdict_force_rmse"] = None
    (end,) = online.at_the_end(runs, 0.001)
    assert end["error_ratio"] is None
    dpgen[-1]["verdict_force_rmse"] = None
    (verdict,) = online.compare(runs, 0.0, "verdict_force_rmse")
    assert verdict["ratio"] is None and verdict["dpgen_kwh"] is None
    online.report({"verdict": [verdict]}, {"whole": [end]})


def test_an_unknown_loop_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    work = tmp_path / "work"
    monkeypatch.setattr(sys, "argv", ["online.py", "--loops", "alflow,alfow", "--work", str(work)])
    with pytest.raises(SystemExit):
        online.arguments()
    assert "--loops: unknown ['alfow']" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["online.py", "--loops", "alflow-first,alflow-shallow"])
    assert online.arguments().loops == "alflow-first,alflow-shallow"
