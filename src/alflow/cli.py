"""The ``alflow`` command.

Exit codes: 0 success, 1 a run failed, 2 bad input (config, folder), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from alflow import __version__
from alflow.config_loader import ConfigError, Problem, load_campaign

if TYPE_CHECKING:
    from rich.status import Status

    from alflow.config import Campaign
    from alflow.state import CampaignState

console = Console(stderr=True, highlight=False, soft_wrap=True)
# tables stay readable when output goes to a file or CI log (no terminal width)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 132)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``alflow`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as err:
        for problem in err.problems:
            console.print(str(problem), markup=False)
        console.print(f"{len(err.problems)} problem(s); nothing was run.", style="red")
        return 2
    except FileNotFoundError as err:
        console.print(f"error: {err}", style="red", markup=False)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alflow",
        description="Active learning of machine-learned interatomic potentials.",
    )
    parser.add_argument("--version", action="version", version=f"alflow {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("validate", help="check a campaign file without running it")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON schema of campaign files")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("run", help="run (or resume) a campaign on this machine")
    p.add_argument("file", type=Path)
    p.add_argument("--dir", type=Path, help="campaign folder (default: from the file)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="print the iterations of a campaign")
    p.add_argument("dir", type=Path)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="write the labelled dataset as extxyz")
    p.add_argument("dir", type=Path)
    p.add_argument("-o", "--output", type=Path, help="file to write (default: DIR/dataset.xyz)")
    p.add_argument("--failed", action="store_true", help="include failed labels")
    p.set_defaults(func=cmd_export)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a campaign file."""
    campaign = load_campaign(args.file)
    out.print(
        f"{args.file}: OK — campaign '{campaign.name}', labeller "
        f"'{campaign.label.calculator}', {model_summary(campaign)}, up to "
        f"{campaign.stop.max_iterations} iterations; results in "
        f"{campaign.campaign_dir()}",
        markup=False,
    )
    return 0


def model_summary(campaign: Campaign) -> str:
    """One phrase for the campaign's models and uncertainty estimator."""
    train = campaign.train
    if train.model == "gap":
        return "GAP with predictive-variance uncertainty"
    if train.uncertainty == "shallow":
        text = f"MACE with a {train.shallow_members}-member shallow ensemble"
    else:
        text = f"committee of {train.committee} MACE models"
    if train.foundation is not None:
        text += f" fine-tuned ({train.foundation.mode}) from {train.foundation.path.name}"
    return text


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema."""
    from alflow.config import Campaign

    out.print_json(json.dumps(Campaign.model_json_schema()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run or resume a campaign locally on the embedded store."""
    from jobflow import run_locally

    from alflow.campaign import campaign_flow
    from alflow.decide import decide
    from alflow.query import dataset, latest_state
    from alflow.store import CampaignPaths, embedded_store, save_campaign

    campaign = load_campaign(args.file)
    root = args.dir.resolve() if args.dir else campaign.campaign_dir()
    campaign = campaign.model_copy(update={"output": root})
    paths = CampaignPaths(root)
    root.mkdir(parents=True, exist_ok=True)
    store = embedded_store(root)
    state = latest_state(store, campaign.name)
    if state is not None:
        check_level_of_theory(store, campaign, str(args.file))
    if state is not None and state.stopped:
        decision = decide(state.history, campaign.stop, state.labels_used)
        if decision.kind == "failures" and _label_settings_changed(paths, campaign):
            console.print("the label settings changed since the failures; trying again")
        elif decision.stop:
            console.print(f"campaign '{campaign.name}' already finished: {decision.reason}")
            _print_status(campaign, state)
            return 0
        console.print(
            f"campaign '{campaign.name}' had stopped ({state.stop_reason}); its new stop "
            "criteria allow more, so it continues"
        )
        state = state.model_copy(update={"stopped": False, "stop_reason": None})
    elif state is not None:
        console.print(
            f"resuming '{campaign.name}' after iteration {state.iteration}; labels in "
            "the dataset are reused, never recomputed"
        )
    save_campaign(paths, campaign)
    labels = dataset(store, campaign.name).count("ok")
    handlers = _attach_logging(paths.log)
    started = time.perf_counter()
    try:
        with console.status("starting", spinner="dots") as status:
            printer = ProgressPrinter(status, labels, started)
            logging.getLogger("alflow.progress").addHandler(printer)
            handlers.append(printer)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                run_locally(
                    campaign_flow(campaign, state),
                    store=store,
                    log=False,
                    root_dir=paths.scratch,
                    raise_immediately=True,
                )
    except KeyboardInterrupt:
        console.print(
            "interrupted. Run the same command again to resume; finished labels are kept.",
            style="yellow",
        )
        return 130
    except Exception as err:
        logging.getLogger("alflow").exception("campaign run failed")
        console.print(
            f"run failed: {type(err).__name__}: {err}\nfull traceback in {paths.log}; "
            "fix the cause and run the same command again to resume.",
            style="red",
            markup=False,
        )
        return 1
    finally:
        _detach_logging(handlers)
    final = latest_state(store, campaign.name)
    if final is not None:
        _print_status(campaign, final)
    return 0


def check_level_of_theory(store: Any, campaign: Campaign, source: str) -> None:
    """Refuse to resume with a labeller at another level of theory (exit code 2)."""
    from alflow.dataset import mixed_levels_message
    from alflow.query import dataset

    if campaign.label.allow_mixed_levels:
        return
    lot = campaign.label.level_of_theory()
    other = dataset(store, campaign.name).other_level(lot.settings_hash)
    if other is not None:
        raise ConfigError([Problem(source, None, "label", mixed_levels_message(other, lot))])


