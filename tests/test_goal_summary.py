"""benchmarks/goal_summary.py: which replays meet goal 1, read from the results JSONs.

The summary only reads tables that data_efficiency.py wrote, so it is checked on
hand-made results files.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
# a plain import, not importorskip: a broken benchmark module must fail these tests
goal_summary = importlib.import_module("goal_summary")
data_efficiency = importlib.import_module("data_efficiency")


LABELS = (10, 20, 30, 40)
RANDOM = [0.4, 0.2, 0.1, 0.05]  # random's error per step: the target is 0.05


def curve(errors: list[float]) -> list[dict]:
    """One seed's curve as data_efficiency records it (force RMSE in eV/Å)."""
    return [
        {
            "labels": n,
            "kwh": 0.01 * n,
            "tests": {"test": {"force_rmse": e, "energy_rmse_per_atom": e / 10}},
        }
        for n, e in zip(LABELS, errors, strict=True)
    ]


def results(errors: dict[str, list[list[float]]], meta: dict | None = None) -> dict:
    """A results JSON from per-seed errors; its table computed as data_efficiency does."""
    runs = {strategy: [curve(e) for e in seeds] for strategy, seeds in errors.items()}
    curves = data_efficiency.mean_curves(runs, ["test"])
    return {
        "dataset": "si",
        "runs": runs,
        "table": data_efficiency.summary_table(curves, ["test"]),
        "meta": {"scorer": "mace", "min_steps": 300, "seeds": 3, **(meta or {})},
    }


def same_in_every_seed(**errors: list[float]) -> dict[str, list[list[float]]]:
    return {"random": [RANDOM] * 3, **{k.replace("_", "-"): [e] * 3 for k, e in errors.items()}}


@pytest.mark.parametrize(
    ("ratios", "met"),
    [
        ({"alflow": 0.42, "dpgen": 0.55, "soap-fps": 0.46}, True),
        ({"alflow": 0.45, "dpgen": 0.44}, False),  # another tool needs fewer
        ({"alflow": 0.5001, "dpgen": None}, False),  # on the line is not under it
        ({"alflow": 0.40, "dpgen": 0.6, "soap-fps": None}, True),  # not reaching: above
        ({"alflow": 0.40, "soap-fps": 0.6}, None),  # dpgen not run: no verdict
        ({"alflow": 0.60, "soap-fps": 0.7}, False),  # ... unless it fails anyway
        ({"alflow": None, "dpgen": 0.9}, False),
        ({"alflow-gap": 0.3, "soap-fps": 0.8}, None),  # alflow not run: no verdict
        # alflow's own variants and the oracle are not competitors
        (
            {"alflow": 0.45, "dpgen": 0.5, "soap-fps": 0.5, "alflow-shallow": 0.39, "oracle": 0.3},
            True,
        ),
    ],
)
def test_goal_met_counts_only_the_other_tools(ratios, met):
    assert goal_summary.goal_met(ratios) is met


def test_rows_carry_the_table_and_the_verdict():
    # alflow reaches 0.05 at 20 labels (0.5x: on the line), then is best at 0.02
    fast = [0.4, 0.05, 0.03, 0.02]
    others = {"dpgen": [0.4, 0.1, 0.05, 0.04], "soap_fps": [0.4, 0.2, 0.1, 0.05]}
    (row,) = goal_summary.rows_of(results(same_in_every_seed(alflow=fast, **others)), "x.json")
    assert row["ratios"]["alflow"] == pytest.approx(0.5)
    assert row["target_force_rmse_mev"] == pytest.approx(50)
    assert (row["budget"], row["seeds"], row["goal_met"]) == (40, 3, True)
    assert row["scorer"] == "MACE, 300 steps"
    # identical seeds: every resample is the table itself
    assert row["intervals"]["alflow"] == pytest.approx([0.5, 0.5])
    assert row["goal_met_share"] == 1.0
    assert row["missing_tools"] == []


def test_a_curve_that_comes_back_above_randoms_error_is_not_credited_with_the_dip():
    # alflow dips below random's 0.05 at 20 labels, is above it again at 30
    dipping = [0.4, 0.04, 0.06, 0.045]
    others = {"dpgen": [0.4, 0.1, 0.07, 0.06], "soap_fps": [0.4, 0.2, 0.1, 0.06]}
    data = results(same_in_every_seed(alflow=dipping, **others))
    (row,) = goal_summary.rows_of(data, "x.json")
    assert row["ratios"]["alflow"] < 0.5
    assert row["goal_met"] is True
    # for good only from between 30 and 40 labels
    assert 0.75 < row["ratios_staying_below"]["alflow"] < 1.0
    assert row["goal_met_staying_below"] is False
    assert row["goal_met_staying_below_share"] == 0.0
    assert row["ratios_staying_below"]["random"] == 1.0
    note = goal_summary.markdown([row]).splitlines()[-1]
    assert note.startswith("Curves that reach random's error and come back above it: x.json")
    assert "alflow (0.4" in note


