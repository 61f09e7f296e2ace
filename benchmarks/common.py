"""What every benchmark result records: commit, date and machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def _source_state() -> str:
    """Short commit of the checkout, with '+dirty' for uncommitted changes to the
    package, the benchmark scripts or ``pyproject.toml``, new files among them included
    (results written by an earlier run, and Markdown being edited while a benchmark
    runs, do not count: neither changes its numbers)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    changed = git(
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        "../src",
        "../pyproject.toml",
        ".",
        ":!results",
        ":!*.md",
    )
    if changed.strip():
        commit += "+dirty"
    return commit


#: The source a benchmark runs with: read when the script starts, since the
#: checkout may move on while a long benchmark runs.
STARTED_AT = _source_state()


def usable_cores() -> int:
    """Cores this process may run on (a cgroup or ``taskset`` may allow fewer than
    the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Commit at the start of the run, date (UTC), machine and ``extra``."""
    return {
        "commit": STARTED_AT,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {usable_cores()} cores",
        **extra,
    }


def write_json(path: Path, data: Any, indent: int | None = None, **dump: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: to a temporary file beside it,
    then renamed over it, so that a run killed while writing leaves the previous
    file (which may hold the only copy of reused curves) instead of a truncated one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(data, indent=indent, **dump))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def save_figure(fig: Any, title: str, meta: dict[str, Any], path: Path) -> None:
    """Stamp ``fig`` with ``title`` and the run's commit, date and machine; save it."""
    fig.suptitle(f"{title}\n{meta['commit']}, {meta['date']}, {meta['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def copper_campaign(
    folder: Path,
    name: str,
    *,
    seed: int,
    epochs: int,
    threads: int,
    steps: int,
    iterations: int,
    temperature_k: float | list[float],
    select: dict[str, Any],
    bootstrap: dict[str, Any],
    validation: str,
    train: dict[str, Any] | None = None,
    explore: dict[str, Any] | None = None,
    stop: dict[str, Any] | None = None,
) -> Any:
    """An fcc copper (EMT) campaign of the default shape: committee of 4, 2 MD runs.

    ``folder`` must hold ``cu.xyz`` and the ``validation`` file; the campaign writes
    to ``folder/name``. ``train``, ``explore`` and ``stop`` add or override training,
    MD and stopping settings.
    """
    from alflow.config import Campaign

    return Campaign.model_validate(
        {
            "name": name,
            "seed": seed,
            "output": str(folder / name),
            "system": {"structures": "cu.xyz"},
            "data": {"bootstrap": bootstrap, "validation": validation},
            "label": {"calculator": "emt"},
            "train": {"committee": 4, "epochs": epochs, "threads": threads, **(train or {})},
            "explore": {
                "runs": 2,
                "steps": steps,
                "timestep_fs": 2.0,
                "temperature_K": temperature_k,
                "record_every": 10,
                **(explore or {}),
            },
            "select": select,
            # accurate_fraction 0.999: the run lasts its iterations, for comparable costs
            "stop": {"max_iterations": iterations, "accurate_fraction": 0.999, **(stop or {})},
        },
        context={"base_dir": str(folder)},
    )
