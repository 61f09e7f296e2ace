"""Online active learning on a cheap real oracle: alflow's policy vs a DP-GEN-style loop.

Both loops are real alflow campaigns (MACE committee, MD exploration, EMT labels for
fcc copper, the embedded store); they differ only in ``select.strategy``: ``alflow``
(window → SOAP novelty → farthest-point sampling) or ``dpgen`` (random frames inside
the same window). The held-out set is EMT MD at ``--test-temperature`` (hotter than
the exploration), never trained on. Every iteration records its validation force
RMSE and its metered compute (training, MD, selection, labels, validation); the
total energy to reach the error the DP-GEN-style loop ends with is compared.

EMT costs almost nothing, so its labels do not weigh: ``--label-kwh`` adds a nominal
DFT cost per label (0 by default, reported in the JSON) to show how the comparison
moves when labels are expensive.

Run ``python benchmarks/online.py`` (about 55 minutes on 2 cores with the defaults);
results go to ``benchmarks/results/online.json`` and ``online.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from ase.build import bulk
from ase.io import write
from common import copper_campaign, run_metadata
from jobflow import run_locally

from alflow.campaign import campaign_flow
from alflow.config import Campaign
from alflow.query import latest_state
from alflow.store import CampaignPaths, embedded_store, save_campaign

HERE = Path(__file__).resolve().parent
STRATEGIES = ("dpgen", "alflow")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--per-iteration", type=int, default=6, help="labels per iteration")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300, help="MD steps per run")
    parser.add_argument("--test-temperature", type=float, default=1200.0)
    parser.add_argument("--label-kwh", type=float, default=0.0, help="nominal DFT kWh per label")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-online"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    return parser.parse_args()


def held_out_frames(path: Path, temperature: float, n: int = 20) -> None:
    """EMT Langevin MD of a 32-atom fcc Cu cell; every 40th step is kept (with labels)."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=np.random.default_rng(1)
    )
    frames = []
    for _ in range(n):
        dynamics.run(40)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frames.append(frame)
    write(path, frames)


def campaign(folder: Path, strategy: str, seed: int, args: argparse.Namespace) -> Campaign:
    return copper_campaign(
        folder,
        f"online-{strategy}-{seed}",
        seed=seed,
        epochs=args.epochs,
        threads=args.threads,
        steps=args.steps,
        iterations=args.iterations,
        temperature_k=[600, 800, 1000, 1200],
        select={
            "strategy": strategy,
            "lo": 0.05,
            "hi": 5.0,
            "max_per_iteration": args.per_iteration,
        },
        bootstrap={"n_frames": 8, "rattle_std": 0.05, "strain": 0.02},
        validation="held_out.xyz",
    )


def run(folder: Path, strategy: str, seed: int, args: argparse.Namespace) -> list[dict]:
    """One campaign; per iteration: labels, validation force RMSE, cumulative kWh."""
    settings = campaign(folder, strategy, seed, args)
    paths = CampaignPaths(settings.campaign_dir())
    save_campaign(paths, settings)
    store = embedded_store(paths.root)
    run_locally(campaign_flow(settings), store=store, log=False, root_dir=paths.scratch)
    state = latest_state(store, settings.name)
    points, kwh = [], 0.0
    for record in state.history:
        total = record.compute.get("total")
        kwh += (total.energy_kwh if total else 0.0) + record.labels_new * args.label_kwh
        points.append(
            {
                "iteration": record.iteration,
                "labels": record.labels_total,
                "force_rmse": record.validation.force_rmse if record.validation else None,
                "kwh": kwh,
            }
        )
        print(f"  {strategy} seed {seed}: {points[-1]}", flush=True)
    return points


def kwh_to_reach(points: list[dict], target: float) -> float | None:
    """Cumulative kWh at the first iteration whose validation error is ≤ target."""
    for point in points:
        if point["force_rmse"] is not None and point["force_rmse"] <= target:
            return point["kwh"]
    return None


def main() -> None:
    args = arguments()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.work / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))
    held_out_frames(args.work / "held_out.xyz", args.test_temperature)
    runs = {s: [run(args.work, s, seed, args) for seed in range(args.seeds)] for s in STRATEGIES}
    comparison = []
    for seed in range(args.seeds):
        target = runs["dpgen"][seed][-1]["force_rmse"]
        dpgen, alflow = (kwh_to_reach(runs[s][seed], target) for s in STRATEGIES)
        comparison.append(
            {
                "seed": seed,
                "target_force_rmse": target,
                "dpgen_kwh": dpgen,
                "alflow_kwh": alflow,
                "ratio": None if alflow is None or not dpgen else alflow / dpgen,
            }
        )
    results = {
        "runs": runs,
        "comparison": comparison,
        "meta": run_metadata(**{k: v for k, v in vars(args).items() if k not in ("work", "out")}),
    }
    (args.out / "online.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "online.png")
    for row in comparison:
        ratio = "not reached" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        print(
            f"seed {row['seed']}: to reach {row['target_force_rmse'] * 1000:.0f} meV/Å, "
            f"dpgen {row['dpgen_kwh']:.4f} kWh, alflow {row['alflow_kwh'] or float('nan'):.4f}"
            f" kWh ({ratio})"
        )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"dpgen": "tab:orange", "alflow": "tab:blue"}
    for strategy, seeds in results["runs"].items():
        for i, points in enumerate(seeds):
            valid = [p for p in points if p["force_rmse"] is not None]
            errors = [1000 * p["force_rmse"] for p in valid]
            label = strategy if i == 0 else None
            axes[0].plot(
                [p["labels"] for p in valid], errors, "o-", c=colours[strategy], label=label
            )
            axes[1].plot([p["kwh"] for p in valid], errors, "o-", c=colours[strategy], label=label)
    axes[0].set(xlabel="labels", ylabel="held-out force RMSE (meV/Å)", yscale="log")
    axes[1].set(xlabel="cumulative kWh (all stages)", ylabel="held-out force RMSE (meV/Å)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend()
    meta = results["meta"]
    fig.suptitle(
        f"online AL on Cu/EMT — {meta['commit']}, {meta['date']}, {meta['machine']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
