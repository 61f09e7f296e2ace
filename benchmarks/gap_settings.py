"""What a GAP's settings cost and buy: fit time, memory, evaluation time and error.

A campaign with ``train.model: gap`` fits alflow's 2-body + SOAP GAP (``GAPConfig``)
after every labelling step, and with it drives MD and ranks frames. This script fits
that GAP with several settings on the same random frames of a labelled dataset and
measures, for each fit: the wall time and energy of ``gap_fit`` (metered as a
campaign meters it), its peak memory, the time to evaluate energies and forces of
one frame (what MD and scoring pay at every step) and the force and energy errors on
the dataset's tests. The settings (``SETTINGS``) are alflow's defaults before
``default_sigma`` was tightened, each change alone (the tight ``default_sigma`` is
today's default), and all changes together (the richer GAP the data-efficiency
replays score with ``--gap``).

Every fit runs in a fresh process, so the peak memory is that fit's gap_fit alone,
above a floor: quippy's ``gap_fit`` launcher is a Python process that imports quippy,
and a child's high-water mark can start at its parent's (the worker's own is kept as
``worker_peak_gib``), so small fits all read about 0.15 GiB whatever their settings.

Run ``python benchmarks/gap_settings.py``; results go to
``benchmarks/results/gap_settings.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json
from data_efficiency import load_dataset, plain_log_ticks, scored_errors

from alflow.accounting import EnergyModel, Meter
from alflow.config import GAPConfig
from alflow.frames import Frame
from alflow.train.gap import train_gap

HERE = Path(__file__).resolve().parent

#: The defaults before ``default_sigma`` changed to today's (0.002, 0.04, 0), and each
#: change alone and together, spelled out so that they keep their meaning when
#: GAPConfig's defaults change. (Results written before, at a4536c6, name the first
#: one ``default``.)
OLD_SIGMA = (0.005, 0.1, 0.0)
LARGER_SOAP = {"soap_l_max": 6, "soap_n_max": 8, "soap_cutoff": 5.0}
SETTINGS: dict[str, dict[str, Any]] = {
    "old defaults": {"default_sigma": OLD_SIGMA},
    "tight sigma": {"default_sigma": (0.002, 0.04, 0.0)},
    "1000 sparse": {"default_sigma": OLD_SIGMA, "soap_n_sparse": 1000},
    "larger SOAP": {"default_sigma": OLD_SIGMA, **LARGER_SOAP},
    "all": {"default_sigma": (0.002, 0.04, 0.0), "soap_n_sparse": 1000, **LARGER_SOAP},
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["acac", "si"])
    parser.add_argument(
        "--labels", type=int, nargs="+", default=[25, 100], help="random frames per fit"
    )
    parser.add_argument("--seeds", type=int, default=2, help="random draws of the frames")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument(
        "--test-every",
        type=int,
        help="use every n-th test frame (default: 5 for acac's 650-frame tests, else 1, "
        "as the data-efficiency tables)",
    )
    parser.add_argument("--threads", type=int, default=2, help="gap_fit's OpenMP threads")
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-gap-settings"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def scored_every(dataset: str, given: int | None) -> int:
    """Every n-th test frame is scored: ``given``, else 5 for acac, else 1."""
    if given is not None:
        return given
    return 5 if dataset == "acac" else 1


def random_frames(pool: list[Frame], count: int, seed: int) -> list[Frame]:
    """``count`` pool frames drawn without replacement; the same for every setting."""
    picks = np.random.default_rng(seed).permutation(len(pool))[:count]
    return [pool[i] for i in sorted(picks)]


def scored_errors_and_time(model: Path, tests: dict[str, list[Frame]]) -> dict[str, Any]:
    """Force and energy RMSE on each test, and the evaluation time per frame (one
    energy and forces call, what an MD step pays; quippy's per-call overhead makes it
    far from proportional to the atoms)."""
    from quippy.potential import Potential

    calc = Potential(param_filename=str(model))
    start = time.perf_counter()
    errors = scored_errors(calc, tests)
    seconds = time.perf_counter() - start
    calls = sum(len(frames) for frames in tests.values())
    return {"tests": errors, "eval_ms_per_frame": 1e3 * seconds / calls}


def fit_and_score(
    frames: list[Frame],
    tests: dict[str, list[Frame]],
    settings: GAPConfig,
    folder: Path,
    seed: int,
) -> dict[str, Any]:
    """One fit, metered, in this (fresh) process: cost, peak memory and errors."""
    # a forked child can start at its parent's high-water mark: kept to read the peak by
    worker_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Meter("train", "gap_fit", EnergyModel()) as meter:
        record = train_gap(frames, settings, folder, "gap", seed)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {
        "fit_wall_s": meter.record.wall_s,
        "fit_kwh": meter.record.energy_kwh,
        "fit_peak_gib": peak_kib / 2**20,
        "worker_peak_gib": worker_kib / 2**20,
        **scored_errors_and_time(Path(record.path), tests),
    }


def run_fit(
    pool: list[Frame],
    tests: dict[str, list[Frame]],
    where: Path,
    labels: int,
    seed: int,
    setting: str,
    threads: int,
    every: int,
) -> dict[str, Any]:
    """The fit of ``setting`` on ``labels`` random frames (``seed``) in a new process,
    scored on every ``every``-th test frame, or its result from ``where`` if it
    finished before with the same settings and scoring (so an interrupted run resumes
    where it stopped)."""
    settings = GAPConfig(model="gap", threads=threads, **SETTINGS[setting])
    folder = where / f"{setting.replace(' ', '_')}_{labels}_{seed}"
    done = folder.with_suffix(".json")
    key = {"gap_config": settings.model_dump(mode="json"), "test_every": every}
    if done.is_file():
        earlier = json.loads(done.read_text())
        if earlier.get("key") == key and set(earlier["result"]) >= RESULT_KEYS:
            return earlier["result"]
    frames = random_frames(pool, labels, seed)
    # a fresh process per fit: RUSAGE_CHILDREN's peak is then this fit's gap_fit alone
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as executor:
        result = executor.submit(fit_and_score, frames, tests, settings, folder, seed).result()
    write_json(done, {"key": key, "result": result})  # atomic: never a half-written result
    return result


#: What a kept result must hold to be reused (older runs kept other fields).
RESULT_KEYS = {
    "fit_wall_s",
    "fit_kwh",
    "fit_peak_gib",
    "worker_peak_gib",
    "tests",
    "eval_ms_per_frame",
}


def main() -> None:
    args = arguments()
    # quippy's evaluation in the spawned workers uses as many threads as gap_fit
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    started = time.perf_counter()
    meta = run_metadata(
        threads=args.threads,
        seeds=args.seeds,
        test_every={d: scored_every(d, args.test_every) for d in args.datasets},
        settings={name: SETTINGS[name] for name in args.settings},
    )
    fits = []
    total = len(args.datasets) * len(args.labels) * args.seeds * len(args.settings)
    for dataset in args.datasets:
        _, pool, tests = load_dataset(dataset, scored_every(dataset, args.test_every))
        if max(args.labels) > len(pool):
            raise SystemExit(
                f"--labels {max(args.labels)}: the {dataset} pool has only {len(pool)} frames"
            )
        for labels in args.labels:
            for seed in range(args.seeds):
                for setting in args.settings:
                    result = run_fit(
                        pool,
                        tests,
                        args.work / dataset,
                        labels,
                        seed,
                        setting,
                        args.threads,
                        scored_every(dataset, args.test_every),
                    )
                    fits.append(
                        {"dataset": dataset, "labels": labels, "seed": seed, "setting": setting}
                        | result
                    )
                    print(f"[{len(fits)}/{total}] " + fit_line(fits[-1]), flush=True)
    results = {
        "meta": meta,
        "wall_s": time.perf_counter() - started,
        "fits": fits,
        "summary": summarise(fits),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "gap_settings.json", results, indent=1)
    report(results["summary"])
    plot(results, args.out / "gap_settings.png")


def fit_line(fit: dict[str, Any]) -> str:
    """One fit's errors and costs, as progress."""
    forces = ", ".join(f"{t} F {v['force_rmse'] * 1000:.0f}" for t, v in fit["tests"].items())
    return (
        f"{fit['dataset']} {fit['labels']} frames seed {fit['seed']} {fit['setting']}: "
        f"{forces} meV/Å; fit {fit['fit_wall_s']:.0f} s, {fit['fit_peak_gib']:.2f} GiB; "
        f"eval {fit['eval_ms_per_frame']:.0f} ms/frame"
    )


