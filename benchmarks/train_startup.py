"""What starting a MACE training costs: a new interpreter per training vs the fork server.

Every training runs mace-torch in its own process. Started as a new interpreter
(``ALFLOW_NO_FORKSERVER=1``), each pays for importing torch, e3nn and mace-torch;
forked from alflow's fork server (the default, :mod:`alflow.train.forkserver`),
only the first does. The same small MACE model (alflow's defaults: 16 channels,
r_max 4, 2 interactions) is trained both ways on 32-atom fcc Cu cells with EMT
labels, from scratch (``--epochs``, at least ``--min-steps`` steps) and as a warm
start (``--warm-epochs`` from a trained model), on ``--frames`` frames, in
interleaved rounds. Each training is metered as a campaign meters it (CPU of the
training process and of the server, wall time); the first training through the
server, which starts it, is reported on its own.

Run ``python benchmarks/train_startup.py``; results go to
``benchmarks/results/train_startup.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json

from alflow.accounting import Meter
from alflow.config import MACEConfig
from alflow.frames import Frame
from alflow.train.mace import StartPoint, train_mace

HERE = Path(__file__).resolve().parent
WAYS = ("new interpreter", "fork server")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[14, 38])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--min-steps", type=int, default=150)
    parser.add_argument("--warm-epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-train-startup"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def copper_frames(count: int) -> list[Frame]:
    """Rattled 32-atom fcc Cu cells (±2 % strain) with EMT energies and forces."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        atoms = atoms * (2, 2, 2)
        atoms.rattle(0.08, seed=i)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(Frame.from_atoms(atoms))
    return frames


def metered_training(
    way: str, frames: list[Frame], settings: MACEConfig, start: StartPoint, folder: Path
) -> dict[str, float]:
    """One training started ``way``, metered; wall and CPU seconds."""
    os.environ["ALFLOW_NO_FORKSERVER"] = "1" if way == "new interpreter" else "0"
    with Meter("train", way) as meter:
        train_mace(frames, settings, folder, "model", seed=0, start=start)
    record = meter.record
    return {"wall_s": record.wall_s, "cpu_s": record.cpu_s}


def main() -> None:
    args = arguments()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = MACEConfig(
        epochs=args.epochs,
        min_steps=args.min_steps,
        warm_start_epochs=args.warm_epochs,
        threads=args.threads,
    )
    results: dict[str, Any] = {"cases": {}, "first_fork_server_run": None}
    for count in args.frames:
        frames = copper_frames(count)
        parent_folder = args.work / f"parent_{count}"
        scratch = StartPoint("scratch", None, None, settings.epochs, settings.lr)
        # the first training through the fork server starts it: imports included
        first = metered_training("fork server", frames, settings, scratch, parent_folder)
        if results["first_fork_server_run"] is None:
            results["first_fork_server_run"] = first | {"case": f"scratch, {count} frames"}
            print(f"first training through the fork server (starts it): {first}", flush=True)
        parent = parent_folder / "model.model"
        starts = {
            "scratch": scratch,
            "warm": StartPoint("warm", parent, None, args.warm_epochs, settings.lr),
        }
        for mode, start in starts.items():
            case = results["cases"].setdefault(f"{mode}, {count} frames", {w: [] for w in WAYS})
            for round_ in range(args.rounds):
                for way in WAYS if round_ % 2 == 0 else WAYS[::-1]:
                    folder = args.work / f"{mode}_{count}_{way.replace(' ', '_')}"
                    case[way].append(metered_training(way, frames, settings, start, folder))
                    print(f"{mode:7s} {count:3d} frames, {way:15s}: {case[way][-1]}", flush=True)
    results["summary"] = summarise(results["cases"])
    results["meta"] = run_metadata(
        **{k: v for k, v in vars(args).items() if k not in ("work", "out")}
    )
    write_json(args.out / "train_startup.json", results, indent=2)
    plot(results, args.out / "train_startup.png")
    for case, row in results["summary"].items():
        print(
            f"{case:20s} wall {row['new interpreter']['wall_s']:5.1f} -> "
            f"{row['fork server']['wall_s']:5.1f} s ({row['wall_ratio']:.2f}x), CPU "
            f"{row['new interpreter']['cpu_s']:5.1f} -> {row['fork server']['cpu_s']:5.1f} s "
            f"({row['cpu_ratio']:.2f}x)"
        )


def summarise(cases: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """Median wall and CPU seconds per way, and fork server / new interpreter ratios."""
    summary = {}
    for case, ways in cases.items():
        row: dict[str, Any] = {
            way: {k: float(np.median([run[k] for run in runs])) for k in ("wall_s", "cpu_s")}
            for way, runs in ways.items()
        }
        for key in ("wall", "cpu"):
            row[f"{key}_ratio"] = (
                row["fork server"][f"{key}_s"] / row["new interpreter"][f"{key}_s"]
            )
        summary[case] = row
    return summary


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results["summary"])
    x = np.arange(len(cases))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, label in zip(
        axes, ("wall_s", "cpu_s"), ("wall time (s)", "CPU time (s)"), strict=True
    ):
        for offset, way in zip((-0.2, 0.2), WAYS, strict=True):
            medians = [results["summary"][c][way][key] for c in cases]
            runs = [[r[key] for r in results["cases"][c][way]] for c in cases]
            ax.bar(x + offset, medians, 0.4, label=way)
            for xi, values in zip(x + offset, runs, strict=True):
                ax.plot([xi] * len(values), values, "k.", ms=4)
        ax.set_xticks(x, cases, fontsize=8)
        ax.set(ylabel=f"{label} per training (median, dots: rounds)")
        ax.legend()
    meta = results["meta"]
    save_figure(fig, "MACE training start-up", meta, path)


if __name__ == "__main__":
    main()
