"""Compute accounting: what each job used, and roll-ups per stage and iteration.

Every job of the loop runs inside a :class:`Meter`, which measures wall time, CPU
seconds of the process and of the child processes it waited for (external DFT codes
run as children), CPU seconds reported by processes that another process reaps (MACE
trainings forked by a fork server, see :func:`charge_detached_cpu`), and peak resident
memory of the whole process tree (sampled). Energy comes
from Intel RAPL counters when the kernel exposes them, otherwise from the power model
of Green Algorithms (Lannelongue, Grealey & Inouye, Adv. Sci. 2021):

    E = (CPU-seconds × W per core + wall seconds × GiB of memory × W per GiB) × PUE

CO2e is energy times a configurable grid carbon intensity. The method used is written
into every record so that numbers from different machines are never mixed silently.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Iterable

_J_PER_KWH = 3.6e6
_RAPL_ROOT = Path("/sys/class/powercap")


class EnergyModel(BaseModel):
    """Parameters that turn measured compute into energy and emissions."""

    model_config = ConfigDict(extra="forbid")

    cpu_watts_per_core: float = Field(
        12.0, gt=0, description="Power draw of one fully used CPU core (W)."
    )
    memory_watts_per_gib: float = Field(
        0.3725, ge=0, description="Power draw per GiB of memory in use (W)."
    )
    pue: float = Field(1.0, ge=1.0, description="Data-centre power usage effectiveness.")
    grid_gco2_per_kwh: float = Field(
        475.0, ge=0, description="Carbon intensity of the electricity (g CO2e/kWh)."
    )
    use_rapl: bool = Field(
        True, description="Use RAPL package energy counters when they are readable."
    )


class ComputeRecord(BaseModel):
    """Resources used by one job."""

    stage: str = Field(description="Loop stage: train, validate, explore, select, ...")
    job: str = Field("", description="Job name.")
    host: str = Field("", description="Host the job ran on.")
    started_at: str = Field("", description="UTC start time (ISO 8601).")
    wall_s: float = Field(0.0, description="Wall time (s).")
    cpu_s: float = Field(0.0, description="CPU time of the job and its children (s).")
    cpu_children_s: float = Field(0.0, description="Part of cpu_s used by children.")
    gpu_s: float = Field(0.0, description="GPU busy time (s); 0 on CPU machines.")
    cores: int = Field(1, ge=1, description="Cores the job occupied (threads x ranks).")
    peak_rss_mib: float = Field(0.0, description="Peak resident memory (MiB).")
    energy_kwh: float = Field(0.0, description="Energy (kWh).")
    co2e_kg: float = Field(0.0, description="Emissions (kg CO2e).")
    energy_method: str = Field("", description="How energy_kwh was obtained.")

    @property
    def cpu_hours(self) -> float:
        """CPU time in core-hours."""
        return self.cpu_s / 3600.0

    @property
    def core_hours(self) -> float:
        """Allocated core-hours: wall time x cores (what an HPC centre bills)."""
        return self.wall_s * self.cores / 3600.0


class StageTotals(BaseModel):
    """Sum of the records of one stage (or of everything).

    ``cpu_s`` is CPU time used; ``core_s`` is wall time x cores allocated.
    """

    jobs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    core_s: float = 0.0
    peak_rss_mib: float = 0.0
    energy_kwh: float = 0.0
    co2e_kg: float = 0.0

    @property
    def cpu_hours(self) -> float:
        """CPU time in core-hours."""
        return self.cpu_s / 3600.0

    @property
    def core_hours(self) -> float:
        """Allocated core-hours (wall x cores)."""
        return self.core_s / 3600.0


def energy_from_model(
    cpu_s: float, wall_s: float, peak_rss_mib: float, model: EnergyModel
) -> float:
    """Return the modelled energy (kWh) of a job."""
    joules = cpu_s * model.cpu_watts_per_core
    joules += wall_s * (peak_rss_mib / 1024.0) * model.memory_watts_per_gib
    return joules * model.pue / _J_PER_KWH


def add(a: StageTotals, record: ComputeRecord | StageTotals) -> StageTotals:
    """Return ``a`` plus one record (peak memory is a maximum, not a sum)."""
    jobs = 1 if isinstance(record, ComputeRecord) else record.jobs
    return StageTotals(
        jobs=a.jobs + jobs,
        wall_s=a.wall_s + record.wall_s,
        cpu_s=a.cpu_s + record.cpu_s,
        gpu_s=a.gpu_s + record.gpu_s,
        core_s=a.core_s
        + (record.wall_s * record.cores if isinstance(record, ComputeRecord) else record.core_s),
        peak_rss_mib=max(a.peak_rss_mib, record.peak_rss_mib),
        energy_kwh=a.energy_kwh + record.energy_kwh,
        co2e_kg=a.co2e_kg + record.co2e_kg,
    )


def roll_up(records: Iterable[ComputeRecord]) -> dict[str, StageTotals]:
    """Sum records per stage; the key ``"total"`` holds the grand total."""
    per_stage: dict[str, StageTotals] = defaultdict(StageTotals)
    total = StageTotals()
    for record in records:
        per_stage[record.stage] = add(per_stage[record.stage], record)
        total = add(total, record)
    return {**dict(sorted(per_stage.items())), "total": total}


def merge_roll_ups(
    roll_ups: Iterable[dict[str, StageTotals]],
) -> dict[str, StageTotals]:
    """Combine several roll-ups (e.g. iterations) into a cumulative one."""
    merged: dict[str, StageTotals] = defaultdict(StageTotals)
    for one in roll_ups:
        for stage, totals in one.items():
            merged[stage] = add(merged[stage], totals)
    return dict(merged)


def read_rapl_uj(root: Path = _RAPL_ROOT) -> tuple[int, int] | None:
    """Return (summed package energy in µJ, summed wrap range) or None if unreadable.

    Only top-level package domains (``intel-rapl:N``) are summed; their sub-domains
    are parts of them.
    """
    total = wrap = 0
    found = False
    for domain in sorted(root.glob("intel-rapl:*")):
        if domain.name.count(":") != 1:
            continue
        try:
            total += int((domain / "energy_uj").read_text())
            wrap += int((domain / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return None
        found = True
    return (total, wrap) if found else None


def rapl_delta_kwh(start: tuple[int, int], end: tuple[int, int]) -> float:
    """Energy between two RAPL readings (kWh), allowing one counter wrap."""
    delta = end[0] - start[0]
    if delta < 0:
        delta += end[1]
    return delta * 1e-6 / _J_PER_KWH


#: Fork servers: processes whose pages their forked children share (copy on write).
_FORK_SERVERS: set[int] = set()


def register_fork_server(pid: int) -> None:
    """Leave ``pid`` out of memory sums.

    The children a fork server forks share its pages and are counted; adding the
    server itself would count those pages twice.
    """
    _FORK_SERVERS.add(pid)


def _tree_rss_bytes(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (fork servers excepted)."""
    rss = 0
    try:
        rss = process.memory_info().rss
        for child in process.children(recursive=True):
            if child.pid in _FORK_SERVERS:
                continue
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                continue  # the child ended between listing and reading: nothing to add
    except psutil.Error:
        pass  # the process itself is gone; the sampler stops on the next tick
    return rss


