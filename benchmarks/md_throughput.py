"""MD throughput: what uncertainty in the loop costs the explorer.

Steps per second of MD on fcc copper cells of 32 and 256 atoms with: one MACE model
(plain ASE Langevin with mace-torch's calculator, no uncertainty), a committee of
K=4 integrating member 0 and running the others only at recorded frames
(``explore.committee_forces: first``) or integrating the committee mean
(``mean``, the default), and a shallow ensemble (M=4), through alflow's explorer, which
records a frame with its uncertainty every ``--record-every`` steps. The models have the default
alflow architecture and are trained briefly on EMT frames: speed depends on the
architecture, not on the accuracy.

Run ``python benchmarks/md_throughput.py``; results go to
``benchmarks/results/md_throughput.json`` and ``md_throughput.png``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json

from alflow.config import ExploreConfig, MACEConfig
from alflow.explore.md import run_md
from alflow.frames import Frame
from alflow.train.mace import train_mace
from alflow.train.shallow import build_shallow_model
from alflow.uncertainty.committee import CommitteeCalculator
from alflow.uncertainty.shallow import ShallowEnsembleCalculator

HERE = Path(__file__).resolve().parent


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-md"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--record-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def emt_frames(n: int) -> list[Frame]:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    frames = []
    for seed in range(n):
        atoms = base.copy()
        atoms.rattle(0.08, seed=seed)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(Frame.from_atoms(atoms))
    return frames


def cell(repeat: int) -> Frame:
    from ase.build import bulk

    return Frame.from_atoms(bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat))


def steps_per_second_plain(model: str, frame: Frame, steps: int) -> float:
    from ase import units
    from ase.md.langevin import Langevin
    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        calc = MACECalculator(model_paths=model, device="cpu", default_dtype="float64")
    atoms = frame.to_atoms(with_labels=False)
    atoms.calc = calc
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01 / units.fs)
    dyn.run(2)  # warm-up
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def steps_per_second_explorer(calc: Any, frame: Frame, steps: int, record_every: int) -> float:
    settings = ExploreConfig(steps=steps, timestep_fs=2.0, record_every=record_every)
    run_md(calc, frame, settings.model_copy(update={"steps": 2}), 300, 1e9, seed=0)  # warm-up
    start = time.perf_counter()
    result = run_md(calc, frame, settings, 300, 1e9, seed=0)
    assert result.steps_done == steps
    return steps / (time.perf_counter() - start)


def main() -> None:
    args = arguments()
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    data = emt_frames(20)
    settings = MACEConfig(epochs=2, threads=args.threads, batch_size=4)
    models = [train_mace(data, settings, args.work, f"m{k}", seed=k).path for k in range(4)]
    build_shallow_model(models[0], data, args.work / "shallow.model", members=4, seed=0)
    estimators = {
        "committee (K=4), member 0 drives": CommitteeCalculator(models, forces="first"),
        "committee (K=4), mean drives": CommitteeCalculator(models, forces="mean"),
        "shallow ensemble (M=4)": ShallowEnsembleCalculator(args.work / "shallow.model"),
    }
    results: dict[str, Any] = {"cells": {}}
    for repeat, steps in ((2, 200), (4, 40)):
        frame = cell(repeat)
        rates = {"one MACE model, plain MD": steps_per_second_plain(models[0], frame, steps)}
        for name, calc in estimators.items():
            rates[name] = steps_per_second_explorer(calc, frame, steps, args.record_every)
        plain = rates["one MACE model, plain MD"]
        results["cells"][str(frame.n_atoms)] = {
            "steps_per_second": rates,
            "cost_relative_to_plain": {n: plain / r for n, r in rates.items()},
        }
        print(f"{frame.n_atoms} atoms:")
        for name, rate in rates.items():
            print(f"  {name:34s} {rate:7.1f} steps/s  ({plain / rate:4.2f}x the cost of plain MD)")
    results["meta"] = run_metadata(threads=args.threads, record_every=args.record_every)
    write_json(args.out / "md_throughput.json", results, indent=2)
    plot(results, args.out / "md_throughput.png")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    cells = list(results["cells"])
    names = list(results["cells"][cells[0]]["steps_per_second"])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [results["cells"][c]["steps_per_second"][name] for c in cells]
        ax.bar(np.arange(len(cells)) + k * width, values, width, label=name)
    ax.set_xticks(
        np.arange(len(cells)) + width * (len(names) - 1) / 2, [f"{c} atoms" for c in cells]
    )
    ax.set(
        ylabel="MD steps per second",
        yscale="log",
        title=f"uncertainty recorded every {results['meta']['record_every']} steps",
    )
    ax.legend(fontsize=8)
    meta = results["meta"]
    save_figure(fig, "alflow MD throughput", meta, path)


if __name__ == "__main__":
    main()
