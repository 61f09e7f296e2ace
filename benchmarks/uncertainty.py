"""Uncertainty estimators side by side, and warm start vs retraining from scratch.

On acetylacetone (BOTNet datasets, ``../shared/data/acac``): train on the first
``--n-train`` frames of ``train_300K.xyz``; calibrate each estimator on 50 other
frames of that file; test on ``test_MD_300K.xyz`` and ``test_MD_600K.xyz``.

Estimators: a committee of K=4 MACE models, a shallow ensemble on member 0 of the
committee (same backbone, so the comparison isolates the estimator) with alflow's
default closed-form fit and, for comparison, with the NLL fit, and a GAP.
Each estimator is calibrated per element on the held-out frames, as a campaign
does. For each: Spearman correlation (with a 95 % bootstrap interval) between the
predicted frame uncertainty (alflow's ``force_deviation``: the expected max force
error given the calibrated per-atom uncertainties) and the true max force error of
the mean prediction; the same for DP-GEN's measure (max over atoms of the
calibrated per-atom uncertainty) and with one factor for all elements, for
comparison; calibration (ENCE and the ratio of root mean predicted variance to
observed MSE, per atom); inference cost per frame relative to one MACE model, all
measured in this one run.

Warm start: committee members 0..``--warm-seeds``-1 play iteration 0 of as many
chains. Each of ``--warm-iterations`` further iterations adds ``--n-extra`` frames.
One branch of a chain retrains from scratch every iteration (``--epochs``); the
other continues from its own previous iteration's weights for ``--warm-epochs``, as
a campaign with ``train.warm_start_epochs`` does; both with the chain's seed. The
CPU time of the iterations after the first and the final test errors (mean over
chains) are compared.

Run ``python benchmarks/uncertainty.py`` (about 25 minutes on 2 cores); results go
to ``benchmarks/results/uncertainty.json`` and ``uncertainty.png``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json

from alflow.accounting import Meter
from alflow.config import GAPConfig, MACEConfig
from alflow.frames import Frame, read_frames
from alflow.train.gap import train_gap
from alflow.train.mace import plan_start, train_mace
from alflow.train.shallow import build_shallow_model
from alflow.uncertainty.base import UncertaintyCalculator
from alflow.uncertainty.calibrate import (
    atom_factors,
    calibrate,
    expected_normalized_calibration_error,
)
from alflow.uncertainty.committee import CommitteeCalculator
from alflow.uncertainty.frame_error import expected_max_error
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
    parser.add_argument("--n-extra", type=int, default=25, help="new frames per iteration")
    parser.add_argument("--warm-iterations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--warm-epochs", type=int, default=12)
    parser.add_argument("--warm-seeds", type=int, default=2, help="warm/scratch chains")
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
    extra = pool[args.n_train : args.n_train + args.n_extra * args.warm_iterations]
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
    shallow_names = {
        "rigidity": f"shallow ensemble (M={args.members})",
        "nll": f"shallow ensemble (M={args.members}, NLL fit)",
    }
    shallow_fits, shallow_cpu = {}, {}
    for method, name in shallow_names.items():
        with Meter("train") as meter:
            shallow_fits[name] = build_shallow_model(
                committee[0].path,
                train,
                args.work / f"shallow-{method}.model",
                args.members,
                seed=0,
                method=method,
            )
        shallow_cpu[name] = meter.record.cpu_s
    with Meter("train") as meter:
        gap = train_gap(train, GAPConfig(model="gap", threads=args.threads), args.work, "gap", 0)
    gap_cpu = meter.record.cpu_s

    estimators: dict[str, UncertaintyCalculator] = {
        f"committee (K={args.committee})": CommitteeCalculator([m.path for m in committee]),
        **{
            name: ShallowEnsembleCalculator(args.work / f"shallow-{method}.model")
            for method, name in shallow_names.items()
        },
        "GAP variance": GAPCalculator(gap.path),
    }
    training_cpu = {
        f"committee (K={args.committee})": sum(train_cpu),
        **{name: train_cpu[0] + cpu for name, cpu in shallow_cpu.items()},
        "GAP variance": gap_cpu,
    }
    results: dict[str, Any] = {"estimators": {}}
    curves: dict[str, dict[str, Any]] = {}
    for name, calc in estimators.items():
        print(f"scoring {name} ...", flush=True)
        sigma, errors, _ = evaluate(calc, held_out)
        calibration = calibrate(sigma, errors, [f.symbols for f in held_out])
        entry: dict[str, Any] = {
            "training_cpu_s": training_cpu[name],
            "calibration_scale": calibration.scale,
            "calibration_element_scales": calibration.element_scales,
            "calibration_ence_on_held_out": calibration.ence_calibrated,
        }
        for test, frames in tests.items():
            sigma, errors, rmse = evaluate(calc, frames)
            factors = [
                atom_factors(f.symbols, calibration.scale, calibration.element_scales)
                for f in frames
            ]
            entry[test] = summarize(sigma, errors, factors, rmse)
            # the same with one factor for every element, for comparison
            one_factor = [np.full(len(s), calibration.scale) for s in sigma]
            plain = summarize(sigma, errors, one_factor, rmse)
            entry[test]["spearman_frame_one_factor"] = plain["spearman_frame"]
            curves.setdefault(test, {})[name] = reliability(sigma, errors, factors)
            curves[test][name]["frames"] = frame_pairs(sigma, errors, factors)
        results["estimators"][name] = entry
    for name, fit in shallow_fits.items():
        results["estimators"][name]["fit"] = fit

    print("timing inference ...", flush=True)
    results["inference"] = time_inference(committee[0].path, estimators, tests["test_MD_600K"])

    print("warm start vs scratch ...", flush=True)
    results["warm_start"] = warm_vs_scratch(
        args, settings, committee, train, extra, tests, train_cpu
    )
    results["curves"] = curves  # what the figure shows, so that it can be checked
    results["meta"] = metadata(args)
    write_json(args.out / "uncertainty.json", results, indent=2)
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
    sigma: list[np.ndarray],
    errors: list[np.ndarray],
    factors: list[np.ndarray],
    rmse: dict[str, float],
) -> dict[str, float]:
    """Ranking and calibration quality on one test set (``factors``: per atom)."""
    from scipy.stats import spearmanr

    calibrated = [s * f for s, f in zip(sigma, factors, strict=True)]
    frame_sigma = np.array([expected_max_error(s) for s in calibrated])
    frame_error = np.array([e.max() for e in errors])
    atoms_sigma = np.concatenate(calibrated)
    atoms_error = np.concatenate(errors)
    low, high = spearman_interval(frame_sigma, frame_error)
    return {
        **rmse,
        "spearman_frame": float(spearmanr(frame_sigma, frame_error)[0]),
        "spearman_frame_95ci": [low, high],
        "spearman_frame_max_sigma": float(spearmanr([s.max() for s in calibrated], frame_error)[0]),
        "spearman_atom": float(spearmanr(atoms_sigma, atoms_error)[0]),
        "ence": expected_normalized_calibration_error(atoms_sigma, atoms_error),
        "rmv_over_rmse": float(np.sqrt(np.mean(atoms_sigma**2) / np.mean(atoms_error**2))),
        "n_frames": len(sigma),
    }


def spearman_interval(
    predicted: np.ndarray, observed: np.ndarray, resamples: int = 2000
) -> tuple[float, float]:
    """95 % bootstrap interval of the Spearman correlation (frames resampled)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(predicted), len(predicted))
        values.append(spearmanr(predicted[pick], observed[pick])[0])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def reliability(
    sigma: list[np.ndarray], errors: list[np.ndarray], factors: list[np.ndarray]
) -> dict:
    """Binned root mean variance vs observed RMSE (per atom), for the figure."""
    s = np.concatenate(sigma) * np.concatenate(factors)
    e = np.concatenate(errors)
    order = np.argsort(s)
    rmv, rmse = [], []
    for chunk in np.array_split(order, 10):
        rmv.append(float(np.sqrt(np.mean(s[chunk] ** 2))))
        rmse.append(float(np.sqrt(np.mean(e[chunk] ** 2))))
    return {"rmv": rmv, "rmse": rmse}


