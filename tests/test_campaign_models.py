"""The loop with the other model kinds: GAP with its variance, and MACE with a shallow
ensemble and warm starts; both calibrate on held-out frames and explore with the
calibrated uncertainty (real EMT labels, real models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alflow.cli import main
from alflow.frames import read_frames
from alflow.query import dataset, latest_state
from alflow.store import embedded_store
from alflow.train.records import ModelRecord, file_sha256
from alflow.uncertainty import make_estimator
from alflow.uncertainty.frame_error import expected_max_error
from alflow.validate import iteration_errors

pytestmark = pytest.mark.slow

CONFIG = """\
name: {name}
seed: 5
output: {output}
system:
  structures: {structure}
data:
  bootstrap: {{n_frames: 8, rattle_std: 0.08, strain: 0.02}}
  validation: {validation}
label:
  calculator: emt
train:
{train}
explore:
  runs: 2
  steps: 100
  timestep_fs: 2.0
  temperature_K: 700
  record_every: 10
select:
  lo: 0.01
  hi: 2.0
  max_per_iteration: 4
stop:
  max_iterations: 2
  accurate_fraction: 0.999
"""


def run_campaign(tmp_path: Path, copper_files: dict[str, Path], name: str, train: str):
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(name=name, output=tmp_path / name, train=train, **copper_files))
    assert main(["run", str(config)]) == 0
    store = embedded_store(tmp_path / name)
    return latest_state(store, name), dataset(store, name)


def explored_frames_use_the_calibrated_scale(state, data) -> None:
    """Deviations recorded in iteration 2 = scale of iteration 1 x raw uncertainty."""
    calibration = state.history[1].calibration
    # a single element: its own factor is the global one (no other atoms to differ from)
    assert calibration.element_scales == {"Cu": pytest.approx(calibration.scale)}
    assert state.uncertainty_element_scales == state.history[-1].calibration.element_scales
    scale = calibration.scale
    calc = make_estimator(state.history[1].models, scale, calibration.element_scales)
    frames = [
        e.frame
        for e in data.entries("ok")
        if e.frame.provenance.source == "explore" and e.frame.provenance.iteration == 2
    ]
    assert frames
    for frame in frames[:2]:
        atoms = frame.to_atoms(with_labels=False)
        calc.calculate(atoms, ["energy", "forces", "force_deviation"])
        assert calc.results["force_deviation"] == pytest.approx(
            frame.provenance.deviation, rel=1e-5
        )
        # one element: the calibrated DP-GEN measure is the raw one times the factor,
        # and the frame uncertainty is the expected max error of the calibrated sigmas
        assert calc.results["raw_force_deviation"] * scale == pytest.approx(
            calc.results["max_force_std"], rel=1e-9
        )
        assert frame.provenance.deviation == pytest.approx(
            expected_max_error(calc.results["forces_std"]), rel=1e-9
        )


def rescoring_gives_what_validation_gave(state, validation: Path) -> None:
    """Scored again after the run (as benchmarks/online.py scores its verdict set),
    each iteration's own models give the errors its validation recorded."""
    scored = iteration_errors(state.history, read_frames(validation))
    for record, metrics in zip(state.history, scored, strict=True):
        assert metrics.force_rmse == pytest.approx(record.validation.force_rmse, rel=1e-9)
        assert metrics.n_frames == 30


def test_gap_campaign_calibrates_its_variance(tmp_path, copper_files):
    train = "  model: gap\n  soap_n_sparse: 60\n  threads: 2"
    state, data = run_campaign(tmp_path, copper_files, "cu-gap", train)
    assert [r.iteration for r in state.history] == [0, 1, 2]
    for record in state.history:
        [model] = record.models
        assert model.kind == "gap" and file_sha256(model.path) == model.sha256
        # the calibration is stored with the model it belongs to
        stored = Path(model.path).parents[1] / "calibration.json"
        assert stored.is_file() and record.calibration is not None
        # a GAP's local-energy std (eV) is far below force errors (eV/Å): scale ≫ 1
        assert record.calibration.scale > 3
    assert state.uncertainty_scale == state.history[-1].calibration.scale
    explored_frames_use_the_calibrated_scale(state, data)
    rescoring_gives_what_validation_gave(state, copper_files["validation"])


def test_shallow_ensemble_campaign_with_warm_start(tmp_path, copper_files):
    train = (
        "  uncertainty: shallow\n  shallow_members: 4\n  epochs: 15\n"
        "  warm_start_epochs: 4\n  batch_size: 4\n  threads: 2"
    )
    state, data = run_campaign(tmp_path, copper_files, "cu-shallow", train)
    first, *later = state.history
    [model] = first.models
    assert model.kind == "mace-shallow" and model.start == "scratch"
    assert model.architecture["shallow_members"] == 4
    previous = model
    for record in later:
        [model] = record.models
        ModelRecord.model_validate(model).verified_path()
        # each iteration continues from the previous backbone, not from scratch
        assert model.start == "warm"
        assert model.parent_sha256 == file_sha256(previous.backbone)
        assert len(record.validation and record.member_force_rmse) == 4
        previous = model
    explored_frames_use_the_calibrated_scale(state, data)
    rescoring_gives_what_validation_gave(state, copper_files["validation"])
