"""Online active learning on a cheap real oracle: alflow's loop vs a DP-GEN-style loop.

All loops are real alflow campaigns (a MACE committee of 4 or a shallow ensemble, MD
exploration, EMT labels for fcc copper, the embedded store, the same window, caps and
iterations).
They differ where the tools differ:

``dpgen``
    DP-GEN's loop: every iteration retrains the committee from scratch for a fixed
    number of optimiser steps, runs the MD on member 0 with the other members
    evaluated only at recorded frames (``explore.committee_forces: first``, as
    DP-GEN's LAMMPS runs do), and labels random frames inside the trust window;
``alflow``
    alflow's loop: iteration 0 as above, then every member continues from its own
    previous weights for ``--warm-epochs`` of the ``--epochs``
    (``train.warm_start_epochs``), the MD runs on the committee mean (the
    default), selection is window → SOAP novelty →
    farthest-point sampling seeded with the training set, and the MD is biased
    towards high committee energy uncertainty (``explore.bias_depth``,
    ``--bias-depth``; 0 gives plain MD as in the DP-GEN-style loop);
``alflow-first``
    ``alflow`` with its MD on member 0 as in the DP-GEN-style loop
    (``explore.committee_forces: first``) and no bias: the committee loop without the
    three extra models per MD step, so that what warm starts and selection save is
    seen apart from what integrating the mean costs;
``alflow-shallow``
    alflow's loop with a shallow ensemble (``train.uncertainty: shallow``) instead of
    a committee: one MACE model per iteration, whose last layer carries
    ``shallow_members`` members, so training and MD run one model instead of four
    (warm starts and selection as ``alflow``; plain MD);
``alflow-shallow-bias``
    ``alflow-shallow`` with the MD biased as in ``alflow``: the shallow ensemble then
    computes its members' forces at every MD step instead of only at recorded
    frames.

``--loops`` chooses which run (the DP-GEN-style loop always does: it sets the target).

The held-out set is EMT MD at ``--test-temperature`` (hotter than the exploration),
never trained on. Every iteration records its validation force RMSE and its
metered compute (training, MD, selection, labels, validation). A campaign also
calibrates its uncertainty and decides when to stop on its held-out set, so errors
on it flatter the loops that stop on it; the verdict is therefore also given on a
set of independent EMT trajectories made the same way (``--verdict-trajectories``
of 20 frames each, so that it samples what the held-out set samples, heating up
from the lattice included), which no loop ever sees: every iteration's models are
scored on it after the run (unmetered: it is the benchmark's measurement, not the
loop's work). The DP-GEN-style loop runs ``--iterations`` (DP-GEN v1 has no
convergence test); its final error is the target. Each alflow loop then runs as a
user would run it: with ``stop.force_rmse`` at that target, so it stops once it gets
there, for at most ``--extra-iterations`` more iterations than the DP-GEN-style
loop. The total energy to first reach the target is compared.

EMT costs almost nothing, so its labels do not weigh. The comparison is also made
as if every label had cost ``--label-kwh`` (a DFT single point; default 0.012 kWh,
one core-hour at 12 W per core), from the same runs.

Run ``python benchmarks/online.py``: the defaults (2 seeds, all five loops, 5 iterations
of 60 epochs) take a few hours on 2 cores; the runs in ``benchmarks/README.md`` (4
iterations of 30 epochs) took 7-13 min per committee campaign and 3-5 per shallow one;
results go to ``benchmarks/results/online.json`` and ``online.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.build import bulk
from ase.io import write
from common import STARTED_AT, copper_campaign, run_metadata, save_figure, write_json
from jobflow import run_locally

from alflow.campaign import campaign_flow
from alflow.config import Campaign
from alflow.query import latest_state
from alflow.store import CampaignPaths, embedded_store, save_campaign

if TYPE_CHECKING:
    from ase import Atoms

HERE = Path(__file__).resolve().parent
LOOPS = ("dpgen", "alflow", "alflow-first", "alflow-shallow", "alflow-shallow-bias")
#: the loops whose MD is biased towards high energy uncertainty
BIASED = ("alflow", "alflow-shallow-bias")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help=f"comma-separated, of {', '.join(LOOPS)}"
    )
    parser.add_argument("--iterations", type=int, default=5, help="the DP-GEN-style loop's")
    parser.add_argument(
        "--extra-iterations",
        type=int,
        default=3,
        help="iterations an alflow loop may run beyond --iterations to reach the target",
    )
    parser.add_argument("--per-iteration", type=int, default=6, help="labels per iteration")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--min-steps", type=int, default=300, help="train.min_steps")
    parser.add_argument("--warm-epochs", type=int, default=15, help="alflow's warm starts")
    parser.add_argument("--steps", type=int, default=300, help="MD steps per run")
    parser.add_argument(
        "--bias-depth", type=float, default=0.005, help="alflow's MD bias (eV/atom); 0: none"
    )
    parser.add_argument("--bias-width", type=float, default=0.005, help="eV/atom")
    parser.add_argument("--test-temperature", type=float, default=1200.0)
    parser.add_argument(
        "--verdict-trajectories",
        type=int,
        default=3,
        help="trajectories of 20 frames in the independent verdict set",
    )
    parser.add_argument("--label-kwh", type=float, default=0.012, help="nominal DFT kWh per label")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-online"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.extra_iterations < 0:
        parser.error(f"--extra-iterations must be ≥ 0, got {args.extra_iterations}")
    if args.verdict_trajectories < 1:
        parser.error(
            f"--verdict-trajectories must be ≥ 1 (the verdict set needs frames), "
            f"got {args.verdict_trajectories}"
        )
    # before any work: the held-out and verdict frames take a while to make
    unknown = set(args.loops.split(",")) - set(LOOPS)
    if unknown:
        parser.error(f"--loops: unknown {sorted(unknown)}; choose from {', '.join(LOOPS)}")
    return args


def md_frames(temperature: float, trajectory: int = 0, n: int = 20) -> list[Atoms]:
    """EMT Langevin MD of a 32-atom fcc Cu cell from the lattice; every 40th step is
    kept (with labels). ``trajectory`` seeds the velocities and the thermostat."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    rng = np.random.default_rng(2 * trajectory)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    thermostat = np.random.default_rng(2 * trajectory + 1)
    dynamics = Langevin(
        atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=thermostat
    )
    frames = []
    for _ in range(n):
        dynamics.run(40)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frames.append(frame)
    return frames


