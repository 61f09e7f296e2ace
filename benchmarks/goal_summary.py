"""Goal 1 at a glance: every committed data-efficiency table in one figure.

``data_efficiency.py`` writes one results JSON per replay (dataset, scorer, budget,
strategies); the README discusses each. This script reads all of them under
``benchmarks/results/`` and puts, for each results file and test set, the labels each
strategy needs to reach random sampling's force RMSE at its largest budget (as a
ratio to random's labels) on one row, beside the goal's 0.5× line. Nothing is
replayed or refitted: the numbers are the JSONs' ``table`` sections.

Run ``python benchmarks/goal_summary.py``; it prints a Markdown table and writes
``benchmarks/results/goal_summary.json`` and ``.png``.

Which strategies count against the goal ("alflow needs ≤ 0.5× the labels of random,
and fewer than every other strategy"): alflow is the default policy on the committee
(``alflow``); its variants (``alflow-shallow``, ``alflow-gap``, ``alflow-energy``) are
shown beside it; the other tools' strategies are ``dpgen`` and ``soap-fps``; the
``oracle`` (picks by the true error) is a reference no campaign can run, and the
``design-*`` strategies are experiments that campaigns do not offer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import run_metadata, save_figure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

ALFLOW = "alflow"
ALFLOW_VARIANTS = ("alflow-shallow", "alflow-gap", "alflow-energy")
OTHER_TOOLS = ("dpgen", "soap-fps")
REFERENCE = "oracle"
GOAL_RATIO = 0.5


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
    (None: not reached), and whether alflow meets goal 1 there."""
    meta = results["meta"]
    rows = []
    for test, entry in results["table"].items():
        ratios = {
            strategy: value["ratio_to_random"] for strategy, value in entry["strategies"].items()
        }
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
                "goal_met": goal_met(ratios),
            }
        )
    return rows


def goal_met(ratios: dict[str, float | None]) -> bool | None:
    """Goal 1 on one test: alflow at ≤ 0.5× random's labels and below every other
    tool's strategy that was run (one that never reaches random's error counts as
    above). None where alflow was not run."""
    if ALFLOW not in ratios:
        return None
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
        if set(results.get("runs", {})) <= {"random"}:
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


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| results | test (random's error) | scorer | labels | alflow | best variant "
        "| best other tool | oracle | goal 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = row["ratios"]
        met = {True: "met", False: "not met", None: "–"}[row["goal_met"]]
        lines.append(
            f"| {row['source']} | {row['dataset']} {row['test']} "
            f"({row['target_force_rmse_mev']:.0f} meV/Å) | {row['scorer']} "
            f"| {row['budget']:.0f} | {fmt(ratios[ALFLOW]) if ALFLOW in ratios else '–'} "
            f"| {best(ratios, ALFLOW_VARIANTS)} | {best(ratios, OTHER_TOOLS)} "
            f"| {fmt(ratios[REFERENCE]) if REFERENCE in ratios else '–'} | {met} |"
        )
    return "\n".join(lines)


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
    meta = run_metadata(files=sorted({r["source"] for r in rows}))
    print(markdown(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "goal_summary.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1))
    plot(rows, meta, args.out / "goal_summary.png")
    print(f"\nwrote {args.out / 'goal_summary.json'} and .png")


if __name__ == "__main__":
    main()
