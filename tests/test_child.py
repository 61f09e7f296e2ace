"""The trainer runner: Python trainers forked from a fork server that imported them once.

Real processes throughout: small Python modules written here play the trainer (MACE
itself runs through the same path in test_models.py and the campaign tests).
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from alflow.accounting import Meter
from alflow.train import child

HEAVY = """
import os
with open(os.environ["IMPORTS_FILE"], "a") as imports:  # one line per import
    imports.write(f"{os.getpid()}\\n")
print("heavy imported")  # printed when the fork server imports it: must not break it
"""

TRAINER = """
import os, sys, time
import heavy_{name}
def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
if __name__ == "__main__":
    mode = sys.argv[1]
    print("argv", sys.argv[1:], "cwd", os.getcwd(), "pid", os.getpid(), flush=True)
    print("threads", os.environ["OMP_NUM_THREADS"], flush=True)
    if mode == "burn":
        burn(float(sys.argv[2]))
        print("epoch 1 done")
    elif mode == "raise":
        raise ValueError("bad settings: E0s missing for O")
    elif mode == "exit":
        sys.exit(3)
    elif mode == "crash":
        os.kill(os.getpid(), {signal})
"""


@pytest.fixture
def trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A trainer module and its 'heavy' dependency, named after the test so that every
    test has its own server; ``tmp_path/imports`` gets a line per import of the latter."""
    name = f"trainer_{abs(hash(tmp_path)) % 10**8}"
    package = tmp_path / "modules"
    package.mkdir()
    source = TRAINER.replace("{signal}", str(int(signal.SIGSEGV))).replace("{name}", name)
    (package / f"{name}.py").write_text(textwrap.dedent(source))
    (package / f"heavy_{name}.py").write_text(textwrap.dedent(HEAVY))
    # the server starts with this environment
    monkeypatch.setenv("PYTHONPATH", str(package))
    monkeypatch.setenv("IMPORTS_FILE", str(tmp_path / "imports"))
    monkeypatch.delenv("ALFLOW_NO_FORKSERVER", raising=False)
    return name


def imports(tmp_path: Path) -> int:
    return len((tmp_path / "imports").read_text().splitlines())


def run(trainer: str, tmp_path: Path, *argv: str, lines: list[str] | None = None):
    log = tmp_path / "train.log"
    code, tail = child.run_module(
        trainer,
        list(argv),
        tmp_path,
        log,
        threads=1,
        on_line=None if lines is None else lines.append,
    )
    return code, tail, log.read_text()


def test_forked_run_writes_its_log_and_reports_lines(trainer, tmp_path) -> None:
    lines: list[str] = []
    code, tail, log = run(trainer, tmp_path, "burn", "0.1", lines=lines)
    assert code == 0
    assert f"cwd {tmp_path}" in log and "threads 1" in log
    assert "heavy imported" not in log  # imported by the server, before the fork
    assert "epoch 1 done" in log
    assert "".join(lines) == log
    assert tail[-1] == "epoch 1 done"


def test_the_server_is_reused_and_each_run_is_a_new_process(trainer, tmp_path) -> None:
    _, _, first = run(trainer, tmp_path, "burn", "0")
    _, _, second = run(trainer, tmp_path, "burn", "0")
    pid = [line.split("pid ")[1].split()[0] for line in (first, second)]
    assert pid[0] != pid[1]
    assert imports(tmp_path) == 1
    servers = [s for s in child._IDLE if s.modules == (trainer,)]
    assert len(servers) == 1 and servers[0].alive()


def test_cpu_of_the_forked_run_is_charged_to_running_meters(trainer, tmp_path) -> None:
    run(trainer, tmp_path, "burn", "0")  # start the server outside the meters
    with Meter("train", "outer") as outer, Meter("train", "inner") as inner:
        run(trainer, tmp_path, "burn", "0.6")
    with Meter("train", "after") as after:
        pass
    assert inner.record.cpu_children_s >= 0.55
    assert outer.record.cpu_children_s >= inner.record.cpu_children_s
    assert after.record.cpu_children_s < 0.1  # a finished run is not charged again


@pytest.mark.parametrize(
    ("mode", "code", "last_line"),
    [
        ("raise", 1, "ValueError: bad settings: E0s missing for O"),
        ("exit", 3, None),
        ("crash", -int(signal.SIGSEGV), None),
    ],
)
def test_failures_give_the_exit_code_and_the_end_of_the_log(
    trainer, tmp_path, mode, code, last_line
) -> None:
    got, tail, log = run(trainer, tmp_path, mode)
    assert got == code
    if last_line is not None:
        assert tail[-1] == last_line
        assert "Traceback" in log
    # the server survives a failed run and serves the next one
    assert run(trainer, tmp_path, "burn", "0")[0] == 0


def test_switching_the_fork_server_off_starts_a_new_interpreter(
    trainer, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("ALFLOW_NO_FORKSERVER", "1")
    for _ in range(2):
        code, _, log = run(trainer, tmp_path, "burn", "0")
        assert code == 0
        assert log.startswith("heavy imported")
    assert imports(tmp_path) == 2  # every run imported its dependencies again
    assert not any(s.modules == (trainer,) for s in child._IDLE)


def test_a_server_that_dies_mid_run_is_a_failed_run(trainer, tmp_path) -> None:
    run(trainer, tmp_path, "burn", "0")
    (server,) = [s for s in child._IDLE if s.modules == (trainer,)]
    lines: list[str] = []

    def kill_server(line: str) -> None:
        lines.append(line)
        if line.startswith("argv"):
            server.process.kill()

    code, tail = child.run_module(
        trainer, ["burn", "2"], tmp_path, tmp_path / "x.log", threads=1, on_line=kill_server
    )
    assert code == -1
    assert "fork server ended" in tail[-1]
    assert not any(s is server for s in child._IDLE)


def test_a_module_the_server_cannot_import_is_a_failed_run(trainer, tmp_path) -> None:
    broken = f"broken_{trainer}"
    (tmp_path / "modules" / f"{broken}.py").write_text("import no_such_module_anywhere\n")
    log = tmp_path / "broken.log"
    code, tail = child.run_module(broken, [], tmp_path, log, threads=1)
    assert code == -1
    assert "No module named 'no_such_module_anywhere'" in log.read_text()
    assert "fork server ended" in tail[0] and "no_such_module_anywhere" in tail[-1]
    assert not any(s.modules == (broken,) for s in child._IDLE)
