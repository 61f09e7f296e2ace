"""Run one reference calculation in a child process, with a hard time limit.

A DFT code can hang, segfault, or exhaust memory; none of that may take the campaign
down. :func:`run_isolated` starts a fresh interpreter (``spawn``: no inherited
OpenMP or torch state, which is not fork-safe), runs the calculation there in its
own process group, and kills the whole group (the DFT code's own subprocesses
included) when the time limit passes. The child is a direct child of the job's
process, so its CPU time shows up in the job's accounting.

This module is imported by the child: it must stay light (no torch, no jobflow).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from alflow.frames import Frame
    from alflow.label.registry import LabelSettings

_GRACE_S = 2.0


@dataclass
class RawLabel:
    """Numbers returned by a labeller (before plausibility checks)."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


@dataclass
class Outcome:
    """Result of one attempt: a label or the reason there is none."""

    label: RawLabel | None
    reason: str | None
    wall_s: float


def calculate(frame: Frame, settings: LabelSettings) -> RawLabel:
    """Run the labeller on ``frame`` in this process (raises on failure)."""
    atoms = frame.to_atoms(with_labels=False)
    atoms.calc = settings.make()
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces(), dtype=float)
    stress = None
    if atoms.pbc.all() and "stress" in atoms.calc.implemented_properties:
        stress = np.asarray(atoms.get_stress(voigt=True), dtype=float)
    return RawLabel(energy, forces, stress)


def _child(conn: Any, frame: Frame, settings: LabelSettings, folder: str) -> None:
    """Entry point of the child process."""
    os.setpgrp()  # own process group, so a timeout can kill the DFT code's children
    try:
        os.chdir(folder)
        conn.send(("ok", calculate(frame, settings)))
    except BaseException as err:  # report every failure, then exit
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def run_in_process(frame: Frame, settings: LabelSettings) -> Outcome:
    """Run the labeller here (for labellers that isolate their own runs)."""
    start = time.perf_counter()
    try:
        label = calculate(frame, settings)
    except Exception as err:  # any labeller error is this frame's failure
        return Outcome(None, f"{type(err).__name__}: {err}", time.perf_counter() - start)
    return Outcome(label, None, time.perf_counter() - start)


def run_isolated(
    frame: Frame, settings: LabelSettings, timeout_s: float | None, folder: Path
) -> Outcome:
    """Run the labeller in a child process; never raises for labeller failures.

    Parameters
    ----------
    frame
        Structure to label.
    settings
        Labeller settings (picklable).
    timeout_s
        Wall-time limit in seconds; None waits for ever.
    folder
        Working folder of the calculation (must exist).
    """
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, frame, settings, str(folder)), daemon=True)
    start = time.perf_counter()
    process.start()
    send.close()
    ready = False
    try:
        ready = receive.poll(timeout_s)
        message = receive.recv() if ready else None
    except EOFError:
        message = None  # the child died without a word: a crash
    finally:
        receive.close()
    wall = time.perf_counter() - start
    if not ready:
        _kill_group(process)
        return Outcome(None, f"timeout: no result after {timeout_s:g} s; killed", wall)
    # The pipe closes while the child is still exiting: wait for its exit status
    # instead of mistaking a crash for a timeout.
    process.join(_GRACE_S)
    if process.is_alive():
        _kill_group(process)
    if message is None:
        return Outcome(None, f"crashed: labeller process ended with {_exit(process)}", wall)
    kind, payload = message
    if kind == "ok":
        return Outcome(payload, None, wall)
    return Outcome(None, payload, wall)


def _exit(process: mp.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _kill_group(process: mp.process.BaseProcess) -> None:
    """Terminate the child's process group, then kill what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.terminate()  # still starting: its own group does not exist yet
    process.join(_GRACE_S)
    if process.is_alive():
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            process.kill()
    process.join()