def held_out_frames(path: Path, temperature: float) -> None:
    """The campaigns' held-out set: trajectory 0."""
    write(path, md_frames(temperature))


def verdict_frames(path: Path, temperature: float, trajectories: int) -> None:
    """The verdict set: trajectories 1, 2, ..., made as the held-out set is."""
    write(path, [f for t in range(1, trajectories + 1) for f in md_frames(temperature, t)])


def campaign(
    folder: Path, loop: str, seed: int, args: argparse.Namespace, target: float | None = None
) -> Campaign:
    """The campaign of one loop and seed; an alflow loop stops at ``target`` (eV/Å)."""
    alflow = loop != "dpgen"
    if alflow and target is None:
        raise ValueError("an alflow loop needs the DP-GEN-style loop's error as its target")
    train: dict[str, Any] = {"min_steps": args.min_steps}
    if alflow:
        train["warm_start_epochs"] = args.warm_epochs
    if loop.startswith("alflow-shallow"):
        train["uncertainty"] = "shallow"
    return copper_campaign(
        folder,
        f"online-{loop}-{seed}",
        seed=seed,
        epochs=args.epochs,
        threads=args.threads,
        steps=args.steps,
        iterations=args.iterations,
        temperature_k=[600, 800, 1000, 1200],
        select={
            "strategy": "alflow" if alflow else "dpgen",
            "lo": 0.05,
            "hi": 5.0,
            "max_per_iteration": args.per_iteration,
        },
        bootstrap={"n_frames": 8, "rattle_std": 0.05, "strain": 0.02},
        validation="held_out.xyz",
        train=train,
        explore=explore_settings(loop, args),
        stop={"max_iterations": args.iterations + args.extra_iterations, "force_rmse": target}
        if alflow
        else None,
    )


