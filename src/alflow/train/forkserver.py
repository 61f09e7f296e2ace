"""A fork server for Python trainers: import once, fork a fresh process per run.

Started as ``python -m alflow.train.forkserver MODULE ...`` by
:mod:`alflow.train.child`. It imports the modules, answers ``{"ready": true}``, then
reads one JSON request per line on stdin::

    {"module": ..., "argv": [...], "cwd": ..., "log": ..., "threads": n}

For each it forks; the forked process runs ``python -m module *argv`` in ``cwd``
with its output appended to ``log`` and exits. The server answers ``{"pid": ...}``
when the process starts and ``{"exit": code, "cpu_s": seconds}`` when it ends, the
CPU time (the process and what it waited for) from ``wait4``.

The server stays single-threaded and never runs torch operations, so the forked
process starts without OpenMP state. This module is the server's ``__main__``: it
imports nothing of alflow.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import traceback
from typing import Any

#: Where answers go: the original stdout. Imported modules print (mace-torch does),
#: so file descriptor 1 is pointed at stderr before anything is imported.
_ANSWERS: Any = None


def reply(message: dict[str, Any]) -> None:
    """One answer line (flushed: a forked process must not inherit it)."""
    _ANSWERS.write(json.dumps(message) + "\n")
    _ANSWERS.flush()


def serve(modules: list[str]) -> None:
    """Import ``modules``, then run requests from stdin until it closes."""
    global _ANSWERS
    _ANSWERS = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for module in modules:
        importlib.import_module(module)
    reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_forked(request)  # never returns
        reply({"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        reply(
            {
                "exit": os.waitstatus_to_exitcode(status),
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
        )


def run_forked(request: dict[str, Any]) -> None:
    """Body of the forked process: run the module as ``__main__``, then exit."""
    code = 1
    try:
        _ANSWERS.close()  # answers are the server's; the pipe must close when it ends
        quiet = os.open(os.devnull, os.O_RDONLY)
        os.dup2(quiet, 0)  # the server's requests are not for the trainer
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(quiet)
        os.close(log)
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        threads = int(request["threads"])
        os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if "torch" in sys.modules:  # OpenMP read the environment when the server started
            sys.modules["torch"].set_num_threads(threads)
        sys.argv = [request["module"], *request["argv"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:  # the log is the only place a trainer's failure can go
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1:])
