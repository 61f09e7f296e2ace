"""The stop decision, a pure function of history and criteria."""

from __future__ import annotations

from alflow.config import StopConfig
from alflow.decide import decide
from alflow.select.window import WindowCounts
from alflow.state import IterationRecord
from alflow.validate import ErrorMetrics


def record(iteration, accurate=0, candidate=10, failed=0, force_rmse=None, selected=5):
    return IterationRecord(
        iteration=iteration,
        explored=WindowCounts(accurate=accurate, candidate=candidate, failed=failed)
        if iteration
        else None,
        selected=selected,
        validation=None
        if force_rmse is None
        else ErrorMetrics(
            n_frames=3, energy_rmse_per_atom=0.01, force_rmse=force_rmse, force_mae=0.0
        ),
    )


def test_continue_when_nothing_is_met():
    d = decide([record(0), record(1)], StopConfig(max_iterations=5), labels_used=10)
    assert not d.stop and d.reason == "continue"


def test_accurate_fraction_reached():
    d = decide([record(1, accurate=96, candidate=4)], StopConfig(accurate_fraction=0.95), 10)
    assert d.stop and d.reason.startswith("converged: 96.0% of explored frames below lo")


def test_bootstrap_has_no_exploration_so_no_accuracy_stop():
    d = decide([record(0)], StopConfig(accurate_fraction=0.5), 8)
    assert not d.stop


def test_force_rmse_target():
    criteria = StopConfig(force_rmse=0.05, accurate_fraction=None)
    assert decide([record(1, force_rmse=0.049)], criteria, 10).stop
    assert not decide([record(1, force_rmse=0.051)], criteria, 10).stop


def test_label_budget():
    d = decide([record(1)], StopConfig(max_labels=20), labels_used=20)
    assert d.stop and "label budget spent: 20 of 20" in d.reason


def test_max_iterations():
    d = decide([record(3)], StopConfig(max_iterations=3), 10)
    assert d.stop and "max_iterations (3)" in d.reason


def test_success_wins_over_limits():
    criteria = StopConfig(max_iterations=2, max_labels=10, accurate_fraction=0.9)
    d = decide([record(2, accurate=10, candidate=0)], criteria, labels_used=10)
    assert d.reason.startswith("converged")


def test_stall_when_nothing_selected():
    d = decide([record(1, accurate=5, candidate=0, failed=5, selected=0)], StopConfig(), 10)
    assert d.stop and d.reason.startswith("stalled")


def test_too_many_failed_labels_stops_with_reasons():
    last = record(2)
    last.labels_new, last.labels_failed = 2, 4
    last.failures = [
        "a: SCFNotConverged: no",
        "b: SCFNotConverged: no",
        "c: timeout: 60 s",
        "d: x (y)",
    ]
    d = decide([record(1), last], StopConfig(max_failed_fraction=0.5), 10)
    assert d.stop and d.kind == "failures"
    assert "4 of 6 in iteration 2 failed (limit 50%)" in d.reason
    assert "2x SCFNotConverged: no" in d.reason
    # below the limit the campaign goes on
    last.labels_failed = 2
    assert decide([record(1), last], StopConfig(max_failed_fraction=0.5), 10).kind == "continue"


def test_every_decision_names_its_rule():
    assert decide([record(3)], StopConfig(max_iterations=3), 1).kind == "iterations"
    assert decide([record(1)], StopConfig(max_labels=1), 1).kind == "budget"
    assert decide([record(1, selected=0)], StopConfig(), 1).kind == "stalled"
