"""The per-iteration roll-up the controller stores (pure, no jobflow)."""

from __future__ import annotations

import pytest

from alflow.accounting import ComputeRecord
from alflow.campaign import summarize_iteration
from alflow.label.jobs import LabelResult
from alflow.select.jobs import SelectionSummary
from alflow.select.window import WindowCounts
from alflow.train.records import ModelRecord
from alflow.validate import ErrorMetrics, ValidationResult


def compute(stage, cpu):
    return ComputeRecord(stage=stage, wall_s=cpu / 2, cpu_s=cpu, energy_kwh=cpu * 1e-6)


def test_summarize_iteration_counts_and_rolls_up():
    outcome = {
        "temperature_K": 500.0,
        "selection": SelectionSummary(
            iteration=2,
            explored=WindowCounts(accurate=6, candidate=3, failed=1),
            median_deviation=0.12,
            runs=2,
            runs_stopped_early=1,
            cap=3,
            n_selected=3,
            explore_compute=[compute("explore", 10), compute("explore", 12)],
            compute=compute("select", 1),
        ).model_dump(),
        "labels": [
            LabelResult(frame_id="a", status="ok", compute=compute("label", 7)),
            LabelResult(frame_id="b", status="failed", reason="SCF", compute=compute("label", 3)),
            LabelResult(frame_id="c", status="reused"),
        ],
        "models": [
            ModelRecord(
                path="/m",
                sha256="x",
                kind="mace",
                architecture={},
                iteration=2,
                seed=s,
                n_train_frames=20,
                dataset_hash="h",
                compute=compute("train", 40),
            )
            for s in (1, 2)
        ],
        "validation": ValidationResult(
            iteration=2,
            committee=ErrorMetrics(
                n_frames=5, energy_rmse_per_atom=0.01, force_rmse=0.1, force_mae=0.07
            ),
            member_force_rmse=[0.11, 0.12],
            mean_force_deviation=0.09,
            compute=compute("validate", 2),
        ),
    }
    record = summarize_iteration(2, outcome, labels_total=20, wall_s=99.0)
    assert (record.labels_new, record.labels_failed, record.labels_reused) == (1, 1, 1)
    assert record.selected == 3 and record.runs_stopped_early == 1
    assert record.fraction("accurate") == pytest.approx(0.6)
    assert record.validation.force_rmse == 0.1
    assert record.compute["explore"].cpu_s == 22 and record.compute["explore"].jobs == 2
    assert record.compute["label"].cpu_s == 10
    assert record.compute["train"].jobs == 2
    assert record.compute["total"].cpu_s == 22 + 1 + 10 + 80 + 2
    assert record.compute["total"].energy_kwh == pytest.approx(115e-6)
    assert record.wall_s == 99.0 and record.temperature_K == 500.0


def test_bootstrap_iteration_has_no_exploration():
    record = summarize_iteration(
        0, {"labels": [LabelResult(frame_id="a", status="ok")], "selection": None}, 1, 5.0
    )
    assert record.explored is None and record.fraction("accurate") is None
    assert record.selected == 1 and record.labels_new == 1