def summarise(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed means per (dataset, labels, setting), in the order the fits ran."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for fit in fits:
        groups.setdefault((fit["dataset"], fit["labels"], fit["setting"]), []).append(fit)
    rows = []
    for (dataset, labels, setting), members in groups.items():
        tests = members[0]["tests"]
        rows.append(
            {
                "dataset": dataset,
                "labels": labels,
                "setting": setting,
                "seeds": len(members),
                **{
                    key: float(np.mean([m[key] for m in members]))
                    for key in ("fit_wall_s", "fit_kwh", "fit_peak_gib", "eval_ms_per_frame")
                },
                "tests": {
                    test: {
                        key: float(np.mean([m["tests"][test][key] for m in members]))
                        for key in ("force_rmse", "energy_rmse_per_atom")
                    }
                    for test in tests
                },
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    """A Markdown table of the seed means, as the README shows it."""
    print(
        "\n| dataset | frames | setting | force RMSE (meV/Å) | energy RMSE (meV/atom) "
        "| fit (s) | peak (GiB) | eval (ms/frame) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        forces = " / ".join(f"{v['force_rmse'] * 1000:.0f}" for v in row["tests"].values())
        energies = " / ".join(
            f"{v['energy_rmse_per_atom'] * 1000:.1f}" for v in row["tests"].values()
        )
        print(
            f"| {row['dataset']} | {row['labels']} | {row['setting']} | {forces} | {energies} "
            f"| {row['fit_wall_s']:.1f} | {row['fit_peak_gib']:.2f} "
            f"| {row['eval_ms_per_frame']:.0f} |"
        )


def plot(results: dict[str, Any], path: Path) -> None:
    """Per dataset and test: force RMSE against gap_fit's wall time, one colour per
    setting, one marker per frame count; last panel: gap_fit's peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["summary"]
    panels = [(d, t) for d in dict.fromkeys(r["dataset"] for r in rows) for t in _tests(rows, d)]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    counts = sorted({r["labels"] for r in rows})
    markers = dict(zip(counts, itertools.cycle("os^vD"), strict=False))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 4))
    for ax, (dataset, test) in zip(axes, panels, strict=False):
        for row in (r for r in rows if r["dataset"] == dataset):
            ax.scatter(
                row["fit_wall_s"],
                1000 * row["tests"][test]["force_rmse"],
                marker=markers[row["labels"]],
                color=f"C{settings.index(row['setting'])}",
            )
        ax.set(xscale="log", xlabel="gap_fit wall time (s)", ylabel="force RMSE (meV/Å)")
        plain_log_ticks(ax)
        ax.set_title(f"{dataset}: {test}", fontsize=9)
    ax = axes[-1]
    datasets = dict(zip(dict.fromkeys(r["dataset"] for r in rows), itertools.cycle("PXd*")))
    for row in rows:
        ax.scatter(
            row["labels"],
            row["fit_peak_gib"],
            marker=datasets[row["dataset"]],
            color=f"C{settings.index(row['setting'])}",
        )
    ax.set(xlabel="frames", ylabel="gap_fit peak memory (GiB)")
    ax.set_title("memory (marker: dataset)", fontsize=9)
    ax.legend(
        handles=[
            plt.Line2D([], [], color="0.4", marker=m, linestyle="", label=d)
            for d, m in datasets.items()
        ],
        fontsize=7,
    )
    legend = [
        plt.Line2D([], [], color=f"C{i}", marker="o", linestyle="", label=setting)
        for i, setting in enumerate(settings)
    ] + [
        plt.Line2D([], [], color="0.4", marker=markers[n], linestyle="", label=f"{n} frames")
        for n in counts
    ]
    axes[0].legend(handles=legend, fontsize=7)
    save_figure(fig, "GAP settings: error against cost", results["meta"], path)


def _tests(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    return list(next(r for r in rows if r["dataset"] == dataset)["tests"])


if __name__ == "__main__":
    main()
