"""Goal 1 at a glance: every committed data-efficiency table in one figure.

``data_efficiency.py`` writes one results JSON per replay (dataset, scorer, budget,
strategies); the README discusses each. This script reads all of them under
``benchmarks/results/`` and puts, for each results file and test set, the labels each
strategy needs to reach random sampling's force RMSE at its largest budget (as a
ratio to random's labels) on one row, beside the goal's 0.5× line. Nothing is
replayed or refitted: the ratios are the JSONs' ``table`` sections. How firm each is
comes from resampling the seeds: the replays' seeds share their initial frames, so a
resample draws seeds with replacement and keeps the same seeds for every strategy,
and the table is recomputed from the resampled seed means (``data_efficiency``'s own
functions). With 3-5 seeds this is a rough interval, but it tells a ratio that five
seeds pin from one that a single seed moves.

Run ``python benchmarks/goal_summary.py``; it prints a Markdown table and writes
``benchmarks/results/goal_summary.json`` and ``.png``.

A seed-mean curve that dips below random's error and comes back up is credited with
the dip by the issue's measure (labels at which a strategy *first* reaches random's
error); each row also gives the stricter one, labels from which the curve *stays*
below (``ratio_staying_below`` in ``data_efficiency``'s tables), and the goal's
verdict under it.

Which strategies count against the goal ("alflow needs ≤ 0.5× the labels of random,
and fewer than every other strategy"): alflow is the default policy on the committee
(``alflow``); its variants (``alflow-shallow``, ``alflow-gap``, ``alflow-energy``) are
shown beside it; the other tools' strategies are ``dpgen`` and ``soap-fps``; the
``oracle`` (picks by the true error) is a reference no campaign can run, and the
``design-*`` strategies are experiments that campaigns do not offer. Where one of the
other tools' strategies was not run, a row that would meet the goal gets no verdict.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from common import run_metadata, save_figure, write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

ALFLOW = "alflow"
ALFLOW_VARIANTS = ("alflow-shallow", "alflow-gap", "alflow-energy")
OTHER_TOOLS = ("dpgen", "soap-fps")
REFERENCE = "oracle"
GOAL_RATIO = 0.5
#: seed resamples per results file, and the central share of them an interval holds
RESAMPLES = 1000
INTERVAL = 0.9


def scorer_label(meta: dict[str, Any]) -> str:
    """Short name of the scored model: MACE, or GAP with what sets it apart from
    today's ``GAPConfig`` defaults (the older default sigma, a larger SOAP)."""
    if meta.get("scorer") != "gap":
        return f"MACE, {meta.get('min_steps')} steps"
    from data_efficiency import GAP_CONFIG_BEFORE, gap_config, recorded_gap_config

    used, today = recorded_gap_config(meta), gap_config({})
    parts = []
    if used["default_sigma"] == GAP_CONFIG_BEFORE["default_sigma"]:
        parts.append("old σ 0.005/0.1")
    elif used["default_sigma"] != today["default_sigma"]:
        parts.append("σ " + "/".join(f"{s:g}" for s in used["default_sigma"][:2]))
    soap = ("soap_l_max", "soap_n_max", "soap_cutoff", "soap_n_sparse")
    if any(used[k] != today[k] for k in soap):
        parts.append(
            f"SOAP l{used['soap_l_max']} n{used['soap_n_max']} {used['soap_cutoff']:g} Å, "
            f"{used['soap_n_sparse']} sparse"
        )
    return "GAP" + (", " + ", ".join(parts) if parts else " (default)")


