"""benchmarks/goal_summary.py: which replays meet goal 1, read from the results JSONs.

The summary only reads tables that data_efficiency.py wrote, so it is checked on
hand-made results files.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
# a plain import, not importorskip: a broken benchmark module must fail these tests
goal_summary = importlib.import_module("goal_summary")
data_efficiency = importlib.import_module("data_efficiency")


def results(ratios: dict[str, float | None], meta: dict | None = None) -> dict:
    strategies = {s: {"ratio_to_random": r} for s, r in {"random": 1.0, **ratios}.items()}
    return {
        "dataset": "si",
        "runs": {strategy: [] for strategy in strategies},
        "table": {
            "test": {"target_force_rmse": 0.15, "random_labels": 40, "strategies": strategies}
        },
        "meta": {"scorer": "mace", "min_steps": 300, "seeds": 3, **(meta or {})},
    }


@pytest.mark.parametrize(
    ("ratios", "met"),
    [
        ({"alflow": 0.42, "dpgen": 0.55, "soap-fps": 0.46}, True),
        ({"alflow": 0.45, "dpgen": 0.44}, False),  # another tool needs fewer
        ({"alflow": 0.5001, "dpgen": None}, False),  # on the line is not under it
        ({"alflow": 0.40, "soap-fps": None}, True),  # not reaching counts as above
        ({"alflow": None, "dpgen": 0.9}, False),
        ({"alflow-gap": 0.3, "soap-fps": 0.8}, None),  # alflow not run: no verdict
        # alflow's own variants and the oracle are not competitors
        ({"alflow": 0.45, "alflow-shallow": 0.39, "oracle": 0.3}, True),
    ],
)
def test_goal_met_counts_only_the_other_tools(ratios, met):
    assert goal_summary.goal_met(ratios) is met


def test_rows_carry_the_table_and_the_verdict():
    (row,) = goal_summary.rows_of(results({"alflow": 0.42, "dpgen": 0.55}), "x.json")
    assert row["ratios"] == {"random": 1.0, "alflow": 0.42, "dpgen": 0.55}
    assert row["target_force_rmse_mev"] == pytest.approx(150)
    assert (row["budget"], row["seeds"], row["goal_met"]) == (40, 3, True)
    assert row["scorer"] == "MACE, 300 steps"


def test_scorer_names_the_gap_settings():
    old = {"scorer": "gap"}  # written before meta.gap_config: the old defaults
    today = {"scorer": "gap", "gap_config": data_efficiency.gap_config({})}
    rich = {"scorer": "gap", "gap": {"soap_l_max": 6, "soap_n_sparse": 1000}}
    assert goal_summary.scorer_label(old) == "GAP, old σ 0.005/0.1"
    assert goal_summary.scorer_label(today) == "GAP (default)"
    assert "SOAP l6 n6 4.5 Å, 1000 sparse" in goal_summary.scorer_label(rich)


def test_collect_reads_every_results_file_but_random_alone(tmp_path):
    (tmp_path / "deeper").mkdir()
    files = {
        "data_efficiency_si.json": results({}),
        "deeper/data_efficiency_si_gap.json": results({"alflow": 0.7}, {"scorer": "gap"}),
        "data_efficiency_acac.json": results({"alflow": 0.42, "soap-fps": 0.46}),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    rows = goal_summary.collect(tmp_path)
    # MACE before GAP; the random-only file gives no row
    assert [r["source"] for r in rows] == [
        "data_efficiency_acac.json",
        "deeper/data_efficiency_si_gap.json",
    ]
    table = goal_summary.markdown(rows)
    assert "| 0.42 | – | soap-fps 0.46 | – | met |" in table
    assert "| 0.70 | – | – | – | not met |" in table


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
