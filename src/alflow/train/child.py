"""Run a training program as a child process, its output streamed to a log file.

Trainers (mace-torch, gap_fit) run as children: they configure global state
(logging, torch defaults, a Fortran runtime that may abort) that must not leak into
the workflow process, and their CPU time is then measured exactly.

Python trainers run through :func:`run_module`: a fork server
(:mod:`alflow.train.forkserver`) imports the trainer's module once, and every
training is a fresh process forked from it. Importing
mace-torch (torch, torch._dynamo, e3nn, scipy.signal) takes ~8 s of CPU, more than
training a small committee member for 30 epochs; a campaign that trains K members
per iteration paid it K times per iteration (benchmarks/train_startup.py measures
both ways side by side). Set ``ALFLOW_NO_FORKSERVER=1`` to start every training as
a new interpreter instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import psutil

from alflow.accounting import charge_detached_cpu, register_fork_server

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Seconds between reads of a forked run's log.
_POLL_S = 0.2


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


def forkserver_enabled() -> bool:
    """Whether :func:`run_module` forks from a fork server (Unix, unless switched off)."""
    if os.environ.get("ALFLOW_NO_FORKSERVER", "").strip() not in ("", "0"):
        return False
    return hasattr(os, "fork") and hasattr(os, "wait4")


class ForkServerError(RuntimeError):
    """The fork server could not start or stopped answering."""


class ForkServer:
    """A running :mod:`alflow.train.forkserver` with ``modules`` imported.

    One run at a time; :func:`run_module` keeps a pool for runs from several threads.
    """

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules
        # the server's own output (import warnings) is kept for error messages only
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alflow.train.forkserver", *modules],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        register_fork_server(self.process.pid)
        self._buffer = b""
        self._cpu_charged = 0.0
        try:
            self.receive(timeout=None)  # {"ready": true} once the imports are done
        except ForkServerError:
            self.close()
            raise

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process.poll() is None

    def send(self, request: dict[str, Any]) -> None:
        """One request line."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError as err:
            raise ForkServerError(f"fork server gone: {err}. {self._error_tail()}") from err

    def receive(self, timeout: float | None) -> dict[str, Any] | None:
        """The next answer, or None when none came within ``timeout`` seconds."""
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([descriptor], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise ForkServerError(f"fork server ended. {self._error_tail()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def uncharged_cpu(self) -> float:
        """The server's own CPU seconds (imports, forks) not yet charged to a meter."""
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0  # ended: its last seconds were charged at the previous run
        used = times.user + times.system
        fresh, self._cpu_charged = used - self._cpu_charged, used
        return max(0.0, fresh)

    def close(self) -> None:
        """Stop the server (it exits when its stdin closes)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._errors.close()

    def _error_tail(self) -> str:
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return "Its last output:\n" + "\n".join(lines[-15:]) if lines else "It wrote nothing."


_IDLE: list[ForkServer] = []
_IDLE_LOCK = threading.Lock()


def _acquire(modules: tuple[str, ...]) -> ForkServer:
    """An idle server with ``modules`` imported, started if there is none."""
    with _IDLE_LOCK:
        for server in list(_IDLE):
            if server.modules == modules and server.alive():
                _IDLE.remove(server)
                return server
    return ForkServer(modules)


def _release(server: ForkServer) -> None:
    with _IDLE_LOCK:
        if server.alive():
            _IDLE.append(server)


@atexit.register
def _stop_servers() -> None:
    with _IDLE_LOCK:
        while _IDLE:
            _IDLE.pop().close()


def run_module(
    module: str,
    argv: list[str],
    cwd: Path,
    log_path: Path,
    threads: int,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 25,
) -> tuple[int, list[str]]:
    """Run ``python -m module *argv`` in a fresh process, output written to ``log_path``.

    The process is forked from a fork server that has ``module`` imported (the first
    run starts the server and pays the import, later runs do not). Its CPU time and
    the server's are charged to the running meters
    (:func:`alflow.accounting.charge_detached_cpu`): the server, not this process,
    waits for it. Without fork support, or with ``ALFLOW_NO_FORKSERVER=1``, this is
    :func:`run_logged` on a new interpreter.

    Returns
    -------
    tuple
        The exit code and the last ``tail_lines`` lines of output, for error messages.
    """
    if not forkserver_enabled():
        return run_logged(
            [sys.executable, "-m", module, *argv], cwd, log_path, threads, on_line, tail_lines
        )
    try:
        server = _acquire((module,))
    except ForkServerError as err:  # it could not even import the module
        log_path.write_text(f"{err}\n")
        return -1, str(err).splitlines()[-tail_lines:]
    log_path.write_text("")
    request = {"module": module, "argv": argv, "cwd": str(cwd), "log": str(log_path)}
    try:
        server.send(request | {"threads": threads})
        server.receive(timeout=None)  # {"pid": ...}: the run has started
        ended, tail = _follow(log_path, lambda: server.receive(_POLL_S), on_line, tail_lines)
    except ForkServerError as err:
        charge_detached_cpu(server.uncharged_cpu())
        server.close()
        return -1, [*_last_lines(log_path, tail_lines), str(err)]
    except BaseException:  # interrupted mid-run: the server is not ready for another
        server.close()
        raise
    charge_detached_cpu(server.uncharged_cpu())
    _release(server)
    charge_detached_cpu(float(ended["cpu_s"]))
    return int(ended["exit"]), tail


def _follow(
    log_path: Path,
    wait_for_end: Callable[[], dict[str, Any] | None],
    on_line: Callable[[str], None] | None,
    tail_lines: int,
) -> tuple[dict[str, Any], list[str]]:
    """Pass the log's lines to ``on_line`` until the run ends; its end and last lines.

    ``wait_for_end`` returns the server's last answer, or None after waiting a
    moment while the run goes on.
    """
    tail: deque[str] = deque(maxlen=tail_lines)
    partial = ""
    with log_path.open(errors="replace") as log:
        while True:
            ended = wait_for_end()
            *lines, partial = (partial + log.read()).split("\n")
            for line in lines:
                tail.append(line.rstrip())
                if on_line is not None:
                    on_line(line + "\n")
            if ended is not None:
                break
    if partial:
        tail.append(partial.rstrip())
        if on_line is not None:
            on_line(partial)
    return ended, list(tail)


def _last_lines(log_path: Path, count: int) -> list[str]:
    try:
        return log_path.read_text(errors="replace").rstrip().splitlines()[-count:]
    except OSError:
        return []