def test_a_row_missing_another_tool_gets_no_verdict_when_alflow_beats_the_rest():
    errors = same_in_every_seed(alflow=[0.4, 0.04, 0.03, 0.02], soap_fps=[0.4, 0.1, 0.04, 0.03])
    (row,) = goal_summary.rows_of(results(errors), "x.json")
    assert (row["goal_met"], row["missing_tools"], row["goal_met_share"]) == (None, ["dpgen"], 1.0)
    assert "| no verdict: dpgen not run (100 %) |" in goal_summary.markdown([row])


def test_resampling_the_seeds_shows_a_ratio_that_one_seed_makes():
    # alflow is far ahead in seed 0 only; random's error is the same in every seed
    errors = {
        "random": [RANDOM] * 3,
        "alflow": [[0.4, 0.03, 0.02, 0.01], [0.4, 0.2, 0.1, 0.05], [0.4, 0.2, 0.1, 0.05]],
        "dpgen": [[0.4, 0.15, 0.07, 0.04]] * 3,
    }
    (row,) = goal_summary.rows_of(results(errors), "x.json")
    low, high = row["intervals"]["alflow"]
    assert low < row["ratios"]["alflow"] < high
    assert high == pytest.approx(1.0)  # resamples without seed 0: random's own curve
    assert 0 < row["goal_met_share"] < 1
    assert row["intervals"]["dpgen"] == pytest.approx([row["ratios"]["dpgen"]] * 2)


def test_scorer_names_the_gap_settings():
    old = {"scorer": "gap"}  # written before meta.gap_config: the old defaults
    today = {"scorer": "gap", "gap_config": data_efficiency.gap_config({})}
    rich = {"scorer": "gap", "gap": {"soap_l_max": 6, "soap_n_sparse": 1000}}
    assert goal_summary.scorer_label(old) == "GAP, old σ 0.005/0.1"
    assert goal_summary.scorer_label(today) == "GAP (default)"
    assert "SOAP l6 n6 4.5 Å, 1000 sparse" in goal_summary.scorer_label(rich)


def test_collect_reads_every_results_file_but_random_alone(tmp_path):
    (tmp_path / "deeper").mkdir()
    (tmp_path / "alone").mkdir()
    slow = [0.4, 0.3, 0.2, 0.1]  # never reaches random's 0.05
    files = {
        "data_efficiency_si.json": results({"random": [RANDOM] * 3}),
        # no random sampling to compare with (data_efficiency writes no table then)
        "alone/data_efficiency_si.json": {
            "dataset": "si",
            "runs": {"alflow": [curve(RANDOM)]},
            "table": {},
            "meta": {"scorer": "mace", "seeds": 1},
        },
        "deeper/data_efficiency_si_gap.json": results(
            same_in_every_seed(alflow=slow), {"scorer": "gap"}
        ),
        "data_efficiency_acac.json": results(
            same_in_every_seed(
                alflow=[0.4, 0.04, 0.03, 0.02],
                soap_fps=[0.4, 0.1, 0.04, 0.03],
                dpgen=[0.4, 0.1, 0.04, 0.03],
            )
        ),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    rows = goal_summary.collect(tmp_path)
    # MACE before GAP; the files with random alone or without random give no row
    assert [r["source"] for r in rows] == [
        "data_efficiency_acac.json",
        "deeper/data_efficiency_si_gap.json",
    ]
    table = goal_summary.markdown(rows)
    # 0.4 -> 0.04 crosses 0.05 at 10 + 10 log(8)/log(10) labels
    alflow = goal_summary.fmt((10 + 10 * np.log(8) / np.log(10)) / 40)
    assert f"| {alflow} ({alflow}-{alflow}) | – | " in table
    assert "| met (100 %) | met (100 %) |" in table
    assert "| n.r. (n.r.-n.r.) | – | – | – | not met (0 %) | not met (0 %) |" in table
    assert table.endswith("both measures agree.")


def test_ratios_next_to_the_goal_keep_a_third_decimal():
    assert goal_summary.fmt(0.5001) == "0.500"
    assert goal_summary.fmt(0.61) == "0.61"
    assert goal_summary.fmt(None) == "n.r."


def test_rows_of_one_test_go_mace_then_gap_old_default_today_other_settings():
    scorers = ["GAP, SOAP l6 n8 5 Å, 1000 sparse", "GAP (default)", "GAP, old σ 0.005/0.1"]
    scorers += ["MACE, 300 steps"]
    rows = [
        {"dataset": "acac", "test": "t", "scorer": s, "budget": 50, "source": s} for s in scorers
    ]
    ordered = [r["scorer"] for r in sorted(rows, key=goal_summary.row_order)]
    assert ordered == scorers[::-1]
