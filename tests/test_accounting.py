"""Accounting: the meter measures real processes; roll-ups add up."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from alflow.accounting import (
    ComputeRecord,
    EnergyModel,
    Meter,
    energy_from_model,
    merge_roll_ups,
    rapl_delta_kwh,
    read_rapl_uj,
    register_fork_server,
    roll_up,
)


def rec(stage, wall, cpu, peak=100.0, kwh=0.001):
    return ComputeRecord(
        stage=stage, wall_s=wall, cpu_s=cpu, peak_rss_mib=peak, energy_kwh=kwh, co2e_kg=kwh * 0.5
    )


def test_roll_up_sums_per_stage_and_total():
    totals = roll_up([rec("train", 10, 20, 300), rec("train", 5, 5, 500), rec("label", 7, 14)])
    assert totals["train"].jobs == 2
    assert totals["train"].wall_s == 15 and totals["train"].cpu_s == 25
    assert totals["train"].peak_rss_mib == 500  # a maximum, not a sum
    assert totals["total"].cpu_s == 39
    assert totals["total"].energy_kwh == pytest.approx(0.003)
    assert totals["total"].cpu_hours == pytest.approx(39 / 3600)
    assert list(totals) == ["label", "train", "total"]


def test_merge_roll_ups_is_cumulative():
    one = roll_up([rec("train", 1, 2)])
    two = roll_up([rec("train", 3, 4), rec("explore", 1, 1)])
    merged = merge_roll_ups([one, two])
    assert merged["train"].cpu_s == 6 and merged["train"].jobs == 2
    assert merged["explore"].jobs == 1
    assert merged["total"].cpu_s == 7


def test_power_model_arithmetic():
    model = EnergyModel(cpu_watts_per_core=10, memory_watts_per_gib=1.0, pue=1.5)
    # 3600 CPU-s at 10 W = 36 kJ; 3600 s x 2 GiB x 1 W = 7.2 kJ; x 1.5 PUE
    kwh = energy_from_model(3600, 3600, 2048, model)
    assert kwh == pytest.approx((36_000 + 7_200) * 1.5 / 3.6e6)


def test_meter_counts_child_process_cpu_and_memory():
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass"
    with Meter("label", "burn") as meter:
        subprocess.run([sys.executable, "-c", burn], check=True)
        block = np.ones(300 * 2**20 // 8)  # 300 MiB held by this process
        block.sum()
    record = meter.record
    assert record is not None
    assert record.cpu_children_s >= 0.5
    assert record.cpu_s >= record.cpu_children_s
    assert record.wall_s >= 0.5
    assert record.peak_rss_mib >= 300
    assert record.energy_kwh > 0 and record.co2e_kg > 0
    assert "power model" in record.energy_method or "RAPL" in record.energy_method


def make_rapl(root, energy_uj, wrap=1_000_000):
    # a fake powercap tree: this machine exposes no RAPL counters to test against
    for name, value in (("intel-rapl:0", energy_uj), ("intel-rapl:0:0", 5)):
        domain = root / name
        domain.mkdir(exist_ok=True)
        (domain / "energy_uj").write_text(str(value))
        (domain / "max_energy_range_uj").write_text(str(wrap))


def test_rapl_reading_ignores_subdomains_and_handles_wrap(tmp_path):
    make_rapl(tmp_path, 999_000)
    start = read_rapl_uj(tmp_path)
    assert start == (999_000, 1_000_000)
    make_rapl(tmp_path, 1_000)  # counter wrapped: 2000 µJ passed
    assert rapl_delta_kwh(start, read_rapl_uj(tmp_path)) == pytest.approx(2e-3 / 3.6e6)
    assert read_rapl_uj(tmp_path / "missing") is None


def test_meter_uses_rapl_when_readable(tmp_path):
    make_rapl(tmp_path, 0, wrap=10**12)
    with Meter("train", energy_model=EnergyModel(memory_watts_per_gib=0), rapl_root=tmp_path) as m:
        make_rapl(tmp_path, 3_600_000_000, wrap=10**12)  # 3600 J
    assert m.record.energy_method.startswith("RAPL")
    assert m.record.energy_kwh == pytest.approx(1e-3)


def test_fork_servers_are_left_out_of_memory_sums():
    # the children a fork server forks share its pages; the server is not counted twice
    hold = "import time\nblock = bytearray(300 * 2**20)\nprint(flush=True)\ntime.sleep(3)"
    with subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE) as holder:
        holder.stdout.readline()  # the 300 MiB are resident
        with Meter("train", "counted", sample_interval=0.05) as counted:
            time.sleep(0.3)
        register_fork_server(holder.pid)
        with Meter("train", "left out", sample_interval=0.05) as left_out:
            time.sleep(0.3)
        holder.kill()
    assert counted.record.peak_rss_mib - left_out.record.peak_rss_mib >= 250