def rows_of(results: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One row per test set of a results JSON: each strategy's labels ratio to random
    (None: not reached), and whether alflow meets goal 1 there; the same for the
    labels from which the curves stay below random's error."""
    from data_efficiency import mean_curves, summary_table

    meta = results["meta"]
    tests = list(results["table"])
    resampled = resampled_ratios(results["runs"], tests)
    staying_table = summary_table(mean_curves(results["runs"], tests), tests)
    rows = []
    for test, entry in results["table"].items():
        ratios = {
            strategy: value["ratio_to_random"] for strategy, value in entry["strategies"].items()
        }
        staying = {
            strategy: value["ratio_staying_below"]
            for strategy, value in staying_table[test]["strategies"].items()
        }
        draws = resampled[FIRST][test]
        rows.append(
            {
                "source": source,
                "dataset": results["dataset"],
                "test": test,
                "scorer": scorer_label(meta),
                "seeds": meta.get("seeds"),
                "budget": entry["random_labels"],
                "target_force_rmse_mev": entry["target_force_rmse"] * 1000,
                "ratios": ratios,
                "intervals": {strategy: interval(d) for strategy, d in draws.items()},
                "goal_met": goal_met(ratios),
                "goal_met_share": goal_met_share(draws),
                "missing_tools": [tool for tool in OTHER_TOOLS if tool not in ratios],
                "ratios_staying_below": staying,
                "goal_met_staying_below": goal_met(staying),
                "goal_met_staying_below_share": goal_met_share(resampled[STAYING][test]),
            }
        )
    return rows


#: the two measures of "labels to reach random's error": first reached, reached for good
FIRST, STAYING = "ratio_to_random", "ratio_staying_below"


def resampled_ratios(
    runs: dict[str, list[list[dict[str, Any]]]], tests: list[str], seed: int = 0
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Each strategy's labels ratio to random in ``RESAMPLES`` resamples of the seeds
    (the same seeds for every strategy; ``inf`` where random's error is not reached),
    by both measures: ``out[FIRST or STAYING][test][strategy]``."""
    from data_efficiency import mean_curves, summary_table

    rng = np.random.default_rng(seed)
    seeds = len(runs["random"])
    out = {
        measure: {test: {strategy: np.empty(RESAMPLES) for strategy in runs} for test in tests}
        for measure in (FIRST, STAYING)
    }
    for draw in range(RESAMPLES):
        chosen = rng.integers(0, seeds, size=seeds)
        sample = {strategy: [curves[i] for i in chosen] for strategy, curves in runs.items()}
        table = summary_table(mean_curves(sample, tests), tests)
        for test in tests:
            for strategy, value in table[test]["strategies"].items():
                for measure in (FIRST, STAYING):
                    ratio = value[measure]
                    out[measure][test][strategy][draw] = np.inf if ratio is None else ratio
    return out


def interval(draws: np.ndarray) -> list[float | None]:
    """The central ``INTERVAL`` of the resampled ratios; an end beyond every reached
    ratio (random's error not reached in those resamples) is None."""
    tail = (1 - INTERVAL) / 2
    ends = np.quantile(draws, [tail, 1 - tail], method="nearest")
    return [None if not np.isfinite(end) else float(end) for end in ends]


def goal_met_share(draws: dict[str, np.ndarray]) -> float | None:
    """Share of the seed resamples in which goal 1 holds against the other tools'
    strategies that were run (None without alflow)."""
    if ALFLOW not in draws:
        return None
    met = [
        beats_tools_run({s: None if np.isinf(d[i]) else float(d[i]) for s, d in draws.items()})
        for i in range(RESAMPLES)
    ]
    return float(np.mean(met))


def goal_met(ratios: dict[str, float | None]) -> bool | None:
    """Goal 1 on one test: alflow at ≤ 0.5× random's labels and below every other
    tool's strategy (one that never reaches random's error counts as above). None
    where alflow was not run, or where it beats the other tools that were run but
    one of them was not."""
    if ALFLOW not in ratios:
        return None
    if not beats_tools_run(ratios):
        return False
    return True if all(tool in ratios for tool in OTHER_TOOLS) else None


def beats_tools_run(ratios: dict[str, float | None]) -> bool:
    """alflow at ≤ 0.5× random's labels and below each other tool's strategy that
    was run (one that never reaches random's error counts as above)."""
    mine = ratios[ALFLOW]
    if mine is None or mine > GOAL_RATIO:
        return False
    others = [ratios[s] for s in OTHER_TOOLS if s in ratios]
    return all(theirs is None or mine < theirs for theirs in others)


def collect(folder: Path) -> list[dict[str, Any]]:
    """Rows of every data-efficiency results JSON under ``folder`` that compares at
    least one strategy with random sampling."""
    rows = []
    for path in sorted(folder.rglob("data_efficiency_*.json")):
        results = json.loads(path.read_text())
        runs = results.get("runs", {})
        if "random" not in runs or len(runs) < 2:
            continue
        rows.extend(rows_of(results, str(path.relative_to(folder))))
    return sorted(rows, key=row_order)


def row_order(row: dict[str, Any]) -> tuple:
    """Rows by dataset and test, then MACE before GAP, old GAP default before today's
    before other settings, then by budget."""
    scorer = row["scorer"]
    if scorer.startswith("MACE"):
        rank = 0
    elif "old σ" in scorer:
        rank = 1
    else:
        rank = 2 if scorer == "GAP (default)" else 3
    return (row["dataset"], row["test"], rank, row["budget"], row["source"])


def fmt(ratio: float | None) -> str:
    """Two decimals, three next to the goal's line (0.5001 is not 0.50)."""
    if ratio is None:
        return "n.r."
    return f"{ratio:.3f}" if abs(ratio - GOAL_RATIO) < 0.005 else f"{ratio:.2f}"


def best(ratios: dict[str, float | None], names: tuple[str, ...]) -> str:
    """The strategy of ``names`` that needs the fewest labels, with its ratio."""
    run = [(ratios[n], n) for n in names if n in ratios]
    reached = sorted((r, n) for r, n in run if r is not None)
    if reached:
        return f"{reached[0][1]} {fmt(reached[0][0])}"
    return "n.r." if run else "–"


def with_interval(row: dict[str, Any], strategy: str) -> str:
    """A strategy's ratio and its resampled interval, e.g. ``0.61 (0.52-0.70)``."""
    if strategy not in row["ratios"]:
        return "–"
    low, high = row["intervals"][strategy]
    return f"{fmt(row['ratios'][strategy])} ({fmt(low)}-{fmt(high)})"


def verdict(row: dict[str, Any], staying: bool = False) -> str:
    """Goal 1 on a row (by the first-reached measure, or with ``staying`` the
    stays-below one), with the share of seed resamples in which it holds."""
    suffix = "_staying_below" if staying else ""
    met, share = row[f"goal_met{suffix}"], row[f"goal_met{suffix}_share"]
    if share is None:
        return "–"
    if met is None:  # beats the tools that were run, not all were
        return f"no verdict: {', '.join(row['missing_tools'])} not run ({100 * share:.0f} %)"
    return f"{'met' if met else 'not met'} ({100 * share:.0f} %)"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| results | test (random's error) | scorer | labels × seeds | alflow "
        "| best variant | best other tool | oracle | goal 1 (share of resamples) "
        "| goal 1, staying below |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = row["ratios"]
        lines.append(
            f"| {row['source']} | {row['dataset']} {row['test']} "
            f"({row['target_force_rmse_mev']:.0f} meV/Å) | {row['scorer']} "
            f"| {row['budget']:.0f} × {row['seeds']} | {with_interval(row, ALFLOW)} "
            f"| {best(ratios, ALFLOW_VARIANTS)} | {best(ratios, OTHER_TOOLS)} "
            f"| {fmt(ratios[REFERENCE]) if REFERENCE in ratios else '–'} | {verdict(row)} "
            f"| {verdict(row, staying=True)} |"
        )
    return "\n".join([*lines, "", staying_note(rows)])


def staying_note(rows: list[dict[str, Any]]) -> str:
    """Where the two measures differ: strategies whose seed-mean curve reached random's
    error and came back above it."""
    differ = [
        f"{row['source']} {row['test']} {strategy} "
        f"({fmt(row['ratios'][strategy])} → {fmt(staying)})"
        for row in rows
        for strategy, staying in row["ratios_staying_below"].items()
        if staying != row["ratios"][strategy]
    ]
    if not differ:
        return (
            f"In all {len(rows)} rows every strategy's seed-mean curve stays below random's "
            "error once it reaches it: both measures agree."
        )
    return "Curves that reach random's error and come back above it: " + "; ".join(differ) + "."


def row_label(row: dict[str, Any]) -> str:
    """A figure row's name: dataset, test, scorer, random's budget and seeds."""
    test = row["test"].removeprefix("test_").removeprefix("MD_").replace("_", " ")
    return (
        f"{row['dataset']} {test} · {row['scorer']} · "
        f"{row['budget']:.0f} labels × {row['seeds']} seeds"
    )


#: x position of "not reached" in the figure, right of every reached ratio
NOT_REACHED_AT = 1.12


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from data_efficiency import strategy_style

    fig, ax = plt.subplots(figsize=(13.5, 0.36 * len(rows) + 2))
    shown: set[str] = set()
    for y, row in enumerate(rows):
        for strategy, ratio in row["ratios"].items():
            if strategy == "random":
                continue
            # the oracle black: strategy_style's grey is design-variance's colour too
            style = {"c": "k"} if strategy == REFERENCE else strategy_style(strategy)
            reached = ratio is not None
            ax.plot(
                ratio if reached else NOT_REACHED_AT,
                y,
                marker="o" if strategy == ALFLOW else ("s" if strategy == REFERENCE else "D"),
                ms=9 if strategy == ALFLOW else 6,
                mfc=style["c"] if reached else "none",
                mec=style["c"],
                ls="none",
                label=None if strategy in shown else strategy,
                zorder=3 if strategy == ALFLOW else 2,
            )
            shown.add(strategy)
        if ALFLOW in row["intervals"]:
            low, high = row["intervals"][ALFLOW]
            ax.plot(
                [low if low is not None else NOT_REACHED_AT, high or NOT_REACHED_AT],
                [y, y],
                c=strategy_style(ALFLOW)["c"],
                lw=2,
                alpha=0.5,
                label=None if y else f"alflow, {INTERVAL:.0%} of seed resamples",
            )
    ax.axvline(GOAL_RATIO, c="k", ls="--", lw=1, label="goal: 0.5× random's labels")
    ax.axvline(1.0, c="grey", lw=1)
    ax.axvspan(1.06, 1.18, color="0.93", zorder=0)
    ax.text(NOT_REACHED_AT, -0.9, "not\nreached", ha="center", va="top", fontsize=7)
    ax.set_yticks(range(len(rows)), [row_label(r) for r in rows], fontsize=7)
    for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color({True: "tab:green", False: "black", None: "grey"}[row["goal_met"]])
    for y in range(1, len(rows)):
        if (rows[y]["dataset"], rows[y]["test"]) != (rows[y - 1]["dataset"], rows[y - 1]["test"]):
            ax.axhline(y - 0.5, c="0.6", lw=0.6)
    ax.set_ylim(len(rows) - 0.5, -1.8)
    ax.set_xlim(0.2, 1.18)
    ax.set_xlabel("labels to reach random sampling's force RMSE at its largest budget / random's")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(
        fig,
        "Goal 1: labels to reach random's error, ratio to random (green rows: goal met)",
        meta,
        path,
    )


def source_commits(folder: Path, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each results file read, with the commit that wrote it."""
    sources = sorted({row["source"] for row in rows})
    return [
        {"path": source, "commit": json.loads((folder / source).read_text())["meta"]["commit"]}
        for source in sources
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder searched")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = collect(args.results)
    if not rows:
        raise SystemExit(
            f"no data_efficiency_*.json with strategies besides random in {args.results}"
        )
    meta = run_metadata(files=source_commits(args.results, rows))
    print(markdown(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "goal_summary.json", {"rows": rows, "meta": meta}, indent=1)
    plot(rows, meta, args.out / "goal_summary.png")
    print(f"\nwrote {args.out / 'goal_summary.json'} and .png")


if __name__ == "__main__":
    main()