def explore_settings(loop: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """MD settings of a loop beyond the shared ones: the DP-GEN-style loop integrates
    committee member 0 and evaluates the others only at recorded frames, as DP-GEN's
    LAMMPS runs do, and so does ``alflow-first``; the biased alflow loops add the
    energy-uncertainty bias."""
    if loop in ("dpgen", "alflow-first"):
        return {"committee_forces": "first"}
    if loop in BIASED:
        return {"bias_depth": args.bias_depth, "bias_width": args.bias_width}
    return None


def file_hash(path: Path) -> str:
    """Content hash of an input file, for the campaign cache's key."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(folder: Path, settings: Campaign) -> tuple[list[dict], dict[str, str]]:
    """One campaign (made by :func:`campaign`); per iteration: labels, validation force
    RMSE, cumulative metered kWh; and its provenance (commit and date of the run that
    produced it).

    A campaign that finished earlier with the same settings and input files is read
    back instead of rerun (``<work>/<name>.points.json``), so an interrupted benchmark
    resumes.
    """
    cache = folder / f"{settings.name}.points.json"
    inputs = {name: file_hash(folder / name) for name in ("cu.xyz", "held_out.xyz")}
    fingerprint = [settings.model_dump_json(), inputs]
    if cache.is_file() and json.loads(cache.read_text())["settings"] == fingerprint:
        print(f"  {settings.name}: finished earlier ({cache})")
        saved = json.loads(cache.read_text())
        return saved["points"], saved["provenance"]
    # the caches describe the campaign about to be replaced: a crash must not leave them
    cache.unlink(missing_ok=True)
    (folder / f"{settings.name}.verdict.json").unlink(missing_ok=True)
    shutil.rmtree(settings.campaign_dir(), ignore_errors=True)
    paths = CampaignPaths(settings.campaign_dir())
    save_campaign(paths, settings)
    store = embedded_store(paths.root)
    run_locally(campaign_flow(settings), store=store, log=False, root_dir=paths.scratch)
    state = latest_state(store, settings.name)
    points: list[dict] = []
    kwh = 0.0
    failed = 0
    stages: dict[str, float] = {}
    for record in state.history:
        failed += record.labels_failed
        for stage, meter in record.compute.items():
            if stage != "total":
                stages[stage] = stages.get(stage, 0.0) + meter.energy_kwh
        total = record.compute.get("total")
        kwh += total.energy_kwh if total else 0.0
        points.append(
            {
                "iteration": record.iteration,
                "labels": record.labels_total,
                # a failed label costs its DFT time too
                "labels_sent": record.labels_total + failed,
                "force_rmse": record.validation.force_rmse if record.validation else None,
                "kwh": kwh,
                "kwh_by_stage": dict(stages),
            }
        )
        print(f"  {settings.name}: {points[-1]}", flush=True)
    provenance = {"commit": STARTED_AT, "date": run_metadata()["date"]}
    write_json(cache, {"settings": fingerprint, "points": points, "provenance": provenance})
    return points, provenance


def verdict_errors(folder: Path, settings: Campaign, points: list[dict], verdict: Path) -> list:
    """Force RMSE of every iteration's models on the verdict frames, one per point.

    Kept in ``<work>/<name>.verdict.json`` for the campaign and verdict set it was
    computed for, so that a resumed benchmark does not score them again. The
    campaign's store must hold the run that ``points`` describe: checked iteration by
    iteration against its labels and held-out error.
    """
    from alflow.frames import read_frames
    from alflow.validate import iteration_errors

    cache = folder / f"{settings.name}.verdict.json"
    key = [file_hash(folder / f"{settings.name}.points.json"), file_hash(verdict)]
    if cache.is_file() and json.loads(cache.read_text())["key"] == key:
        return json.loads(cache.read_text())["force_rmse"]
    state = latest_state(embedded_store(CampaignPaths(settings.campaign_dir()).root), settings.name)
    stored = [
        (r.iteration, r.labels_total, r.validation.force_rmse if r.validation else None)
        for r in state.history
    ]
    if stored != [(p["iteration"], p["labels"], p["force_rmse"]) for p in points]:
        raise RuntimeError(
            f"{settings.campaign_dir()} does not hold the run of {settings.name}.points.json; "
            "delete both to rerun the campaign"
        )
    metrics = iteration_errors(state.history, read_frames(verdict))
    errors = [None if m is None else m.force_rmse for m in metrics]
    write_json(cache, {"key": key, "force_rmse": errors})
    return errors


def kwh_to_reach(
    points: list[dict], target: float, label_kwh: float, error: str = "force_rmse"
) -> float | None:
    """Cumulative kWh at the first iteration whose ``error`` (the held-out set's
    ``force_rmse`` or the verdict set's ``verdict_force_rmse``) is ≤ target.

    ``label_kwh`` is added for every frame sent to the labeller, failed ones included
    (a nominal DFT cost; EMT's own is metered).
    """
    for point in points:
        if point.get(error) is not None and point[error] <= target:
            return total_kwh(point, label_kwh)
    return None


def total_kwh(point: dict, label_kwh: float) -> float:
    """Cumulative metered kWh at ``point`` plus ``label_kwh`` per frame sent to the labeller."""
    return point["kwh"] + point.get("labels_sent", point["labels"]) * label_kwh


def compare(
    runs: dict[str, list[list[dict]]], label_kwh: float, error: str = "force_rmse"
) -> list[dict[str, Any]]:
    """Per seed and alflow loop: kWh to reach the ``error`` the DP-GEN-style loop ends
    with, and its ratio to the DP-GEN-style loop's."""
    rows = []
    for seed, dpgen_points in enumerate(runs["dpgen"]):
        target = dpgen_points[-1].get(error)
        dpgen = None if target is None else kwh_to_reach(dpgen_points, target, label_kwh, error)
        for loop in (name for name in runs if name != "dpgen"):
            alflow = (
                None if target is None else kwh_to_reach(runs[loop][seed], target, label_kwh, error)
            )
            rows.append(
                {
                    "seed": seed,
                    "loop": loop,
                    "label_kwh": label_kwh,
                    "target_force_rmse": target,
                    "dpgen_kwh": dpgen,
                    "alflow_kwh": alflow,
                    "ratio": None if alflow is None or not dpgen else alflow / dpgen,
                }
            )
    return rows


def at_the_end(runs: dict[str, list[list[dict]]], label_kwh: float) -> list[dict[str, Any]]:
    """Per seed and alflow loop: verdict error and kWh of the whole run, against the
    DP-GEN-style loop's: the comparison that holds where an alflow loop stopped on its
    held-out set before reaching the DP-GEN-style loop's verdict error."""
    rows = []
    for seed, dpgen_points in enumerate(runs["dpgen"]):
        dpgen = dpgen_points[-1]
        for loop in (name for name in runs if name != "dpgen"):
            alflow = runs[loop][seed][-1]
            errors = (alflow.get("verdict_force_rmse"), dpgen.get("verdict_force_rmse"))
            rows.append(
                {
                    "seed": seed,
                    "loop": loop,
                    "label_kwh": label_kwh,
                    "dpgen_verdict_force_rmse": errors[1],
                    "alflow_verdict_force_rmse": errors[0],
                    "error_ratio": None if None in errors else errors[0] / errors[1],
                    "kwh_ratio": total_kwh(alflow, label_kwh) / total_kwh(dpgen, label_kwh),
                }
            )
    return rows


def main() -> None:
    args = arguments()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.work / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))
    held_out_frames(args.work / "held_out.xyz", args.test_temperature)
    verdict = args.work / "verdict.xyz"
    verdict_frames(verdict, args.test_temperature, args.verdict_trajectories)
    # seed by seed, the loops side by side, so that they see the same machine state;
    # the DP-GEN-style loop first, since its final error is the alflow loops' target
    loops = ["dpgen", *(name for name in LOOPS[1:] if name in args.loops.split(","))]
    runs: dict[str, list[list[dict]]] = {loop: [] for loop in loops}
    provenance: dict[str, list[dict[str, str]]] = {loop: [] for loop in loops}
    for seed in range(args.seeds):
        for loop in loops:
            target = None if loop == "dpgen" else runs["dpgen"][-1][-1]["force_rmse"]
            settings = campaign(args.work, loop, seed, args, target)
            points, made = run(args.work, settings)
            errors = verdict_errors(args.work, settings, points, verdict)
            for point, error in zip(points, errors, strict=True):
                point["verdict_force_rmse"] = error
            runs[loop].append(points)
            provenance[loop].append(made)
    dft = f"labels at {args.label_kwh} kWh each"
    comparison = {
        "metered (EMT labels)": compare(runs, 0.0),
        dft: compare(runs, args.label_kwh),
        "verdict set, metered (EMT labels)": compare(runs, 0.0, "verdict_force_rmse"),
        f"verdict set, {dft}": compare(runs, args.label_kwh, "verdict_force_rmse"),
    }
    end = {"metered (EMT labels)": at_the_end(runs, 0.0), dft: at_the_end(runs, args.label_kwh)}
    results = {
        "runs": runs,
        "comparison": comparison,
        "at_the_end": end,
        "meta": run_metadata(
            **{k: v for k, v in vars(args).items() if k not in ("work", "out")},
            # per loop and seed, the run that produced it (cached campaigns keep theirs)
            provenance=provenance,
        ),
    }
    commits = {made["commit"] for seeds in provenance.values() for made in seeds}
    if len(commits) > 1:
        print(f"note: the campaigns come from {len(commits)} commits: {sorted(commits)}")
    write_json(args.out / "online.json", results, indent=2, default=str)
    plot(results, args.out / "online.png")
    report(comparison, end)


def shown(value: float | None, spec: str, scale: float = 1.0, none: str = "-") -> str:
    """``value * scale`` formatted with ``spec``, or ``none`` where there is no value."""
    return none if value is None else format(value * scale, spec)


def report(comparison: dict[str, list[dict]], end: dict[str, list[dict]]) -> None:
    """Print the comparisons: kWh to reach the targets, then the whole runs."""
    for case, rows in comparison.items():
        print(f"\n{case}:")
        for row in rows:
            print(
                f"  seed {row['seed']}, {row['loop']}: "
                f"to reach {shown(row['target_force_rmse'], '.1f', 1000)} meV/Å, "
                f"dpgen {shown(row['dpgen_kwh'], '.4f')} kWh, "
                f"alflow {shown(row['alflow_kwh'], '.4f')} kWh "
                f"({'not reached' if row['ratio'] is None else shown(row['ratio'], '.2f') + 'x'})"
            )
    for case, rows in end.items():
        print(f"\nwhole runs on the verdict set, {case}:")
        for row in rows:
            print(
                f"  seed {row['seed']}, {row['loop']}: verdict force RMSE "
                f"{shown(row['alflow_verdict_force_rmse'], '.1f', 1000)} vs dpgen "
                f"{shown(row['dpgen_verdict_force_rmse'], '.1f', 1000)} meV/Å "
                f"({shown(row['error_ratio'], '.2f')}x) for {row['kwh_ratio']:.2f}x the kWh"
            )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label_kwh = results["meta"]["label_kwh"]
    fig, grid = plt.subplots(2, 3, figsize=(17, 8.4))
    axes = [*grid[0], grid[1, 0], grid[1, 1], grid[1, 2]]
    colours = {
        "dpgen": "tab:orange",
        "alflow": "tab:blue",
        "alflow-first": "tab:purple",
        "alflow-shallow": "tab:green",
        "alflow-shallow-bias": "tab:red",
    }
    # top row: the held-out set the loops calibrate and stop on; bottom: the verdict set
    for strategy, seeds in results["runs"].items():
        for i, points in enumerate(seeds):
            style = {"c": colours[strategy], "label": strategy if i == 0 else None}
            for error, panels in (("force_rmse", axes[:3]), ("verdict_force_rmse", axes[3:5])):
                valid = [p for p in points if p.get(error) is not None]
                errors = [1000 * p[error] for p in valid]
                x = [
                    [p["labels"] for p in valid],
                    [p["kwh"] for p in valid],
                    [total_kwh(p, label_kwh) for p in valid],
                ]
                for ax, values in zip(panels, x if error == "force_rmse" else x[1:], strict=True):
                    ax.plot(values, errors, "o-", **style)
    for points in results["runs"]["dpgen"]:
        for ax in axes[:3]:
            ax.axhline(1000 * points[-1]["force_rmse"], c="grey", ls=":", lw=0.8)
        if points[-1].get("verdict_force_rmse") is not None:
            for ax in axes[3:5]:
                ax.axhline(1000 * points[-1]["verdict_force_rmse"], c="grey", ls=":", lw=0.8)
    metered = "cumulative metered kWh (EMT labels)"
    priced = f"cumulative kWh, labels at {label_kwh} kWh each (DFT-like)"
    axes[0].set(xlabel="labels", ylabel="held-out force RMSE (meV/Å; dotted: targets)")
    axes[1].set(xlabel=metered, title="held-out set (the loops calibrate and stop on it)")
    axes[2].set(xlabel=priced)
    axes[3].set(xlabel=metered, ylabel="verdict-set force RMSE (meV/Å; dotted: targets)")
    axes[4].set(xlabel=priced, title="independent verdict set (never seen by a loop)")
    for ax in axes[:5]:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    # where the metered energy went, mean over seeds at the last iteration
    stages = sorted(
        {s for seeds in results["runs"].values() for p in seeds for s in p[-1]["kwh_by_stage"]}
    )
    bottom = np.zeros(len(results["runs"]))
    for stage in stages:
        values = np.array(
            [
                np.mean([points[-1]["kwh_by_stage"].get(stage, 0.0) for points in seeds])
                for seeds in results["runs"].values()
            ]
        )
        axes[5].bar(list(results["runs"]), values, bottom=bottom, label=stage)
        bottom += values
    axes[5].set(
        ylabel="metered kWh of the whole run (mean over seeds)",
        title="by stage (alflow loops stop at the target)",
    )
    axes[5].tick_params(axis="x", labelsize=7)
    axes[5].legend(fontsize=7)
    meta = results["meta"]
    save_figure(fig, "online AL on Cu/EMT", meta, path)


if __name__ == "__main__":
    main()