def frame_pairs(
    sigma: list[np.ndarray], errors: list[np.ndarray], factors: list[np.ndarray]
) -> list:
    return [
        [expected_max_error(s * f), float(e.max())]
        for s, e, f in zip(sigma, errors, factors, strict=True)
    ]


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
    for _ in range(7):  # interleaved rounds; the median resists a busy machine
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
    committee: list[Any],
    train: list[Frame],
    extra: list[Frame],
    tests: dict[str, list[Frame]],
    committee_cpu: list[float],
) -> dict[str, Any]:
    """Retrained from scratch vs warm-started, for ``--warm-seeds`` chains side by side.

    Chain k starts from committee member k (seed k): both of its branches train with
    seed k, so that the comparison is not one between lucky and unlucky seeds
    (single MACE models of this size differ by 10-15 % in test error by seed alone).
    """
    warm_settings = settings.model_copy(update={"warm_start_epochs": args.warm_epochs})
    chains = []
    for k in range(args.warm_seeds):
        first = committee[k]
        chain: dict[str, Any] = {
            "seed": k,
            "first": {
                "n_frames": len(train),
                "cpu_s": committee_cpu[k],
                **test_errors(first, tests),
            },
            "iterations": [],
        }
        parent = first
        for iteration in range(1, args.warm_iterations + 1):
            frames = train + extra[: iteration * args.n_extra]
            row: dict[str, Any] = {"iteration": iteration, "n_frames": len(frames)}
            with Meter("train") as meter:
                scratch = train_mace(frames, settings, args.work, f"scratch_{k}_{iteration}", k)
            row["scratch"] = {"cpu_s": meter.record.cpu_s, **test_errors(scratch, tests)}
            start = plan_start(warm_settings, iteration, 0, [parent])
            with Meter("train") as meter:
                parent = train_mace(
                    frames, settings, args.work, f"warm_{k}_{iteration}", k, start=start
                )
            row["warm"] = {"cpu_s": meter.record.cpu_s, **test_errors(parent, tests)}
            print(
                f"  seed {k} iteration {iteration}: scratch {row['scratch']}, warm {row['warm']}",
                flush=True,
            )
            chain["iterations"].append(row)
        chains.append(chain)
    return {"chains": chains, "summary": warm_summary(chains, list(tests))}


