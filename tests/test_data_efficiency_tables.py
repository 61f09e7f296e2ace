"""The tables of benchmarks/data_efficiency.py: labels to reach random's error.

These are the numbers the benchmark README quotes, so their arithmetic is checked on
small hand-made curves (the replay itself is the benchmark, not a test).
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
data_efficiency = importlib.import_module("data_efficiency")


def curve(errors: list[float], labels: tuple[int, ...] = (10, 20, 30)) -> list[dict]:
    return [{"labels": n, "kwh": 0.1 * n, "test": e} for n, e in zip(labels, errors, strict=True)]


CURVES = {
    "random": curve([0.4, 0.2, 0.1]),
    "better": curve([0.4, 0.1, 0.05]),
    "worse": curve([0.4, 0.3, 0.25]),
}


def test_labels_to_reach_interpolates_in_log_error():
    # 0.2 is halfway from 0.4 to 0.1 in log(error): halfway from 10 to 20 labels
    assert data_efficiency.labels_to_reach(CURVES["better"], "test", 0.2) == pytest.approx(15)
    assert data_efficiency.labels_to_reach(CURVES["better"], "test", 0.1) == pytest.approx(20)
    assert data_efficiency.labels_to_reach(CURVES["worse"], "test", 0.2) is None


def test_labels_to_stay_below_skip_a_dip_that_comes_back_up():
    dipping = curve([0.4, 0.08, 0.12, 0.05], labels=(10, 20, 30, 40))
    assert data_efficiency.labels_to_reach(dipping, "test", 0.1) < 20
    # from between 30 and 40 labels for good: 0.12 -> 0.05 crosses 0.1 at log(1.2)/log(2.4)
    staying = 30 + 10 * np.log(1.2) / np.log(2.4)
    assert data_efficiency.labels_to_stay_below(dipping, "test", 0.1) == pytest.approx(staying)
    assert data_efficiency.labels_to_stay_below(CURVES["better"], "test", 0.2) == pytest.approx(15)
    assert data_efficiency.labels_to_stay_below(CURVES["worse"], "test", 0.2) is None
    assert data_efficiency.labels_to_stay_below(CURVES["better"], "test", 0.5) == 10


def test_ratio_by_budget_at_each_of_randoms_budgets():
    table = data_efficiency.ratio_by_budget(CURVES, ["test"])["test"]
    assert table["random_labels"] == [20, 30]
    assert table["target_force_rmse"] == [0.2, 0.1]
    better = table["strategies"]["better"]
    assert better["labels"] == pytest.approx([15, 20])
    assert better["ratio_to_random"] == pytest.approx([15 / 20, 20 / 30])
    assert table["strategies"]["worse"]["ratio_to_random"] == [None, None]
    assert table["strategies"]["random"]["ratio_to_random"] == pytest.approx([1, 1])


def test_ratio_at_the_largest_budget_is_the_summary_table():
    by_budget = data_efficiency.ratio_by_budget(CURVES, ["test"])["test"]["strategies"]
    summary = data_efficiency.summary_table(CURVES, ["test"])["test"]["strategies"]
    for strategy in CURVES:
        assert by_budget[strategy]["ratio_to_random"][-1] == summary[strategy]["ratio_to_random"]


def test_si_hot_split_holds_out_the_3374K_runs_and_names_temperatures():
    # mlearn descriptions as they are written in the dataset (not shipped with the repo)
    hot = {
        "group": "Vacancy",
        "description": "Snapshot 7 of 32 of Vacancy AIMD NVT simulation at 3374 K",
    }
    warm = {
        "group": "AIMD-NVT",
        "description": "Snapshot 20000 of 100000 of AIMD NVT simulation for normal structure"
        " at 2530 K",
    }
    strained = {"group": "Elastic", "description": "Si 2x2x2 cell, mode 0, strain -0.02"}
    assert data_efficiency.is_hot(hot)
    assert not data_efficiency.is_hot(warm)
    assert not data_efficiency.is_hot(strained)
    assert data_efficiency.group_with_temperature(warm) == "AIMD-NVT 2530 K"
    assert data_efficiency.group_with_temperature(hot) == "Vacancy 3374 K"
    assert data_efficiency.group_with_temperature(strained) == "Elastic"


def test_gap_overrides_are_checked_gapconfig_fields():
    overrides = data_efficiency.gap_overrides(
        ["soap_l_max=6", "soap_cutoff=5", "default_sigma=[0.002, 0.04, 0]"]
    )
    # validated by GAPConfig: a YAML list becomes default_sigma's three numbers
    assert overrides == {
        "default_sigma": [0.002, 0.04, 0.0],
        "soap_cutoff": 5.0,
        "soap_l_max": 6,
    }
    assert data_efficiency.gap_overrides([]) == {}


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("soap_l_max", "expected KEY=VALUE"),
        ("soap_lmax=6", "GAPConfig has no such field"),
        ("threads=4", "--threads"),
        ("soap_l_max=40", "soap_l_max"),
        ("default_sigma=[0.1]", "default_sigma"),
        ("default_sigma=[0.002, 0.04", "not YAML"),
    ],
)
def test_gap_overrides_name_what_is_wrong(item, says):
    with pytest.raises(ValueError, match=says):
        data_efficiency.gap_overrides([item])


def test_gap_overrides_refuse_a_field_given_twice():
    with pytest.raises(ValueError, match="soap_l_max: given twice"):
        data_efficiency.gap_overrides(["soap_l_max=6", "soap_l_max=8"])


def replay_args(tmp_path: Path, scorer: str, gap: dict) -> data_efficiency.argparse.Namespace:
    return data_efficiency.argparse.Namespace(
        initial=10,
        batch=10,
        budget=40,
        committee=3,
        epochs=30,
        min_steps=300,
        window_quantile=0.5,
        energy_quantile=0.8,
        test_every=1,
        scorer=scorer,
        gap=gap,
        work=tmp_path,
        conditions={"threads_per_replay": 1, "metering": "CPU-time power model"},
    )


def results_of(args, runs: dict, **meta_changes) -> dict:
    meta = {k: getattr(args, k) for k in (*data_efficiency.CURVE_SETTINGS, "scorer")}
    meta |= {"commit": "abc", **meta_changes}
    return {"dataset": "si", "label_kwh": 0.048, "runs": runs, "meta": meta}


def test_reuse_refuses_curves_of_other_gap_settings(tmp_path):
    args = replay_args(tmp_path, "gap", {"soap_l_max": 6})
    # written before --gap existed: neither gap nor gap_config in its meta, so the
    # GAPConfig defaults of then, whose default_sigma differs from today's too
    old = results_of(args, {"random": [[]]})
    with pytest.raises(SystemExit) as refused:
        data_efficiency.adopt_runs(old, Path("old.json"), args, "si", 0.048)
    assert str(refused.value).endswith(
        "GAP settings (old.json: default_sigma=[0.005, 0.1, 0.0], soap_l_max=4; "
        "now: default_sigma=[0.002, 0.04, 0.0], soap_l_max=6)"
    )
    # written with --gap before gap_config existed: meta.gap over the old defaults
    old_default_sigma = {"soap_l_max": 6, "default_sigma": [0.005, 0.1, 0.0]}
    args_then = replay_args(tmp_path, "gap", old_default_sigma)
    then = results_of(args_then, {"random": [[]]}, gap={"soap_l_max": 6})
    data_efficiency.adopt_runs(then, Path("then.json"), args_then, "si", 0.048)
    same = results_of(args, {"random": [[]]}, gap_config=data_efficiency.gap_config(args.gap))
    data_efficiency.adopt_runs(same, Path("new.json"), args, "si", 0.048)
    assert (tmp_path / "si_gap" / "random_0.json").is_file()


def test_gap_settings_matter_only_to_curves_a_gap_shaped(tmp_path):
    args = replay_args(tmp_path, "mace", {})
    # MACE-scored, no alflow-gap: fitted before default_sigma changed, still the same
    mace_only = results_of(args, {"random": [[]], "dpgen": [[]]})
    data_efficiency.adopt_runs(mace_only, Path("mace.json"), args, "si", 0.048)
    assert (tmp_path / "si" / "dpgen_0.json").is_file()
    with_gap = results_of(args, {"random": [[]], "alflow-gap": [[]]})
    with pytest.raises(SystemExit, match=r"GAP settings \(gap.json: default_sigma="):
        data_efficiency.adopt_runs(with_gap, Path("gap.json"), args, "si", 0.048)


def test_gap_settings_without_a_gap_to_set_are_refused(monkeypatch, capsys):
    argv = ["data_efficiency.py", "--strategies", "random", "dpgen", "--gap", "soap_l_max=6"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        data_efficiency.arguments()
    assert "--gap sets the GAP of --scorer gap or of alflow-gap" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*argv, "--scorer", "gap"])
    assert data_efficiency.arguments().gap == {"soap_l_max": 6}
    # it names the settings of reused alflow-gap curves, so that they can be adopted
    monkeypatch.setattr(sys, "argv", [*argv, "--reuse", "earlier.json"])
    assert data_efficiency.arguments().gap == {"soap_l_max": 6}


def test_the_old_gap_defaults_differ_from_todays_only_in_default_sigma():
    # results written before gap_config are resolved over GAP_CONFIG_BEFORE; another
    # default changing would make them look fitted with settings they never had
    today = data_efficiency.gap_config({})
    assert {**today, "default_sigma": [0.005, 0.1, 0.0]} == data_efficiency.GAP_CONFIG_BEFORE
    assert today["default_sigma"] != [0.005, 0.1, 0.0]


def test_a_finished_curve_is_resumed_only_with_the_same_gap_settings(tmp_path):
    curve = [{"labels": 10, "kwh": 0.1, "tests": {}}]
    richer = data_efficiency.FinishedRuns(
        tmp_path, replay_args(tmp_path, "gap", {"soap_l_max": 6}), 0.048
    )
    richer.put("random", 0, curve, {"commit": "abc", "models": ["abc"]})
    assert richer.get("random", 0, quiet=True) == curve
    default = data_efficiency.FinishedRuns(tmp_path, replay_args(tmp_path, "gap", {}), 0.048)
    assert default.get("random", 0, quiet=True) is None


def test_a_finished_curve_is_resumed_only_under_the_same_conditions(tmp_path):
    # threads change the models and the metering changes the kWh: never mixed
    curve = [{"labels": 10, "kwh": 0.1, "tests": {}}]
    one_thread = replay_args(tmp_path, "gap", {})
    data_efficiency.FinishedRuns(tmp_path, one_thread, 0.048).put(
        "random", 0, curve, {"commit": "abc", "models": ["def"]}
    )
    same = data_efficiency.FinishedRuns(tmp_path, one_thread, 0.048)
    assert same.get("random", 0, quiet=True) == curve
    assert same.provenance("random", 0) == {"commit": "abc", "models": ["def"]}
    two_threads = replay_args(tmp_path, "gap", {})
    two_threads.conditions = {"threads_per_replay": 2, "metering": "RAPL"}
    assert data_efficiency.FinishedRuns(tmp_path, two_threads, 0.048).get("random", 0) is None


def test_reuse_refuses_other_conditions_and_carries_the_curves_provenance(tmp_path, capsys):
    args = replay_args(tmp_path, "gap", {})
    gap_config = data_efficiency.gap_config({})
    other = {"threads_per_replay": 2, "metering": "RAPL"}
    elsewhere = results_of(args, {"random": [[]]}, gap_config=gap_config, conditions=other)
    with pytest.raises(SystemExit, match=r"conditions \(a.json: .*'threads_per_replay': 2"):
        data_efficiency.adopt_runs(elsewhere, Path("a.json"), args, "si", 0.048)
    provenance = {"random": [{"commit": "1234567", "models": ["7654321"]}]}
    same = results_of(
        args,
        {"random": [[{"labels": 10}]], "dpgen": [[{"labels": 10}]]},
        gap_config=gap_config,
        conditions=args.conditions,
        curve_provenance=provenance,
    )
    data_efficiency.adopt_runs(same, Path("b.json"), args, "si", 0.048)
    finished = data_efficiency.FinishedRuns(tmp_path / "si_gap", args, 0.048)
    assert finished.provenance("random", 0) == {
        "commit": "1234567",
        "models": ["7654321"],
        "via": "b.json",
    }
    # a file from before provenance was recorded: said so, not made up
    assert finished.provenance("dpgen", 0)["commit"] == data_efficiency.UNRECORDED
    # one without conditions is taken, with a note that they were not recorded
    older = results_of(args, {"soap-fps": [[]]}, gap_config=gap_config)
    data_efficiency.adopt_runs(older, Path("c.json"), args, "si", 0.048)
    assert "c.json: threads and metering not recorded" in capsys.readouterr().out


def test_a_model_is_keyed_on_its_pool_its_frames_in_order_and_its_settings():
    settings = data_efficiency.MACEConfig(epochs=30, min_steps=300, threads=1)
    key = data_efficiency.model_key("pool-a", [3, 1, 2], settings)
    assert key == data_efficiency.model_key("pool-a", [3, 1, 2], settings)
    # the order sets the validation split and the batches: another model
    assert key != data_efficiency.model_key("pool-a", [1, 2, 3], settings)
    assert key != data_efficiency.model_key("pool-b", [3, 1, 2], settings)
    threads = data_efficiency.MACEConfig(epochs=30, min_steps=300, threads=2)
    assert key != data_efficiency.model_key("pool-a", [3, 1, 2], threads)


def test_the_pool_fingerprint_sees_structures_and_labels():
    from ase.build import bulk

    from alflow.frames import Frame

    atoms = bulk("Cu", cubic=True)
    frames = [Frame.from_atoms(atoms, energy=-1.0, forces=[[0.0] * 3] * len(atoms))]
    relabelled = [Frame.from_atoms(atoms, energy=-1.5, forces=[[0.0] * 3] * len(atoms))]
    atoms.positions[0, 0] += 0.1
    moved = [Frame.from_atoms(atoms, energy=-1.0, forces=[[0.0] * 3] * len(atoms))]
    fingerprint = data_efficiency.pool_fingerprint(frames)
    assert fingerprint == data_efficiency.pool_fingerprint(list(frames))
    assert fingerprint != data_efficiency.pool_fingerprint(relabelled)
    assert fingerprint != data_efficiency.pool_fingerprint(moved)


def test_results_are_written_whole_or_not_at_all(tmp_path):
    common = importlib.import_module("common")
    path = tmp_path / "results.json"
    common.write_json(path, {"curves": [1, 2]})
    with pytest.raises(TypeError):  # not serialisable: fails halfway through the dump
        common.write_json(path, {"curves": [1, 2], "oops": object()})
    assert json.loads(path.read_text()) == {"curves": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no partial file left
