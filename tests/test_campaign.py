"""End to end: a real 2-iteration campaign (EMT labels, tiny MACE committee), its
store, its CLI views, and a crash followed by a resume that relabels nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from alflow.cli import main
from alflow.label import jobs as label_jobs
from alflow.query import dataset, latest_state
from alflow.store import embedded_store
from alflow.train.records import file_sha256

pytestmark = pytest.mark.slow

CONFIG = """\
name: cu-e2e
seed: 3
output: {output}
system:
  structures: {structure}
data:
  bootstrap: {{n_frames: 6, rattle_std: 0.05, strain: 0.02}}
  validation: {validation}
label:
  calculator: emt
train:
  committee: 2
  epochs: 20
  batch_size: 4
  threads: 2
explore:
  runs: 2
  steps: 150
  timestep_fs: 2.0
  temperature_K: [600, 800]
  record_every: 10
select:
  lo: 0.02
  hi: 0.8
  max_per_iteration: 5
stop:
  max_iterations: 2
  accurate_fraction: 0.99
"""


def write_config(tmp_path: Path, copper_files: dict[str, Path], name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    text = CONFIG.format(output=tmp_path / name, **copper_files).replace("cu-e2e", name)
    path.write_text(text)
    return path


def test_two_iteration_campaign(tmp_path, copper_files, capsys):
    config = write_config(tmp_path, copper_files, "cu-e2e")
    assert main(["run", str(config)]) == 0
    root = tmp_path / "cu-e2e"
    store = embedded_store(root)
    state = latest_state(store, "cu-e2e")

    # the loop ran two iterations after the bootstrap and said why it stopped
    assert state.stopped and state.stop_reason == "reached max_iterations (2)"
    assert [r.iteration for r in state.history] == [0, 1, 2]

    # frames: 6 bootstrap + up to 5 per iteration, all with labels and provenance
    data = dataset(store, "cu-e2e")
    entries = data.entries("ok")
    assert len(entries) == state.history[-1].labels_total
    assert len(entries) == 6 + sum(r.labels_new for r in state.history[1:])
    assert all(r.labels_new > 0 for r in state.history)
    explored = [e for e in entries if e.frame.provenance.source == "explore"]
    assert explored and all(
        0.02 <= e.frame.provenance.deviation < 0.8 and e.frame.provenance.explorer_run
        for e in explored
    )
    assert {e.frame.level_of_theory.code for e in entries} == {"ase-emt"}
    assert len({e.frame_id for e in entries}) == len(entries)

    # models: files whose hashes match the records, K per iteration
    for record in state.history:
        assert len(record.models) == 2
        for model in record.models:
            assert file_sha256(model.path) == model.sha256
            assert model.n_train_frames == record.labels_total
    assert len({m.seed for r in state.history for m in r.models}) == 6

    # the stored model is the one MACE finished with: its energies on its own
    # training frames agree with the error MACE reported while training
    from mace.calculators import MACECalculator

    model = state.history[-1].models[0]
    calc = MACECalculator(model_paths=model.path, device="cpu", default_dtype="float64")
    errors = []
    for entry in entries:
        atoms = entry.frame.to_atoms(with_labels=False)
        atoms.calc = calc
        errors.append((atoms.get_potential_energy() - entry.frame.energy) / len(atoms))
    rmse = float(np.sqrt(np.mean(np.square(errors))))
    assert rmse < 3 * model.metrics["rmse_e_per_atom"] + 0.01

    # accounting: every stage measured, roll-ups consistent
    last = state.history[-1].compute
    for stage in ("explore", "select", "label", "train", "validate"):
        assert last[stage].jobs >= 1 and last[stage].wall_s > 0
    assert last["train"].jobs == 2 and last["explore"].jobs == 2
    assert last["total"].cpu_s == pytest.approx(
        sum(v.cpu_s for k, v in last.items() if k != "total")
    )
    assert last["train"].cpu_s > 1.0 and last["total"].energy_kwh > 0
    assert state.history[-1].explored.total > 0

    # the committee learned: held-out force error went down
    rmse = [r.validation.force_rmse for r in state.history]
    assert rmse[-1] < rmse[0]

    capsys.readouterr()
    assert main(["status", str(root)]) == 0
    status = capsys.readouterr().out
    assert "reached max_iterations (2)" in status and "F RMSE" in status
    assert "energy: power model" in status or "energy: RAPL" in status
    assert main(["export", str(root), "-o", str(tmp_path / "out.xyz")]) == 0
    exported = read(tmp_path / "out.xyz", ":")
    assert len(exported) == len(entries)
    assert exported[0].info["alflow_source"] == "bootstrap"

    # running a finished campaign again does nothing
    assert main(["run", str(config)]) == 0
    assert "already finished" in capsys.readouterr().err
    assert data.count() == len(entries)

    # allowing one more iteration continues from the stored state
    config.write_text(config.read_text().replace("max_iterations: 2", "max_iterations: 3"))
    assert main(["run", str(config)]) == 0
    assert "so it continues" in capsys.readouterr().err
    extended = latest_state(store, "cu-e2e")
    assert [r.iteration for r in extended.history] == [0, 1, 2, 3]
    assert extended.history[:3] == state.history
    assert extended.stop_reason == "reached max_iterations (3)"
    assert data.count() == len(entries) + extended.history[3].labels_new


def test_crash_then_resume_keeps_and_reuses_labels(tmp_path, copper_files, monkeypatch, capsys):
    config = write_config(tmp_path, copper_files, "cu-resume")
    real = label_jobs.label_with_retries
    calls = {"n": 0}

    def crash_on_ninth(frame, settings, workdir):
        calls["n"] += 1
        if calls["n"] == 9:  # bootstrap is 6 labels; die in iteration 1's labelling
            raise KeyboardInterrupt
        return real(frame, settings, workdir)

    monkeypatch.setattr(label_jobs, "label_with_retries", crash_on_ninth)
    assert main(["run", str(config)]) == 130
    store = embedded_store(tmp_path / "cu-resume")
    data = dataset(store, "cu-resume")
    assert data.count("ok") == 8  # every label finished before the crash is stored
    before = {e.frame_id for e in data.entries()}

    calls["n"] = 100  # no more crashes
    assert main(["run", str(config)]) == 0
    assert "resuming 'cu-resume' after iteration 0" in capsys.readouterr().err
    state = latest_state(store, "cu-resume")
    assert state.stopped
    entries = data.entries()
    assert len({e.frame_id for e in entries}) == len(entries)  # nothing labelled twice
    assert before <= {e.frame_id for e in entries}
    # the resumed iteration 1 found its two finished labels in the dataset
    assert state.history[1].labels_reused == 2
    new_calls = calls["n"] - 100
    assert new_calls == len(entries) - len(before)


FAULTY = """\
name: cu-faulty
# seed 25: the 10 bootstrap frames already hold each fault (raise, NaN, hang)
# and 7 good frames, so the test does not depend on which frames MD visits
seed: 25
output: {output}
system:
  structures: {structure}
