"""Selection at scale: 100,000 candidate frames of 64 atoms on 2 cores.

Candidates are 64-atom diamond-silicon cells, each rattled (0.02-0.25 Å) and
strained (±3 %), standing in for a large MD harvest; the training set is 200 such
frames. Their uncertainties are synthetic (proportional to the rattle amplitude with
log-normal noise) because only the selection is timed here. The full policy runs
through the same code as the SelectMaker: window, SOAP per atom (dscribe, float32,
in chunks), novelty against a farthest-point-reduced training reference, SOAP
farthest-point sampling of the frames, cap. Time and peak memory (this process and
dscribe's worker processes) are measured; ``--all-in-window`` also times the worst
case where every frame is a candidate.

Run ``python benchmarks/selection.py``; results go to
``benchmarks/results/selection.json`` and ``selection.png``.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json

from alflow.select.policy import select_frames
from alflow.select.soap import SOAPDescriptor, SOAPSettings, score_candidates
from alflow.select.window import in_window

HERE = Path(__file__).resolve().parent


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--training", type=int, default=200)
    parser.add_argument("--cap", type=int, default=50)
    parser.add_argument("--lo", type=float, default=0.05)
    parser.add_argument("--hi", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=2, help="dscribe processes")
    parser.add_argument("--all-in-window", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def silicon_frames(n: int, seed: int) -> tuple[list[Any], np.ndarray]:
    """``n`` rattled and strained 64-atom Si cells and their rattle amplitudes."""
    from ase import Atoms
    from ase.build import bulk

    base = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.02, 0.25, n)
    frames = []
    for k in range(n):
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        cell = base.cell.array @ strain
        positions = base.positions @ strain + rng.normal(0, amplitude[k], (64, 3))
        frames.append(Atoms(base.numbers, positions=positions, cell=cell, pbc=True))
    return frames, amplitude


def run(args: argparse.Namespace, all_in_window: bool) -> dict[str, Any]:
    start = time.perf_counter()
    candidates, amplitude = silicon_frames(args.frames, seed=1)
    training, _ = silicon_frames(args.training, seed=2)
    rng = np.random.default_rng(3)
    deviations = 2.0 * amplitude * rng.lognormal(0.0, 0.5, len(amplitude))
    lo, hi = (0.0, np.inf) if all_in_window else (args.lo, args.hi)
    generated = time.perf_counter() - start

    start = time.perf_counter()
    pool = np.flatnonzero(in_window(deviations, lo, hi))
    settings = SOAPSettings(n_jobs=args.jobs)
    soap = SOAPDescriptor([14], settings, periodic=True)
    scores = score_candidates(soap, [candidates[i] for i in pool], training)
    scored = time.perf_counter() - start
    start = time.perf_counter()
    picks = select_frames(
        "alflow",
        deviations[pool],
        scores.vectors,
        lo,
        hi,
        args.cap,
        reference=scores.training_vectors,
        novelty=scores.novelty,
    )
    picked = time.perf_counter() - start
    chosen = [int(pool[p.index]) for p in picks]
    return {
        "frames": args.frames,
        "atoms_per_frame": 64,
        "in_window": len(pool),
        "selected": len(picks),
        "soap_settings": settings.model_dump(),
        "descriptor_size": soap.size,
        "seconds": {"soap_and_novelty": scored, "fps_and_cap": picked},
        "seconds_total": scored + picked,
        "seconds_generating_candidates": generated,
        "novelty_all": scores.novelty.tolist()[:5000],
        "novelty_selected": [float(scores.novelty[p.index]) for p in picks],
        "amplitude_selected": [float(amplitude[i]) for i in chosen],
        "amplitude_all_mean": float(amplitude.mean()),
    }


def main() -> None:
    args = arguments()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"window": run(args, all_in_window=False)}
    if args.all_in_window:
        results["all_in_window"] = run(args, all_in_window=True)
    results["peak_memory_gib"] = {
        "process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "largest_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
    }
    results["meta"] = run_metadata(jobs=args.jobs)
    write_json(args.out / "selection.json", results, indent=1)
    plot(results, args.out / "selection.png")
    for name in ("window", "all_in_window"):
        if name in results:
            r = results[name]
            print(
                f"{name}: {r['frames']} frames x 64 atoms, {r['in_window']} in the window, "
                f"{r['selected']} selected in {r['seconds_total']:.0f} s "
                f"(SOAP+novelty {r['seconds']['soap_and_novelty']:.0f} s, "
                f"FPS {r['seconds']['fps_and_cap']:.1f} s)"
            )
    memory = results["peak_memory_gib"]
    print(
        f"peak memory: {memory['process']:.2f} GiB (process), "
        f"{memory['largest_worker']:.2f} GiB (largest dscribe worker)"
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["window"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = [n for n in ("window", "all_in_window") if n in results]
    bottom = np.zeros(len(names))
    for stage in ("soap_and_novelty", "fps_and_cap"):
        values = np.array([results[n]["seconds"][stage] for n in names])
        axes[0].bar(names, values, bottom=bottom, label=stage)
        bottom += values
    axes[0].axhline(120, color="k", ls="--", lw=1, label="target 2 min")
    axes[0].set(ylabel="seconds", title=f"{r['frames']} frames x 64 atoms, 2 cores")
    axes[0].legend()
    axes[1].hist(r["novelty_all"], bins=50, alpha=0.6, density=True, label="candidates")
    axes[1].hist(r["novelty_selected"], bins=20, alpha=0.6, density=True, label="selected")
    axes[1].set(xlabel="SOAP novelty", ylabel="density", title="novelty")
    axes[1].legend()
    meta = results["meta"]
    save_figure(fig, "alflow selection benchmark", meta, path)


if __name__ == "__main__":
    main()
