"""Workflow overhead: the share of an iteration spent outside training, MD and labelling.

A real campaign (fcc copper, 32 atoms, EMT labels: a labeller that costs almost
nothing, so labelling does not hide the overhead) runs ``--iterations`` iterations
through jobflow on the embedded (montydb) store, exactly as ``alflow run`` does.
Every job meters its own wall time; an iteration's wall time runs from the
controller that starts it to the controller that closes it. What is left after
training, MD and labelling is the overhead: selection, validation, and the workflow
itself (building the Flow, resolving references, writing outputs, the dataset and
the state to the store). The three are reported apart.

Run ``python benchmarks/overhead.py`` (about 25 minutes on 2 cores); results go to
``benchmarks/results/overhead.json`` and ``overhead.png``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from ase.build import bulk
from ase.io import write
from common import copper_campaign, run_metadata, save_figure, write_json
from jobflow import run_locally

from alflow.campaign import campaign_flow
from alflow.config import Campaign
from alflow.query import latest_state
from alflow.state import IterationRecord
from alflow.store import CampaignPaths, embedded_store, save_campaign

HERE = Path(__file__).resolve().parent
#: Stages that do the loop's real work; everything else is overhead.
WORK = ("train", "explore", "label")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-overhead"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=500, help="MD steps per run")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def campaign(folder: Path, args: argparse.Namespace) -> Campaign:
    """A copper campaign of the default shape: committee of 4, 2 MD runs, validation."""
    write(folder / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))
    validation = [bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2) for _ in range(10)]
    for i, atoms in enumerate(validation):
        atoms.rattle(0.08, seed=100 + i)
    write(folder / "validation.xyz", label_with_emt(validation))
    return copper_campaign(
        folder,
        "run",
        seed=3,
        epochs=args.epochs,
        threads=args.threads,
        steps=args.steps,
        iterations=args.iterations,
        temperature_k=600,
        select={"lo": 0.01, "hi": 5.0, "max_per_iteration": 8},
        bootstrap={"n_frames": 10, "rattle_std": 0.06, "strain": 0.02},
        validation="validation.xyz",
    )


def label_with_emt(frames: list[Any]) -> list[Any]:
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    for atoms in frames:
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return frames


def breakdown(record: IterationRecord) -> dict[str, float]:
    """Wall seconds per stage of one iteration, the rest, and the overhead share."""
    stages = {stage: totals.wall_s for stage, totals in record.compute.items() if stage != "total"}
    work = sum(stages.get(stage, 0.0) for stage in WORK)
    workflow = record.wall_s - sum(stages.values())
    return {
        "wall_s": record.wall_s,
        **{f"{stage}_s": seconds for stage, seconds in sorted(stages.items())},
        "workflow_and_store_s": workflow,
        "overhead_s": record.wall_s - work,
        "overhead_share": (record.wall_s - work) / record.wall_s,
        "workflow_and_store_share": workflow / record.wall_s,
    }


def main() -> None:
    args = arguments()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = campaign(args.work, args)
    paths = CampaignPaths(settings.campaign_dir())
    save_campaign(paths, settings)
    store = embedded_store(paths.root)
    start = time.perf_counter()
    run_locally(campaign_flow(settings), store=store, log=False, root_dir=paths.scratch)
    total = time.perf_counter() - start
    state = latest_state(store, settings.name)
    loop = [r for r in state.history if r.iteration >= 1]  # iteration 0 is the bootstrap
    rows = {str(r.iteration): breakdown(r) for r in loop}
    wall = sum(r.wall_s for r in loop)
    results = {
        "iterations": rows,
        "loop": {
            "wall_s": wall,
            "overhead_share": sum(v["overhead_s"] for v in rows.values()) / wall,
            "workflow_and_store_share": sum(v["workflow_and_store_s"] for v in rows.values())
            / wall,
        },
        "campaign_wall_s": total,
        "meta": run_metadata(
            iterations=args.iterations, epochs=args.epochs, steps=args.steps, atoms=32
        ),
    }
    write_json(args.out / "overhead.json", results, indent=2)
    plot(results, args.out / "overhead.png")
    report(results)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["iterations"]
    parts = [
        ("train_s", "training"),
        ("explore_s", "MD"),
        ("label_s", "labelling"),
        ("select_s", "selection"),
        ("validate_s", "validation"),
        ("workflow_and_store_s", "workflow + store"),
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(rows)
    for key, label in parts:
        values = [100 * v.get(key, 0.0) / v["wall_s"] for v in rows.values()]
        ax.bar(list(rows), values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    loop = results["loop"]
    ax.set(
        xlabel="iteration",
        ylabel="share of iteration wall time (%)",
        title=f"overhead {100 * loop['overhead_share']:.1f}% (workflow + store "
        f"{100 * loop['workflow_and_store_share']:.1f}%), goal ≤ 5%",
    )
    ax.legend(fontsize=7, loc="lower right")
    meta = results["meta"]
    save_figure(fig, "alflow workflow overhead", meta, path)


def report(results: dict[str, Any]) -> None:
    print("iteration  wall s  train  MD    label  select  validate  workflow  overhead")
    for iteration, v in results["iterations"].items():
        print(
            f"{iteration:>9}  {v['wall_s']:6.1f}  {v.get('train_s', 0):5.1f}  "
            f"{v.get('explore_s', 0):5.1f} {v.get('label_s', 0):5.2f}  "
            f"{v.get('select_s', 0):6.2f}  {v.get('validate_s', 0):8.2f}  "
            f"{v['workflow_and_store_s']:8.2f}  {100 * v['overhead_share']:6.1f}%"
        )
    loop = results["loop"]
    print(
        f"loop: overhead {100 * loop['overhead_share']:.1f}% of {loop['wall_s']:.0f} s, "
        f"of which workflow + store {100 * loop['workflow_and_store_share']:.1f}%"
    )


if __name__ == "__main__":
    main()