data:
  bootstrap: {{n_frames: 10, rattle_std: 0.05, strain: 0.02}}
  validation: {validation}
label:
  calculator: ase
  import_path: faulty.Chaos     # 30% raise, 10% NaN forces, 10% hang; tests/faulty.py
  timeout_s: 4
  retries: [{{}}]               # one plain retry: the injected faults are deterministic
train:
  committee: 2
  epochs: 15
  batch_size: 4
  threads: 2
explore:
  runs: 2
  steps: 100
  timestep_fs: 2.0
  temperature_K: 700
  record_every: 10
# a wide window: models trained on 7 frames are poor, and this test is about labels
select: {{lo: 0.02, hi: 20.0, max_per_iteration: 6}}
# half the frames fail by design, so an iteration can lose all 6 by chance (p = 1/64):
# never stop on failures here; that stop has its own tests (test_decide.py)
stop: {{max_iterations: 2, accurate_fraction: 0.99, max_failed_fraction: 1.0}}
"""


def test_campaign_survives_failing_labeller(tmp_path, copper_files, capsys):
    """Exceptions, NaN forces and hangs past the time limit are quarantined with
    their reasons; the campaign completes and trains only on good labels."""
    from faulty import bucket

    config = tmp_path / "faulty.yaml"
    config.write_text(FAULTY.format(output=tmp_path / "run", **copper_files))
    assert main(["run", str(config)]) == 0
    store = embedded_store(tmp_path / "run")
    state = latest_state(store, "cu-faulty")
    data = dataset(store, "cu-faulty")
    assert state.stop_kind == "iterations"

    failed = data.entries("failed")
    good = data.entries("ok")
    reasons = " | ".join(e.reason for e in failed)
    assert "SCF did not converge (injected" in reasons
    assert "non-finite forces" in reasons
    assert "timeout: no result after 4 s" in reasons
    # the fault a frame got is the one its structure hash dictates, in every process
    for entry in failed:
        assert bucket(entry.frame.to_atoms()) < 50
        assert len(entry.attempts) == (1 if entry.reason.startswith("timeout") else 2)
        assert not entry.frame.is_labelled
    assert all(bucket(e.frame.to_atoms()) >= 50 for e in good)
    # failures never reach training; the record of every iteration lists them
    assert state.history[-1].models[0].n_train_frames == len(good)
    assert sum(len(r.failures) for r in state.history) == len(failed)
    assert sum(r.labels_failed for r in state.history) == len(failed)

    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    status = capsys.readouterr().out
    assert "failed label" in status and "timeout" in status


def test_changing_the_level_of_theory_is_refused(tmp_path, copper_files, capsys):
    """A campaign whose dataset holds EMT labels cannot continue with another method."""
    config = tmp_path / "c.yaml"
    config.write_text(
        CONFIG.format(output=tmp_path / "run", **copper_files)
        .replace("max_iterations: 2", "max_iterations: 1")
        .replace("epochs: 20", "epochs: 3")
        .replace("steps: 150", "steps: 20")
    )
    assert main(["run", str(config)]) == 0
    lj = (
        "label:\n  calculator: ase\n  import_path: ase.calculators.lj.LennardJones\n"
        "  kwargs: {sigma: 2.3, epsilon: 0.4}"
    )
    config.write_text(
        config.read_text()
        .replace("label:\n  calculator: emt", lj)
        .replace("max_iterations: 1", "max_iterations: 2")
    )
    capsys.readouterr()
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "label: the dataset holds labels at ase-emt EMT" in err
    assert "allow_mixed_levels" in err


def test_an_iteration_without_new_labels_keeps_its_models(tmp_path, copper_files):
    """Nothing is uncertain enough to label (lo far above any deviation): iteration 1
    adds no labels, so its committee is iteration 0's, kept without retraining."""
    config = tmp_path / "idle.yaml"
    text = write_config(tmp_path, copper_files, "cu-idle").read_text()
    text = text.replace("lo: 0.02\n  hi: 0.8", "lo: 100.0\n  hi: 200.0")
    text = text.replace("steps: 150", "steps: 40").replace("epochs: 20", "epochs: 8")
    text = text.replace("max_iterations: 2", "max_iterations: 1")
    config.write_text(text)
    assert main(["run", str(config)]) == 0
    state = latest_state(embedded_store(tmp_path / "cu-idle"), "cu-idle")
    first, second = state.history
    assert second.selected == 0 and second.labels_new == 0
    assert [m.sha256 for m in second.models] == [m.sha256 for m in first.models]
    assert all(m.iteration == 0 and m.compute is None for m in second.models)
    assert "train" not in second.compute and "train" in first.compute
