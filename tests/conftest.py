from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def ethanol_xyz(tmp_path: Path) -> Path:
    """The demo's starting structure, copied next to the test's config."""
    target = tmp_path / "ethanol.xyz"
    shutil.copy(CONFIGS / "data" / "ethanol.xyz", target)
    return target


@pytest.fixture(scope="session")
def copper_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 16-atom Cu cell and 30 held-out EMT frames from Langevin MD at 800 K."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    folder = tmp_path_factory.mktemp("copper")
    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)
    write(folder / "cu.xyz", cell)
    rng = np.random.default_rng(1)
    hot = cell.copy()
    hot.calc = EMT()
    MaxwellBoltzmannDistribution(hot, temperature_K=800, rng=rng)
    dyn = Langevin(hot, 2 * units.fs, temperature_K=800, friction=0.02, fixcm=False, rng=rng)
    frames = []
    for _ in range(30):
        dyn.run(20)
        frame = hot.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=hot.get_potential_energy(), forces=hot.get_forces()
        )
        frames.append(frame)
    write(folder / "test.xyz", frames)
    return {"structure": folder / "cu.xyz", "validation": folder / "test.xyz"}


@pytest.fixture(scope="session")
def cp2k() -> str:
    """CP2K from Debian, installed by the test set-up when it is missing.

    The CP2K tests run the real program; they never skip silently. Set
    ALFLOW_NO_CP2K=1 to skip them on a machine where installing is impossible.
    """
    import os
    import shutil
    import subprocess

    if shutil.which("cp2k_shell") is None:
        if os.environ.get("ALFLOW_NO_CP2K"):
            pytest.skip("ALFLOW_NO_CP2K is set")
        command = ["apt-get", "install", "-y", "-q", "cp2k", "cp2k-data"]
        if os.geteuid() != 0:
            command = ["sudo", "-n", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:  # stale package lists on a fresh machine
            update = [*command[: command.index("install")], "update", "-q"]
            subprocess.run(update, capture_output=True, text=True, check=False)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or shutil.which("cp2k_shell") is None:
            pytest.fail(
                "could not install CP2K (apt-get install cp2k cp2k-data): "
                f"{result.stderr[-2000:]}\nSet ALFLOW_NO_CP2K=1 to skip the CP2K tests."
            )
    return shutil.which("cp2k_shell")