def warm_summary(chains: list[dict[str, Any]], tests: list[str]) -> dict[str, Any]:
    """CPU of all warm iterations over all scratch iterations; final errors, mean over seeds."""
    rows = [row for chain in chains for row in chain["iterations"]]
    summary: dict[str, Any] = {
        "cpu_ratio": sum(r["warm"]["cpu_s"] for r in rows)
        / sum(r["scratch"]["cpu_s"] for r in rows),
        "seeds": len(chains),
    }
    for test in tests:
        for branch in ("scratch", "warm"):
            finals = [chain["iterations"][-1][branch][test]["force_rmse"] for chain in chains]
            summary[f"{test}_{branch}_force_rmse"] = float(np.mean(finals))
        summary[f"{test}_force_rmse_ratio"] = (
            summary[f"{test}_warm_force_rmse"] / summary[f"{test}_scratch_force_rmse"]
        )
    return summary


def test_errors(record: Any, tests: dict[str, list[Frame]]) -> dict[str, Any]:
    """Test RMSEs of one model (a committee of the model with itself: mean = model)."""
    calc = CommitteeCalculator([record.path, record.path])
    return {test: evaluate(calc, frames)[2] for test, frames in tests.items()}


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    return run_metadata(
        threads=args.threads,
        n_train=args.n_train,
        epochs=args.epochs,
        warm_epochs=args.warm_epochs,
        warm_iterations=args.warm_iterations,
        warm_seeds=args.warm_seeds,
        n_extra=args.n_extra,
        # the GAP estimator's settings: GAPConfig's defaults, which change over time
        gap=GAPConfig(model="gap").model_dump(mode="json", exclude={"model", "threads"}),
    )


