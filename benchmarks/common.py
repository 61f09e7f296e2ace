"""What every benchmark result records: commit, date and machine."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Commit (with '+dirty' for uncommitted changes), date, machine and ``extra``."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    if git("status", "--porcelain", "--untracked-files=no", "--", "../src").strip():
        commit += "+dirty"
    return {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **extra,
    }