#: Meters inside their ``with`` block, for :func:`charge_detached_cpu`.
_RUNNING: list[Meter] = []
_RUNNING_LOCK = threading.Lock()


def charge_detached_cpu(cpu_s: float) -> None:
    """Add CPU time that ``RUSAGE_CHILDREN`` cannot see to every running :class:`Meter`.

    A process forked by a fork server is the server's child, not this process's: its
    CPU time goes to the server when it exits. Whoever starts such a process reports
    its CPU time here; like a waited-for child, it counts for every meter running
    (nested meters all include their children).
    """
    with _RUNNING_LOCK:
        for meter in _RUNNING:
            meter.detached_cpu_s += cpu_s


class Meter:
    """Context manager that measures one job.

    Parameters
    ----------
    stage
        Loop stage the job belongs to.
    job
        Job name, for the record.
    energy_model
        Power model and grid intensity.
    sample_interval
        Seconds between memory samples.
    rapl_root
        Where the RAPL counters live (sysfs powercap).
    cores
        Cores the job occupies, for allocated core-hours.
    """

    def __init__(
        self,
        stage: str,
        job: str = "",
        energy_model: EnergyModel | None = None,
        sample_interval: float = 0.25,
        rapl_root: Path = _RAPL_ROOT,
        cores: int = 1,
    ) -> None:
        self.stage = stage
        self.cores = cores
        self.job = job
        self.energy_model = energy_model or EnergyModel()
        self.sample_interval = sample_interval
        self.rapl_root = rapl_root
        self.record: ComputeRecord | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._process = psutil.Process(os.getpid())
        self.detached_cpu_s = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_interval):
            self._peak = max(self._peak, _tree_rss_bytes(self._process))

    def __enter__(self) -> Meter:
        self._started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        self._self0 = resource.getrusage(resource.RUSAGE_SELF)
        self._child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._rapl0 = read_rapl_uj(self.rapl_root) if self.energy_model.use_rapl else None
        self._peak = _tree_rss_bytes(self._process)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.detached_cpu_s = 0.0
        with _RUNNING_LOCK:
            _RUNNING.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _RUNNING_LOCK:
            _RUNNING.remove(self)
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        self._peak = max(self._peak, _tree_rss_bytes(self._process))
        self_now = resource.getrusage(resource.RUSAGE_SELF)
        child_now = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_self = (self_now.ru_utime + self_now.ru_stime) - (
            self._self0.ru_utime + self._self0.ru_stime
        )
        cpu_children = (child_now.ru_utime + child_now.ru_stime) - (
            self._child0.ru_utime + self._child0.ru_stime
        )
        cpu_children += self.detached_cpu_s
        peak_mib = self._peak / 2**20
        self.record = self._make_record(wall, cpu_self + cpu_children, cpu_children, peak_mib)

    def _make_record(
        self, wall: float, cpu: float, cpu_children: float, peak_mib: float
    ) -> ComputeRecord:
        model = self.energy_model
        memory_kwh = energy_from_model(0.0, wall, peak_mib, model)
        rapl1 = read_rapl_uj(self.rapl_root) if self._rapl0 is not None else None
        if self._rapl0 is not None and rapl1 is not None:
            energy = rapl_delta_kwh(self._rapl0, rapl1) * model.pue + memory_kwh
            method = (
                f"RAPL package counters + memory {model.memory_watts_per_gib} W/GiB; "
                f"PUE {model.pue}"
            )
        else:
            energy = energy_from_model(cpu, wall, peak_mib, model)
            method = (
                f"power model: {model.cpu_watts_per_core} W/core x CPU time + "
                f"{model.memory_watts_per_gib} W/GiB x peak memory x wall; PUE {model.pue}"
            )
        return ComputeRecord(
            stage=self.stage,
            job=self.job,
            host=socket.gethostname(),
            started_at=self._started,
            wall_s=wall,
            cores=self.cores,
            cpu_s=cpu,
            cpu_children_s=cpu_children,
            peak_rss_mib=peak_mib,
            energy_kwh=energy,
            co2e_kg=energy * model.grid_gco2_per_kwh / 1000.0,
            energy_method=method,
        )