def _label_settings_changed(paths: Any, campaign: Campaign) -> bool:
    """Whether the label section differs from the one the campaign last ran with."""
    from alflow.store import load_saved_campaign

    try:
        saved = load_saved_campaign(paths.root)
    except FileNotFoundError:
        return True
    return saved.label.model_dump() != campaign.label.model_dump()


def cmd_status(args: argparse.Namespace) -> int:
    """Print the status table of a campaign folder."""
    from alflow.query import dataset, latest_state
    from alflow.store import embedded_store, load_saved_campaign

    campaign = load_saved_campaign(args.dir)
    store = embedded_store(args.dir)
    state = latest_state(store, campaign.name)
    if state is None:
        console.print(f"campaign '{campaign.name}' has not finished an iteration yet")
        return 0
    _print_status(campaign, state)
    if not state.stopped:
        entries = dataset(store, campaign.name).entries()
        running = sum(e.iteration > state.iteration for e in entries)
        out.print(
            f"not finished: iteration {state.iteration + 1} is running or was interrupted "
            f"({running} labels made in it so far)"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the dataset as extxyz."""
    from alflow.query import export_dataset
    from alflow.store import embedded_store, load_saved_campaign

    campaign = load_saved_campaign(args.dir)
    target = args.output or (args.dir / "dataset.xyz")
    n = export_dataset(embedded_store(args.dir), campaign.name, target, args.failed)
    out.print(f"wrote {n} frames to {target}")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _print_status(campaign: Campaign, state: CampaignState) -> None:
    from alflow.query import status_rows

    table = Table(title=f"campaign {campaign.name}")
    columns = [
        ("iter", "iteration", "d"),
        ("labels new", "labels_new", "d"),
        ("labels total", "labels_total", "d"),
        ("dev. median eV/Å", "median_deviation", ".3f"),
        ("accurate", "accurate", ".0%"),
        ("candidate", "candidate", ".0%"),
        ("failed", "failed", ".0%"),
        ("failed labels", "labels_failed", "d"),
        ("E RMSE meV/atom", "energy_rmse_mev_atom", ".2f"),
        ("F RMSE meV/Å", "force_rmse_mev_a", ".1f"),
        ("CPU-h", "cpu_h", ".3f"),
        ("kWh", "kwh", ".4f"),
    ]
    for title, _, _ in columns:
        table.add_column(title, justify="right")
    rows = status_rows(state)
    for row in rows:
        table.add_row(*[_fmt(row[key], spec) for _, key, spec in columns])
    out.print(table)
    total = state.cumulative_compute().get("total")
    if total is not None:
        out.print(
            f"total: {total.cpu_hours:.3f} CPU-h, {total.energy_kwh:.4f} kWh, "
            f"{total.co2e_kg * 1000:.1f} g CO2e, {sum(r['wall_s'] for r in rows) / 60:.1f} "
            "min wall",
        )
    for record in state.history:
        for line in record.failures[:5]:
            out.print(f"iteration {record.iteration} failed label {line}", markup=False)
        if len(record.failures) > 5:
            out.print(f"iteration {record.iteration}: {len(record.failures) - 5} more failures")
    methods = {
        m.compute.energy_method for r in state.history for m in r.models if m.compute is not None
    }
    for method in sorted(methods):
        out.print(f"energy: {method}; CO2e at {campaign.accounting.grid_gco2_per_kwh} g/kWh")
    if state.stopped:
        out.print(f"stopped: {state.stop_reason}")


def _attach_logging(log_file: Path) -> list[logging.Handler]:
    """Log the campaign to its folder and warnings to the terminal."""
    logger = logging.getLogger("alflow")
    logger.setLevel(logging.INFO)
    # a dependency may have configured the root logger; alflow's records go only here
    logger.propagate = False
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(to_file)
    logger.addHandler(to_console)
    return [to_file, to_console]


def _detach_logging(handlers: list[logging.Handler]) -> None:
    for name in ("alflow", "alflow.progress"):
        for handler in handlers:
            logging.getLogger(name).removeHandler(handler)
    for handler in handlers:
        handler.close()


class ProgressPrinter(logging.Handler):
    """Shows progress events: milestones as lines, step counters on a live line."""

    def __init__(self, status: Status, labels: int, started: float) -> None:
        super().__init__(logging.INFO)
        self.status = status
        self.labels = labels
        self.started = started
        self._last_line = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        """Print or refresh the live line for one event."""
        event: Any = getattr(record, "progress", None)
        if event is None:
            return
        if event.extra.get("label_status") == "ok":
            self.labels += 1
        elapsed = time.perf_counter() - self.started
        count = f" [{event.done}/{event.total}]" if event.total else ""
        text = (
            f"{int(elapsed // 60):3d}:{int(elapsed % 60):02d}  iteration {event.iteration}  "
            f"{event.stage:<8} {event.message}{count}  | labels {self.labels}"
        )
        self.status.update(text)
        ongoing = event.total is not None and event.done is not None and event.done < event.total
        if not ongoing or (not console.is_terminal and elapsed - self._last_line > 30):
            console.print(text, markup=False, soft_wrap=True)
            self._last_line = elapsed
