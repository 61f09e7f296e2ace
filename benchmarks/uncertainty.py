"""Uncertainty estimators side by side, and warm start vs retraining from scratch.

On acetylacetone (BOTNet datasets, ``../shared/data/acac``): train on the first
``--n-train`` frames of ``train_300K.xyz``; calibrate each estimator on 50 other
frames of that file; test on ``test_MD_300K.xyz`` and ``test_MD_600K.xyz``.

Estimators: a committee of K=4 MACE models, a shallow ensemble on member 0 of the
committee (same backbone, so the comparison isolates the estimator), and a GAP.
For each: Spearman correlation between the predicted frame uncertainty (max over
atoms) and the true max force error of the mean prediction; calibration (ENCE and
the ratio of root mean predicted variance to observed MSE, per atom); inference
cost per frame relative to one MACE model, all measured in this one run.

Warm start: member 0 plays iteration i. Iteration i+1 has ``--n-extra`` more
frames; it is trained once from scratch (``--epochs``) and once warm-started from
member 0 (``--warm-epochs``); CPU time and test errors are compared.

Run ``python benchmarks/uncertainty.py`` (about 15 minutes on 2 cores); results go
to ``benchmarks/results/uncertainty.json`` and ``uncertainty.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata

from alflow.accounting import Meter
from alflow.config import GAPConfig, MACEConfig
from alflow.frames import Frame, read_frames
from alflow.train.gap import train_gap
from alflow.train.mace import plan_start, train_mace
from alflow.train.shallow import build_shallow_model
from alflow.uncertainty.base import UncertaintyCalculator
from alflow.uncertainty.calibrate import calibrate, expected_normalized_calibration_error
from alflow.uncertainty.committee import CommitteeCalculator
from alflow.uncertainty.gap import GAPCalculator
from alflow.uncertainty.shallow import ShallowEnsembleCalculator

HERE = Path(__file__).resolve().parent
TESTS = ("test_MD_300K", "test_MD_600K")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "acac")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-uncertainty"))
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-extra", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--warm-epochs", type=int, nargs="+", default=[15, 30])
    parser.add_argument("--committee", type=int, default=4)
    parser.add_argument("--members", type=int, default=4, help="shallow-ensemble members")
    parser.add_argument("--test-every", type=int, default=1, help="use every n-th test frame")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    pool = read_frames(args.data / "train_300K.xyz")
    train = pool[: args.n_train]
    extra = pool[args.n_train : args.n_train + args.n_extra]
    held_out = pool[-50:]  # calibration frames, never trained on
    tests = {name: read_frames(args.data / f"{name}.xyz")[:: args.test_every] for name in TESTS}
    settings = MACEConfig(epochs=args.epochs, threads=args.threads, committee=args.committee)

    print(f"training {args.committee} MACE models on {len(train)} frames ...", flush=True)
    committee, train_cpu = [], []
    for k in range(args.committee):
        with Meter("train") as meter:
            committee.append(train_mace(train, settings, args.work, f"member_{k}", seed=k))
        train_cpu.append(meter.record.cpu_s)
        print(f"  member {k}: {meter.record.cpu_s:.0f} CPU-s", flush=True)
    with Meter("train") as meter:
        shallow_fit = build_shallow_model(
            committee[0].path, train, args.work / "shallow.model", args.members, seed=0
        )
    shallow_cpu = meter.record.cpu_s
    with Meter("train") as meter:
        gap = train_gap(train, GAPConfig(model="gap", threads=args.threads), args.work, "gap", 0)
    gap_cpu = meter.record.cpu_s

    estimators: dict[str, UncertaintyCalculator] = {
        f"committee (K={args.committee})": CommitteeCalculator([m.path for m in committee]),
        f"shallow ensemble (M={args.members})": ShallowEnsembleCalculator(
            args.work / "shallow.model"
        ),
        "GAP variance": GAPCalculator(gap.path),
    }
    training_cpu = {
        f"committee (K={args.committee})": sum(train_cpu),
        f"shallow ensemble (M={args.members})": train_cpu[0] + shallow_cpu,
        "GAP variance": gap_cpu,
    }
    results: dict[str, Any] = {"estimators": {}}
    curves: dict[str, dict[str, Any]] = {}
    for name, calc in estimators.items():
        print(f"scoring {name} ...", flush=True)
        sigma, errors, _ = evaluate(calc, held_out)
        calibration = calibrate(sigma, errors)
        entry: dict[str, Any] = {
            "training_cpu_s": training_cpu[name],
            "calibration_scale": calibration.scale,
            "calibration_ence_on_held_out": calibration.ence_calibrated,
        }
        for test, frames in tests.items():
            sigma, errors, rmse = evaluate(calc, frames)
            entry[test] = summarize(sigma, errors, calibration.scale, rmse)
            curves.setdefault(test, {})[name] = reliability(sigma, errors, calibration.scale)
            curves[test][name]["frames"] = frame_pairs(sigma, errors, calibration.scale)
        results["estimators"][name] = entry
    results["estimators"][f"shallow ensemble (M={args.members})"]["fit"] = shallow_fit

    print("timing inference ...", flush=True)
    results["inference"] = time_inference(committee[0].path, estimators, tests["test_MD_600K"])

    print("warm start vs scratch ...", flush=True)
    results["warm_start"] = warm_vs_scratch(
        args, settings, committee[0], train + extra, tests, train_cpu[0]
    )
    results["meta"] = metadata(args)
    (args.out / "uncertainty.json").write_text(json.dumps(results, indent=2))
    plot(results, curves, args.out / "uncertainty.png")
    report(results)


def evaluate(
    calc: UncertaintyCalculator, frames: list[Frame]
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, float]]:
    """Raw per-atom uncertainties, per-atom force-error norms and RMSEs."""
    sigma, errors, de, df = [], [], [], []
    scale, calc.scale = calc.scale, 1.0
    for frame in frames:
        atoms = frame.to_atoms(with_labels=False)
        calc.calculate(atoms, ["energy", "forces", "force_deviation"])
        delta = np.asarray(calc.results["forces"]) - np.asarray(frame.forces)
        sigma.append(np.asarray(calc.results["forces_std"]))
        errors.append(np.linalg.norm(delta, axis=1))
        df.append(delta.ravel())
        de.append((calc.results["energy"] - frame.energy) / frame.n_atoms)
    calc.scale = scale
    rmse = {
        "force_rmse": float(np.sqrt(np.mean(np.concatenate(df) ** 2))),
        "energy_rmse_per_atom": float(np.sqrt(np.mean(np.square(de)))),
    }
    return sigma, errors, rmse


def summarize(
    sigma: list[np.ndarray], errors: list[np.ndarray], scale: float, rmse: dict[str, float]
) -> dict[str, float]:
    """Ranking and calibration quality on one test set."""
    from scipy.stats import spearmanr

    frame_sigma = np.array([s.max() for s in sigma]) * scale
    frame_error = np.array([e.max() for e in errors])
    atoms_sigma = np.concatenate(sigma) * scale
    atoms_error = np.concatenate(errors)
    return {
        **rmse,
        "spearman_frame": float(spearmanr(frame_sigma, frame_error)[0]),
        "spearman_atom": float(spearmanr(atoms_sigma, atoms_error)[0]),
        "ence": expected_normalized_calibration_error(atoms_sigma, atoms_error),
        "rmv_over_rmse": float(np.sqrt(np.mean(atoms_sigma**2) / np.mean(atoms_error**2))),
        "n_frames": len(sigma),
    }


def reliability(sigma: list[np.ndarray], errors: list[np.ndarray], scale: float) -> dict:
    """Binned root mean variance vs observed RMSE (per atom), for the figure."""
    s = np.concatenate(sigma) * scale
    e = np.concatenate(errors)
    order = np.argsort(s)
    rmv, rmse = [], []
    for chunk in np.array_split(order, 10):
        rmv.append(float(np.sqrt(np.mean(s[chunk] ** 2))))
        rmse.append(float(np.sqrt(np.mean(e[chunk] ** 2))))
    return {"rmv": rmv, "rmse": rmse}


def frame_pairs(sigma: list[np.ndarray], errors: list[np.ndarray], scale: float) -> list:
    return [[float(s.max() * scale), float(e.max())] for s, e in zip(sigma, errors, strict=True)]


def time_inference(
    single_model: str, estimators: dict[str, UncertaintyCalculator], frames: list[Frame]
) -> dict[str, Any]:
    """Seconds per frame (energy, forces and uncertainty), in interleaved rounds."""
    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        single = MACECalculator(model_paths=single_model, device="cpu", default_dtype="float64")
    sample = [f.to_atoms(with_labels=False) for f in frames[:100]]
    cases: dict[str, Any] = {
        "one MACE model (mace-torch calculator)": (single, ["energy", "forces"]),
        **{
            name: (calc, ["energy", "forces", "force_deviation"])
            for name, calc in estimators.items()
        },
    }
    shallow = next(c for n, c in estimators.items() if n.startswith("shallow"))
    cases["shallow ensemble, mean only (an MD step)"] = (shallow, ["energy", "forces"])
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for name, (calc, props) in cases.items():
            start = time.perf_counter()
            for atoms in sample:
                calc.calculate(atoms.copy(), props)
            times[name].append((time.perf_counter() - start) / len(sample))
    per_frame = {name: float(np.median(t)) for name, t in times.items()}
    reference = per_frame["one MACE model (mace-torch calculator)"]
    return {
        "seconds_per_frame": per_frame,
        "relative_to_one_mace": {n: t / reference for n, t in per_frame.items()},
        "atoms_per_frame": len(sample[0]),
    }


def warm_vs_scratch(
    args: argparse.Namespace,
    settings: MACEConfig,
    previous: Any,
    frames: list[Frame],
    tests: dict[str, list[Frame]],
    previous_cpu: float,
) -> dict[str, Any]:
    """Iteration i+1 trained from scratch and warm-started from iteration i."""
    out: dict[str, Any] = {"n_frames": len(frames), "previous_cpu_s": previous_cpu}
    out["previous"] = {
        test: evaluate(CommitteeCalculator([previous.path] * 2), f)[2] for test, f in tests.items()
    }
    runs: dict[str, Any] = {"scratch": (settings, None)}
    for epochs in args.warm_epochs:
        warm_settings = settings.model_copy(update={"warm_start_epochs": epochs})
        runs[f"warm {epochs} epochs"] = (warm_settings, plan_start(warm_settings, 1, 0, [previous]))
    for name, (config, start) in runs.items():
        with Meter("train") as meter:
            tag = name.replace(" epochs", "").replace(" ", "_")
            record = train_mace(frames, config, args.work, f"next_{tag}", seed=7, start=start)
        calc = CommitteeCalculator([record.path, record.path])  # one model, mean = itself
        out[name] = {
            "epochs": start.epochs if start else config.epochs,
            "cpu_s": meter.record.cpu_s,
            **{test: evaluate(calc, f)[2] for test, f in tests.items()},
        }
        print(f"  {name}: {meter.record.cpu_s:.0f} CPU-s", flush=True)
        if name != "scratch":
            out[name]["cpu_ratio_to_scratch"] = out[name]["cpu_s"] / out["scratch"]["cpu_s"]
    return out


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    return run_metadata(
        threads=args.threads,
        n_train=args.n_train,
        epochs=args.epochs,
        warm_epochs=args.warm_epochs,
    )


def plot(results: dict[str, Any], curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, curve in curves["test_MD_600K"].items():
        pairs = np.array(curve["frames"])
        axes[0].scatter(pairs[:, 0], pairs[:, 1], s=4, alpha=0.4, label=name)
        axes[1].plot(curve["rmv"], curve["rmse"], "o-", label=name)
    top = max(max(c["rmse"] + c["rmv"]) for c in curves["test_MD_600K"].values())
    axes[1].plot([0, top], [0, top], "k--", lw=1, label="perfect calibration")
    axes[0].set(
        xlabel="predicted max force uncertainty (eV/Å, calibrated)",
        ylabel="true max force error (eV/Å)",
        title="test_MD_600K: frames",
        xscale="log",
        yscale="log",
    )
    axes[1].set(
        xlabel="root mean predicted variance per bin (eV/Å)",
        ylabel="observed RMSE per bin (eV/Å)",
        title="test_MD_600K: reliability (atoms)",
    )
    relative = results["inference"]["relative_to_one_mace"]
    axes[2].barh(list(relative), list(relative.values()))
    axes[2].axvline(1.0, color="k", lw=1)
    axes[2].set(xlabel="inference cost per frame / one MACE model", title="cost")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    meta = results["meta"]
    fig.suptitle(
        f"alflow uncertainty benchmark — {meta['commit']}, {meta['date']}, {meta['machine']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(results: dict[str, Any]) -> None:
    print("\nestimator                       test        Spearman(frame)  ENCE   RMV/RMSE")
    for name, entry in results["estimators"].items():
        for test in TESTS:
            r = entry[test]
            print(
                f"{name:31s} {test[8:]:10s}  {r['spearman_frame']:6.2f}          "
                f"{r['ence']:.2f}   {r['rmv_over_rmse']:.2f}"
            )
    print("\ninference cost per frame relative to one MACE model:")
    for name, ratio in results["inference"]["relative_to_one_mace"].items():
        print(f"  {name:45s} {ratio:5.2f}x")
    warm = results["warm_start"]
    print(f"\nnext iteration ({warm['n_frames']} frames): warm start vs scratch")
    for name, run in warm.items():
        if not isinstance(run, dict) or name == "previous":
            continue
        ratio = run.get("cpu_ratio_to_scratch", 1.0)
        errors = ", ".join(
            f"{t[8:]} F {run[t]['force_rmse'] * 1000:.0f} meV/Å E "
            f"{run[t]['energy_rmse_per_atom'] * 1000:.1f} meV/atom"
            for t in TESTS
        )
        print(f"  {name:20s} {ratio:4.2f}x CPU  {errors}")
    errors = ", ".join(f"{t[8:]} F {warm['previous'][t]['force_rmse'] * 1000:.0f}" for t in TESTS)
    print(f"  previous model (no retraining): {errors}")


if __name__ == "__main__":
    main()