def plot(results: dict[str, Any], curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for name, curve in curves["test_MD_600K"].items():
        pairs = np.array(curve["frames"])
        axes[0].scatter(pairs[:, 0], pairs[:, 1], s=4, alpha=0.4, label=name)
        axes[1].plot(curve["rmv"], curve["rmse"], "o-", label=name)
    top = max(max(c["rmse"] + c["rmv"]) for c in curves["test_MD_600K"].values())
    axes[1].plot([0, top], [0, top], "k--", lw=1, label="perfect calibration")
    axes[0].set(
        xlabel="predicted max force error (eV/Å, calibrated)",
        ylabel="true max force error (eV/Å)",
        title="test_MD_600K: frames",
        xscale="log",
        yscale="log",
    )
    from matplotlib.ticker import NullFormatter

    axes[0].xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap
    axes[0].yaxis.set_minor_formatter(NullFormatter())
    axes[1].set(
        xlabel="root mean predicted variance per bin (eV/Å)",
        ylabel="observed RMSE per bin (eV/Å)",
        title="test_MD_600K: reliability (atoms)",
    )
    relative = results["inference"]["relative_to_one_mace"]
    axes[2].barh(list(relative), list(relative.values()))
    axes[2].axvline(1.0, color="k", lw=1)
    axes[2].set(xlabel="inference cost per frame / one MACE model", title="cost")
    warm = results["warm_start"]
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for chain in warm["chains"]:
        colour = colours[chain["seed"] % len(colours)]
        for branch, marker in (("scratch", "o-"), ("warm", "s--")):
            cpu = np.cumsum([row[branch]["cpu_s"] for row in chain["iterations"]])
            error = [
                row[branch]["test_MD_600K"]["force_rmse"] * 1000 for row in chain["iterations"]
            ]
            label = f"{branch}, seed {chain['seed']}"
            axes[3].plot(cpu, error, marker, color=colour, label=label)
    axes[3].set(
        xlabel="cumulative training CPU-s after iteration 0",
        ylabel="test_MD_600K force RMSE (meV/Å)",
        title="warm start vs retraining",
    )
    for ax in (axes[0], axes[1], axes[3]):
        ax.legend(fontsize=7)
    meta = results["meta"]
    save_figure(fig, "alflow uncertainty benchmark", meta, path)


def report(results: dict[str, Any]) -> None:
    print(
        "\nestimator                       test    Spearman(frame) [95% CI]  "
        "(max sigma) (one factor)  ENCE   RMV/RMSE"
    )
    for name, entry in results["estimators"].items():
        for test in TESTS:
            r = entry[test]
            low, high = r["spearman_frame_95ci"]
            print(
                f"{name:31s} {test[8:]:7s} {r['spearman_frame']:6.2f} [{low:.2f}, {high:.2f}]"
                f"        {r['spearman_frame_max_sigma']:6.2f}      "
                f"{r['spearman_frame_one_factor']:6.2f}      {r['ence']:.2f}   "
                f"{r['rmv_over_rmse']:.2f}"
            )
    print("\ninference cost per frame relative to one MACE model:")
    for name, ratio in results["inference"]["relative_to_one_mace"].items():
        print(f"  {name:45s} {ratio:5.2f}x")
    warm = results["warm_start"]
    print(f"\nwarm start vs scratch, iterations after the first ({args_frames(warm)} frames)")
    for chain in warm["chains"]:
        for row in chain["iterations"]:
            for branch in ("scratch", "warm"):
                run = row[branch]
                errors = ", ".join(
                    f"{t[8:]} F {run[t]['force_rmse'] * 1000:.0f} meV/Å" for t in TESTS
                )
                print(
                    f"  seed {chain['seed']} iteration {row['iteration']} ({row['n_frames']} "
                    f"frames) {branch:8s} {run['cpu_s']:6.0f} CPU-s  {errors}"
                )
    summary = warm["summary"]
    ratios = ", ".join(f"{t[8:]} {summary[f'{t}_force_rmse_ratio']:.2f}" for t in TESTS)
    print(
        f"  warm/scratch over {summary['seeds']} seeds: CPU {summary['cpu_ratio']:.2f}x; "
        f"final force RMSE (mean over seeds) {ratios}"
    )


def args_frames(warm: dict[str, Any]) -> int:
    return warm["chains"][0]["first"]["n_frames"]


if __name__ == "__main__":
    main()
