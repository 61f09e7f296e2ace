"""Run a training program as a child process, its output streamed to a log file.

Trainers (mace-torch, gap_fit) run as children: they configure global state
(logging, torch defaults, a Fortran runtime that may abort) that must not leak into
the workflow process, and their CPU time is then measured exactly.
"""

from __future__ import annotations

import os
import subprocess
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def run_logged(
    command: list[str],
    cwd: Path,
    log_path: Path,
    threads: int,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 25,
) -> tuple[int, list[str]]:
    """Run ``command`` with ``threads`` OpenMP/MKL threads, writing its output to ``log_path``.

    Returns
    -------
    tuple
        The exit code and the last ``tail_lines`` lines of output, for error messages.
    """
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    tail: deque[str] = deque(maxlen=tail_lines)
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if on_line is not None:
                on_line(line)
    return proc.returncode, list(tail)
