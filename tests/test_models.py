"""Trainers and estimators on real models: MACE (scratch, warm start, naive and
multihead fine-tuning), shallow ensembles and GAP, trained here on 12 labelled
ethanol frames so that the whole module runs in about a minute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import write

from alflow.accounting import ComputeRecord
from alflow.config import FoundationConfig, GAPConfig, MACEConfig
from alflow.frames import Frame, read_frames
from alflow.train.foundation import FoundationModelError, check_coverage, inspect_foundation
from alflow.train.gap import train_gap
from alflow.train.mace import StartPoint, plan_start, train_mace
from alflow.train.records import dataset_hash, file_sha256, kept_model
from alflow.train.shallow import (
    LinearisedFrames,
    build_shallow_model,
    fit_members,
    last_layer_features,
    linearise,
    member_predictions,
    per_frame_features,
)
from alflow.uncertainty import make_estimator
from alflow.uncertainty.gap import GAPCalculator
from alflow.uncertainty.shallow import ShallowEnsembleCalculator
from alflow.validate import validate_estimator

DATA = Path(__file__).resolve().parents[1] / "configs" / "data" / "ethanol_rmd17_test.xyz"
TINY = {"num_channels": 8, "epochs": 4, "batch_size": 4, "committee": 2}


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return read_frames(DATA)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def foundation(frames: list[Frame], workdir: Path):
    """A small MACE model trained from scratch: the 'foundation' of the other tests."""
    return train_mace(frames[:12], MACEConfig(**TINY), workdir, "foundation", seed=1)


@pytest.fixture(scope="module")
def other(frames: list[Frame], workdir: Path):
    """A second model on the same frames (another seed): with ``foundation``, a committee."""
    return train_mace(frames[:12], MACEConfig(**TINY), workdir, "other", seed=5)


def test_scratch_record_describes_the_model(foundation, workdir: Path) -> None:
    assert foundation.start == "scratch" and foundation.parent_sha256 is None
    assert foundation.sha256 == file_sha256(workdir / "foundation.model")
    assert sorted(foundation.architecture["elements"]) == ["C", "H", "O"]
    assert foundation.architecture["hidden_irreps"] == "8x0e"
    assert foundation.metrics["rmse_f"] > 0


def test_plan_start_prefers_warm_start_then_foundation(foundation) -> None:
    warm = MACEConfig(**TINY, warm_start_epochs=2)
    start = plan_start(warm, iteration=1, member=3, previous=[foundation, foundation])
    assert (start.mode, start.epochs, start.lr) == ("warm", 2, warm.lr)
    assert start.parent_sha256 == foundation.sha256
    # iteration 0 has nothing to continue from
    assert plan_start(warm, 0, 0, []).mode == "scratch"
    tuned = MACEConfig(**TINY, foundation=FoundationConfig(path=Path(foundation.path)))
    start = plan_start(tuned, iteration=0, member=0, previous=[])
    assert (start.mode, start.model) == ("naive", Path(foundation.path))
    assert plan_start(MACEConfig(**TINY), 2, 0, [foundation]).mode == "scratch"


def test_warm_start_continues_from_previous_weights(frames, foundation, workdir) -> None:
    settings = MACEConfig(**TINY, warm_start_epochs=1)
    start = plan_start(settings, iteration=1, member=0, previous=[foundation])
    record = train_mace(frames[:16], settings, workdir, "warm", seed=2, start=start)
    assert record.start == "warm" and record.parent_sha256 == foundation.sha256
    assert record.n_train_frames == 16
    # one epoch from the trained weights is already far better than from scratch
    scratch = train_mace(frames[:16], MACEConfig(**{**TINY, "epochs": 1}), workdir, "cold", seed=2)
    assert record.metrics["rmse_f"] < scratch.metrics["rmse_f"]


def test_naive_fine_tuning_keeps_the_foundation_architecture(frames, foundation, workdir):
    # the settings ask for 16 channels; fine-tuning must keep the foundation's 8
    settings = MACEConfig(
        **{**TINY, "num_channels": 16, "epochs": 2},
        foundation=FoundationConfig(path=Path(foundation.path)),
    )
    start = plan_start(settings, 0, 0, [])
    record = train_mace(frames[12:20], settings, workdir, "naive", seed=3, start=start)
    assert record.start == "naive" and record.parent_sha256 == foundation.sha256
    assert record.architecture["hidden_irreps"] == "8x0e"
    assert record.sha256 != foundation.sha256


def test_multihead_fine_tuning_replays_and_drops_the_replay_head(frames, foundation, workdir):
    replay = workdir / "replay.xyz"
    write(replay, [f.to_atoms() for f in frames[:12]])
    settings = MACEConfig(
        **{**TINY, "epochs": 2},
        foundation=FoundationConfig(
            path=Path(foundation.path), mode="multihead", replay_file=replay, replay_samples=12
        ),
    )
    start = plan_start(settings, 0, 0, [])
    record = train_mace(frames[12:20], settings, workdir, "multihead", seed=4, start=start)
    assert record.start == "multihead"
    log = (workdir / "multihead.log").read_text()
    assert "pt_head" in log  # mace-torch trained with the replay head
    model = torch.load(record.path, weights_only=False)
    assert len(model.heads) == 1  # ... which is gone from the saved model
    calc = make_estimator([record, record.model_copy(update={"member": 1})])
    atoms = frames[20].to_atoms(with_labels=False)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


def test_foundation_errors_are_clear(tmp_path: Path, foundation) -> None:
    with pytest.raises(FoundationModelError, match="not found"):
        inspect_foundation(tmp_path / "mace-mp-0.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_text("not a model")
    with pytest.raises(FoundationModelError, match="cannot be loaded by torch"):
        inspect_foundation(garbage)
    weights = tmp_path / "weights.model"
    torch.save({"w": torch.zeros(3)}, weights)
    with pytest.raises(FoundationModelError, match="is a dict, not a MACE model"):
        inspect_foundation(weights)
    info = inspect_foundation(foundation.path)
    assert sorted(info.elements) == ["C", "H", "O"] and info.r_max == 4.0
    with pytest.raises(FoundationModelError, match="contain Cu, Zn, which the foundation"):
        check_coverage(info, {"C", "Cu", "Zn"}, "the starting structures")


def test_shallow_members_match_their_linearisation(frames, foundation, workdir) -> None:
    target = workdir / "shallow.model"
    fit = build_shallow_model(foundation.path, frames[:12], target, members=4, seed=0, steps=30)
    assert np.isfinite(fit["nll"])
    calc = ShallowEnsembleCalculator(target)
    atoms = frames[22].to_atoms(with_labels=False)
    calc.calculate(atoms, ["energy", "forces"])
    assert "force_deviation" not in calc.results  # no extra cost unless asked for
    calc.calculate(atoms, ["energy", "forces", "force_deviation"])
    # the batched backward pass gives exactly the linearised member predictions
    _, w0, linear = linearise(foundation.path, [frames[22]])
    weights = calc.readout.weights.detach()
    energies, forces = member_predictions(linear, weights - w0[:, None])
    n = frames[22].n_atoms
    assert np.allclose(calc.results["energy_members"], energies[:, 0].numpy() * n, atol=1e-6)
    assert np.allclose(calc.results["forces_members"], forces.numpy(), atol=1e-6)
    assert np.allclose(calc.results["forces"], forces.numpy().mean(axis=0), atol=1e-6)
    assert calc.results["force_deviation"] > 0


def test_shallow_member_forces_are_energy_derivatives(foundation, workdir, frames) -> None:
    calc = ShallowEnsembleCalculator(workdir / "shallow.model")
    atoms = frames[23].to_atoms(with_labels=False)
    calc.calculate(atoms, ["energy", "forces", "force_deviation"])
    force = calc.results["forces_members"][:, 2, 0]
    h = 1e-4
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[2, 0] += sign * h
        calc.calculate(moved, ["energy", "forces", "force_deviation"])
        energies.append(calc.results["energy_members"])
    assert np.allclose(force, -(energies[0] - energies[1]) / (2 * h), atol=1e-4)


def test_nll_fit_matches_spread_to_training_residuals(frames, foundation) -> None:
    _, w0, linear = linearise(foundation.path, frames[:12])
    weights, _ = fit_members(linear, w0, members=8, seed=0, steps=200, method="nll")
    _, forces = member_predictions(linear, weights - w0[:, None])
    variance = float(forces.var(dim=0, unbiased=False).mean())
    residual = float((forces.mean(dim=0) - linear.force_ref).pow(2).mean())
    # at the likelihood optimum the predicted variance tracks the squared error
    assert 0.2 < variance / residual < 5


def _mean_and_covariance(linear: LinearisedFrames, weights, w0):
    _, forces = member_predictions(linear, weights - w0[:, None])
    return forces.mean(dim=0), forces.var(dim=0, unbiased=False)


def test_rigidity_fit_keeps_the_model_and_fits_the_spread(frames, foundation) -> None:
    _, w0, linear = linearise(foundation.path, frames[:12])
    weights, metrics = fit_members(linear, w0, members=4)
    mean, variance = _mean_and_covariance(linear, weights, w0)
    # the members' mean is the trained model: its energies and forces are unchanged (to
    # the rounding of averaging members that, on this 4-epoch model, spread by 1e4)
    spread = float(weights.abs().max())
    assert torch.allclose(weights.mean(dim=1), w0, rtol=0, atol=1e-14 * spread)
    assert torch.allclose(mean, linear.force0, rtol=0, atol=1e-12 * spread)
    # the spread is scaled to the training residual: predicted variance = squared error
    residual = float((linear.force0 - linear.force_ref).pow(2).sum(dim=-1).mean())
    assert float(variance.sum(dim=-1).mean()) == pytest.approx(residual, rel=1e-8)
    assert metrics["train_rmse_f"] ** 2 * 3 == pytest.approx(residual, rel=1e-8)
    # the members span M-1 directions around their mean
    centred = weights - weights.mean(dim=1, keepdim=True)
    assert torch.linalg.matrix_rank(centred).item() == 3


def test_rigidity_members_skip_hidden_units_no_atom_uses(frames, foundation) -> None:
    _, w0, linear = linearise(foundation.path, frames[:12])
    dead = torch.zeros(linear.g.shape[1], dtype=bool)
    dead[:3] = True  # three units that are zero on every training atom
    silenced = LinearisedFrames(
        linear.energy0,
        linear.energy_ref,
        linear.g * ~dead,
        linear.force0,
        linear.force_ref,
        linear.jac * ~dead[:, None, None],
    )
    weights, _ = fit_members(silenced, w0, members=4)
    centred = weights - weights.mean(dim=1, keepdim=True)
    assert float(centred[dead].abs().max()) == 0.0
    assert torch.linalg.matrix_rank(centred).item() == 3


def test_rigidity_fit_does_not_amplify_rounding(frames, foundation) -> None:
    """The NLL fit turned a 1e-17 change of the features into another ensemble."""
    _, w0, linear = linearise(foundation.path, frames[:12])
    noise = torch.randn(linear.jac.shape, generator=torch.Generator().manual_seed(1))
    nudged = LinearisedFrames(
        linear.energy0,
        linear.energy_ref,
        linear.g,
        linear.force0,
        linear.force_ref,
        linear.jac * (1 + 1e-15 * noise.to(linear.jac.dtype)),
    )
    _, _, unseen = linearise(foundation.path, frames[12:20])
    mean_a, var_a = _mean_and_covariance(unseen, fit_members(linear, w0, 4)[0], w0)
    mean_b, var_b = _mean_and_covariance(unseen, fit_members(nudged, w0, 4)[0], w0)
    # the mean is the trained model; the spread comes from an eigendecomposition of a
    # precision with a condition number near 1e6 here, so rounding moves it by ~1e-7
    # (the NLL fit moved the mean by 1 % and the spread by 6-10 %, on acac)
    assert torch.allclose(mean_a, mean_b, rtol=0, atol=1e-9)
    assert float((var_a - var_b).abs().max()) < 1e-4 * float(var_a.max())


def test_last_layer_features_of_unlabelled_frames_match_the_linearisation(
    frames, foundation
) -> None:
    chosen = frames[12:15]
    _, _, linear = linearise(foundation.path, chosen)
    features = last_layer_features(foundation.path, [f.to_atoms(with_labels=False) for f in chosen])
    assert np.allclose(np.stack([g for g, _ in features]), linear.g.numpy(), rtol=0, atol=1e-12)
    assert np.allclose(
        np.concatenate([jac for _, jac in features], axis=1), linear.jac.numpy(), atol=1e-12
    )
    # split back per frame, the linearisation gives the same features without a second pass
    for (g, jac), (g_split, jac_split) in zip(
        features, per_frame_features(linear, [f.n_atoms for f in chosen]), strict=True
    ):
        assert np.array_equal(g, g_split) and np.array_equal(jac, jac_split)
    # the energy follows G: a finite step along the first atom's x moves G by J
    g, jac = features[0]
    moved = chosen[0].to_atoms(with_labels=False)
    moved.positions[0, 0] += 1e-5
    g_moved, _ = last_layer_features(foundation.path, [moved])[0]
    n = chosen[0].n_atoms
    assert np.allclose((g_moved - g) * n / 1e-5, jac[:, 0, 0], rtol=1e-3, atol=1e-6)


def test_rigidity_spread_grows_away_from_the_training_frames(frames, foundation) -> None:
    model_path = foundation.path
    _, w0, linear = linearise(model_path, frames[:12])
    weights, _ = fit_members(linear, w0, members=4)
    rattled = []
    for k, frame in enumerate(frames[:12]):
        atoms = frame.to_atoms()
        atoms.rattle(stdev=0.15, seed=k)
        rattled.append(Frame.from_atoms(atoms))
    _, _, far = linearise(model_path, rattled)
    _, var_near = _mean_and_covariance(linear, weights, w0)
    _, var_far = _mean_and_covariance(far, weights, w0)
    assert float(var_far.mean()) > 2 * float(var_near.mean())


def test_validation_calibrates_the_shallow_ensemble(frames, foundation, workdir) -> None:
    record = foundation.model_copy(
        update={
            "kind": "mace-shallow",
            "path": str(workdir / "shallow.model"),
            "sha256": file_sha256(workdir / "shallow.model"),
        }
    )
    calc = make_estimator([record])
    assert not calc.calibrated  # the model's own readout scale is not a calibration
    metrics, members, calibration, raw = validate_estimator(calc, frames[20:])
    assert len(members) == 4 and metrics.n_frames == 5 and len(raw) == 5
    assert calibration.energy_scale > 0 and calibration.energy_scale != 1.0
    assert calibration.scale > 0 and calibration.n_atoms == 45
    # one factor per element of the validation frames (ENCE on 45 atoms is too noisy
    # to assert that calibration lowers it when the raw spread is already near 1)
    assert set(calibration.element_scales) == {"C", "H", "O"}
    # what the scale guarantees: calibrated variance equals the observed squared error
    sigma, errors = [], []
    for frame in frames[20:]:
        calc.calculate(frame.to_atoms(with_labels=False), ["energy", "forces", "forces_std"])
        sigma.append(np.asarray(calc.results["forces_std"]))
        errors.append(np.linalg.norm(calc.results["forces"] - np.asarray(frame.forces), axis=1))
    sigma, errors = np.concatenate(sigma), np.concatenate(errors)
    assert np.sum((calibration.scale * sigma) ** 2) == pytest.approx(np.sum(errors**2), rel=1e-9)


def test_validation_fits_the_energy_factor_of_a_committee(frames, foundation, other) -> None:
    calc = make_estimator([foundation, other])
    held_out = frames[20:]
    _, _, calibration, _ = validate_estimator(calc, held_out)
    # the maximum-likelihood factor between energy spreads and errors, per atom
    spreads, errors = [], []
    for frame in held_out:
        calc.calculate(frame.to_atoms(with_labels=False), ["energy", "energy_deviation"])
        spreads.append(calc.results["energy_std"] / frame.n_atoms)
        errors.append((calc.results["energy"] - frame.energy) / frame.n_atoms)
    expected = np.sqrt(np.sum(np.square(errors)) / np.sum(np.square(spreads)))
    assert calibration.energy_scale == pytest.approx(expected)
    calibrated = make_estimator([foundation, other], energy_scale=calibration.energy_scale)
    atoms = held_out[0].to_atoms(with_labels=False)
    calibrated.calculate(atoms, ["energy", "energy_deviation"])
    assert calibrated.results["energy_deviation"] == pytest.approx(
        calibration.energy_scale * spreads[0]
    )


def test_gap_variance_grows_away_from_the_data(frames, workdir) -> None:
    settings = GAPConfig(model="gap", soap_n_sparse=40, two_body_n_sparse=10)
    record = train_gap(frames[:12], settings, workdir, "gap", seed=0)
    assert record.kind == "gap" and Path(record.path).name == "gap.xml"
    assert not list(Path(record.path).parent.glob("train.xyz*"))  # no stray inputs left
    calc = make_estimator([record])
    assert isinstance(calc, GAPCalculator)
    seen = frames[0].to_atoms(with_labels=False)
    calc.calculate(seen, ["energy", "forces"])
    assert "force_deviation" not in calc.results
    assert abs(calc.results["energy"] - frames[0].energy) / 9 < 0.05
    calc.calculate(seen, ["energy", "forces", "force_deviation"])
    near = calc.results["force_deviation"]
    far = seen.copy()
    far.rattle(0.25, seed=1)
    calc.calculate(far, ["energy", "forces", "force_deviation"])
    assert calc.results["force_deviation"] > 2 * near


def test_make_estimator_rejects_mixed_or_wrong_counts(foundation, workdir) -> None:
    gap = foundation.model_copy(update={"kind": "gap"})
    with pytest.raises(ValueError, match="one kind"):
        make_estimator([foundation, gap])
    with pytest.raises(ValueError, match="takes one model"):
        make_estimator([gap, gap])
    with pytest.raises(ValueError, match="at least two"):
        make_estimator([foundation])


def test_committee_driven_by_its_first_member(frames, foundation, other) -> None:
    from mace.calculators import MACECalculator

    from alflow.uncertainty.committee import CommitteeCalculator

    paths = [foundation.path, other.path]
    lazy = CommitteeCalculator(paths, forces="first")
    full = CommitteeCalculator(paths, forces="mean")
    single = MACECalculator(model_paths=foundation.path, device="cpu", default_dtype="float64")
    atoms = frames[20].to_atoms(with_labels=False)
    single.calculate(atoms.copy(), ["energy", "forces"])
    # an MD step: member 0 only, no committee
    lazy.calculate(atoms.copy(), ["energy", "forces"])
    assert np.allclose(lazy.results["forces"], single.results["forces"])
    assert "forces_committee" not in lazy.results and "force_deviation" not in lazy.results
    # a recorded step: still member 0's forces, and the full committee's spread
    lazy.calculate(atoms.copy(), ["energy", "forces", "force_deviation"])
    full.calculate(atoms.copy(), ["energy", "forces", "force_deviation"])
    assert np.allclose(lazy.results["forces"], single.results["forces"])
    assert np.allclose(lazy.results["forces_committee"], full.results["forces_committee"])
    assert np.allclose(lazy.results["forces_std"], full.results["forces_std"])
    assert lazy.results["force_deviation"] == pytest.approx(full.results["force_deviation"])
    assert np.allclose(full.results["forces"], full.results["forces_committee"].mean(axis=0))
    assert not np.allclose(full.results["forces"], single.results["forces"])
    # the energy uncertainty per atom is the members' energy spread over the atoms
    second = MACECalculator(model_paths=other.path, device="cpu", default_dtype="float64")
    second.calculate(atoms.copy(), ["energy"])
    spread = np.std([single.results["energy"], second.results["energy"]])
    assert spread > 0
    assert full.results["energy_deviation"] == pytest.approx(spread / len(atoms))
    assert lazy.results["energy_deviation"] == pytest.approx(spread / len(atoms))
    with pytest.raises(ValueError, match="'mean' or 'first'"):
        CommitteeCalculator(paths, forces="median")


def test_min_steps_adds_epochs_on_small_datasets() -> None:
    from alflow.train.mace import with_min_steps

    settings = MACEConfig(epochs=80, batch_size=5, valid_fraction=0.1, min_steps=400)
    scratch = StartPoint("scratch", None, None, 80, 0.01)
    # 8 frames: 7 train, one batch of 5 per epoch (the incomplete one is dropped)
    assert with_min_steps(scratch, settings, 8).epochs == 400
    # 100 frames: 90 train, 18 steps an epoch; 80 epochs are already enough
    assert with_min_steps(scratch, settings, 100).epochs == 80
    assert with_min_steps(scratch, settings, 20).epochs == 134  # 18 // 5 = 3 steps
    # a warm start of 20 of 80 epochs gets a quarter of the steps: 100
    warm = StartPoint("warm", Path("m.model"), "abc", 20, 0.01)
    assert with_min_steps(warm, settings, 8).epochs == 100
    assert with_min_steps(warm, settings, 100).epochs == 20
    assert with_min_steps(scratch, MACEConfig(epochs=80), 8).epochs == 80


def test_start_point_defaults_to_scratch() -> None:
    start = StartPoint("scratch", None, None, 5, 0.01)
    assert start.model is None


def test_training_into_a_relative_folder(frames, tmp_path, monkeypatch) -> None:
    # mace-torch runs inside the work folder; a relative model_dir must still work
    monkeypatch.chdir(tmp_path)
    settings = MACEConfig(num_channels=4, epochs=1, batch_size=2)
    record = train_mace(frames[:6], settings, Path("models"), "relative", seed=0)
    assert Path(record.path).is_absolute() and Path(record.path).is_file()


def test_shallow_stress_is_the_strain_derivative(frames, foundation, workdir) -> None:
    calc = ShallowEnsembleCalculator(workdir / "shallow.model")
    atoms = frames[21].to_atoms(with_labels=False)
    atoms.set_cell([12.0, 12.0, 12.0])
    atoms.center()
    atoms.pbc = True
    calc.calculate(atoms, ["energy", "forces", "stress"])
    stress = calc.results["stress"]
    assert "force_deviation" not in calc.results
    h = 1e-5
    energies = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * [1 + sign * h, 1, 1], scale_atoms=True)
        calc.calculate(strained, ["energy"])
        energies.append(calc.results["energy"])
    expected = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    assert stress[0] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    calc.calculate(atoms, ["energy", "forces", "force_deviation"])
    assert np.allclose(calc.results["stress"], stress)  # same with the uncertainty path


def test_a_failing_trainer_reports_the_end_of_its_log(frames, tmp_path) -> None:
    from alflow.train.mace import TrainingError

    # isolated-atom energies without C and O: mace-torch refuses to start
    settings = MACEConfig(num_channels=4, epochs=1, batch_size=2, e0s={"H": -13.6})
    with pytest.raises(TrainingError, match=r"full log in (.|\n)*Last lines") as failure:
        train_mace(frames[:6], settings, tmp_path, "broken", seed=0)
    assert (
        (tmp_path / "broken.log")
        .read_text()
        .strip()
        .endswith(str(failure.value).splitlines()[-1].strip())
    )


def test_a_model_is_kept_only_for_unchanged_labels(foundation) -> None:
    labelled = dataset_hash(["a", "b"])
    members = [
        foundation.model_copy(
            update={
                "member": m,
                "labelled_hash": labelled,
                "compute": ComputeRecord(stage="train", wall_s=60.0),
            }
        )
        for m in (0, 1)
    ]
    kept = kept_model(members, 1, dataset_hash(["b", "a"]))
    assert kept is not None and kept.member == 1 and kept.compute is None
    assert kept_model(members, 1, dataset_hash(["a", "b", "c"])) is None
    assert kept_model(members, 2, labelled) is None
    assert kept_model([foundation], 0, labelled) is None  # trained before hashes were kept


def test_training_leaves_the_workflow_process_untouched(frames, tmp_path) -> None:
    # mace-torch sets torch's default dtype and configures root logging when it runs;
    # training runs in a forked child, so none of it may reach this process
    import logging

    handlers = list(logging.getLogger().handlers)
    dtype = torch.get_default_dtype()
    settings = MACEConfig(num_channels=4, epochs=1, batch_size=2, dtype="float64")
    record = train_mace(frames[:6], settings, tmp_path, "isolated", seed=0)
    assert Path(record.path).is_file()
    assert torch.get_default_dtype() == dtype == torch.float32
    assert logging.getLogger().handlers == handlers


def assert_bias_is_conservative(estimator, atoms) -> None:
    """The biased estimator's forces are minus the gradient of its biased energy, and
    the bias changes them."""
    from alflow.explore.bias import BiasedCalculator

    estimator.calculate(atoms.copy(), ["energy", "forces", "energy_deviation"])
    unbiased = estimator.results["forces"].copy()
    # a width at the frame's own uncertainty: the bias pushes hardest there
    width = estimator.results["energy_deviation"]
    calc = BiasedCalculator(estimator, depth=0.05, width=width)
    atoms.calc = calc
    # plain MD asks for energy and forces only; the bias must get the members anyway
    forces = atoms.get_forces()
    assert -0.05 * len(atoms) < calc.results["bias_energy"] < 0
    assert np.abs(forces - unbiased).max() > 1e-3
    step = 1e-4
    for atom, axis in [(0, 0), (4, 2)]:
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[atom, axis] += step
        moved[1].positions[atom, axis] -= step
        plus, minus = (calc.get_potential_energy(m) for m in moved)
        assert forces[atom, axis] == pytest.approx(-(plus - minus) / (2 * step), rel=1e-4, abs=1e-6)


def test_uncertainty_bias_on_a_mace_committee(frames, foundation, other) -> None:
    committee = make_estimator([foundation, other], energy_scale=3.0)
    atoms = frames[20].to_atoms(with_labels=False)
    committee.calculate(atoms.copy(), ["energy", "forces"])
    energies = committee.results["energy_committee"]
    assert energies.shape == (2,) and np.mean(energies) == pytest.approx(
        committee.results["energy"]
    )
    assert_bias_is_conservative(committee, atoms)


def test_uncertainty_bias_on_a_shallow_ensemble(frames, foundation, workdir) -> None:
    # the members' forces come from the batched backward pass over the spread's
    # principal directions; the bias force built from them must be exact as well
    shallow = ShallowEnsembleCalculator(workdir / "shallow.model", energy_scale=3.0)
    atoms = frames[20].to_atoms(with_labels=False)
    shallow.calculate(atoms.copy(), ["energy", "forces"])
    assert "energy_members" not in shallow.results  # plain MD skips the members
    assert_bias_is_conservative(shallow, atoms)
