"""Periodic DFT with CP2K (Quickstep, GPW) through ASE's ``cp2k_shell`` calculator.

Basis sets and pseudopotentials come from the CP2K data folder (Debian's
``cp2k-data`` installs it at ``/usr/share/cp2k``). The SCF solver is orbital
transformation by default (diagonalisation whenever k-points or smearing are set);
the retry escalation raises the SCF step limit and then switches the OT minimiser to
CG, which converge to the same energy. Smearing changes the numbers, so it is part
of the level of theory, never a retry. CP2K carries on after an SCF that did not
converge; this labeller reads CP2K's output and refuses such results.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

DEBIAN_DATA_DIR = Path("/usr/share/cp2k")


class CP2KSettings(LabelSettingsBase):
    """CP2K Kohn-Sham DFT for periodic cells (and molecules in a box)."""

    calculator: Literal["cp2k"] = Field(description="Use CP2K through ASE.")
    xc: str = Field("PBE", description="Exchange-correlation functional (CP2K name).")
    basis_set: str = Field("DZVP-MOLOPT-SR-GTH", description="Basis set for every element.")
    basis_set_file: str = Field("BASIS_MOLOPT", description="Basis file (in data_dir).")
    pseudo_potential: str = Field("GTH-PBE", description="GTH pseudopotential family.")
    potential_file: str = Field("GTH_POTENTIALS", description="Potential file (in data_dir).")
    data_dir: Path = Field(DEBIAN_DATA_DIR, description="Folder with CP2K's data files.")
    cutoff_ry: float = Field(400.0, gt=0, description="Plane-wave cut-off (Ry).")
    rel_cutoff_ry: float = Field(50.0, gt=0, description="Relative cut-off (Ry).")
    kpoints: tuple[int, int, int] | None = Field(
        None, description="Monkhorst-Pack grid, e.g. [2, 2, 2]; none: Gamma point only."
    )
    smearing_K: float | None = Field(
        None, gt=0, description="Fermi-Dirac electronic temperature (K) for metals."
    )
    charge: int = Field(0, description="Total charge.")
    uks: bool = Field(False, description="Spin-unrestricted Kohn-Sham.")
    max_scf: int = Field(50, ge=1, description="Maximum SCF steps (per OT cycle).")
    eps_scf: float = Field(1e-6, gt=0, description="SCF convergence threshold.")
    scf_solver: Literal["ot", "diagonalization"] = Field(
        "ot",
        description="Orbital transformation (insulators, Gamma point) or diagonalisation "
        "with Broyden mixing (needed for k-points and smearing).",
    )
    ot_minimizer: Literal["DIIS", "CG", "BROYDEN"] = Field(
        "DIIS", description="OT minimiser; CG is slower but more robust."
    )
    threads: int = Field(1, ge=1, description="OpenMP threads per CP2K process.")
    mpi_ranks: int = Field(1, ge=1, description="MPI ranks (runs mpirun -np N).")
    command: str | None = Field(
        None, description="Full command to start cp2k_shell (overrides threads/ranks)."
    )

    def make(self) -> Calculator:
        """Build the ASE calculator (starts cp2k_shell on first use).

        The data folder is checked here, where the label runs, not when the config
        is loaded: a campaign prepared on one machine may label on another.
        """
        from ase.units import Rydberg

        for name in (self.basis_set_file, self.potential_file):
            if not (self.data_dir / name).is_file():
                raise FileNotFoundError(
                    f"CP2K data file {self.data_dir / name} not found; install Debian's "
                    "cp2k-data or set label.data_dir"
                )
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        return _checked_cp2k_class()(
            command=self._command(),
            xc=self.xc,
            basis_set=self.basis_set,
            basis_set_file=str(self.data_dir / self.basis_set_file),
            pseudo_potential=self.pseudo_potential,
            potential_file=str(self.data_dir / self.potential_file),
            cutoff=self.cutoff_ry * Rydberg,
            charge=self.charge,
            uks=self.uks,
            max_scf=self.max_scf,
            stress_tensor=True,
            inp=self._extra_input(),
        )

    def _command(self) -> str:
        if self.command:
            return self.command
        if self.mpi_ranks > 1:
            return f"mpirun -np {self.mpi_ranks} cp2k_shell.psmp"
        shell = shutil.which("cp2k_shell") or shutil.which("cp2k_shell.psmp")
        if shell is None:
            raise FileNotFoundError(
                "cp2k_shell not found on PATH; install CP2K (Debian: apt-get install "
                "cp2k cp2k-data) or set label.command"
            )
        return shell

    def _extra_input(self) -> str:
        """Sections ASE does not generate: relative cut-off, k-points, solver, smearing."""
        scf = [f"EPS_SCF {self.eps_scf}"]
        if self.scf_solver == "diagonalization" or self.smearing_K is not None or self.kpoints:
            scf += [
                "&DIAGONALIZATION",
                "ALGORITHM STANDARD",
                "&END DIAGONALIZATION",
                "&MIXING",
                "METHOD BROYDEN_MIXING",
                "ALPHA 0.2",
                "&END MIXING",
                "ADDED_MOS 20",
            ]
        else:
            scf += [
                "&OT",
                f"MINIMIZER {self.ot_minimizer}",
                "PRECONDITIONER FULL_SINGLE_INVERSE",
                "&END OT",
            ]
        if self.smearing_K is not None:
            scf += [
                "&SMEAR ON",
                "METHOD FERMI_DIRAC",
                f"ELECTRONIC_TEMPERATURE [K] {self.smearing_K}",
                "&END SMEAR",
            ]
        dft = [f"&MGRID\nREL_CUTOFF [Ry] {self.rel_cutoff_ry}\n&END MGRID"]
        if self.kpoints is not None:
            grid = " ".join(str(k) for k in self.kpoints)
            dft.append(f"&KPOINTS\nSCHEME MONKHORST-PACK {grid}\n&END KPOINTS")
        dft.append("&SCF\n" + "\n".join(scf) + "\n&END SCF")
        return "&FORCE_EVAL\n&DFT\n" + "\n".join(dft) + "\n&END DFT\n&END FORCE_EVAL\n"

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint: functional, basis, pseudopotentials, cut-offs, k-points, smearing."""
        numeric = {
            "code": "cp2k",
            "xc": self.xc.upper(),
            "basis_set": self.basis_set,
            "pseudo_potential": self.pseudo_potential,
            "cutoff_ry": self.cutoff_ry,
            "rel_cutoff_ry": self.rel_cutoff_ry,
            "kpoints": list(self.kpoints) if self.kpoints else None,
            "smearing_K": self.smearing_K,
            "charge": self.charge,
            "uks": self.uks,
        }
        return LevelOfTheory(
            code="cp2k",
            version=_cp2k_version(),
            method=self.xc.upper(),
            basis=f"{self.basis_set}/{self.pseudo_potential}, {self.cutoff_ry:g} Ry",
            kpoints=list(self.kpoints) if self.kpoints else None,
            settings_hash=settings_hash(numeric),
        )

    def cores(self) -> int:
        """Threads × ranks."""
        return self.threads * self.mpi_ranks

    def default_escalation(self) -> list[dict[str, Any]]:
        """More SCF steps, then (for OT) the more robust CG minimiser."""
        steps: list[dict[str, Any]] = [{"max_scf": max(200, 4 * self.max_scf)}]
        if self.scf_solver == "ot" and not self.kpoints and self.smearing_K is None:
            steps.append({"max_scf": max(400, 8 * self.max_scf), "ot_minimizer": "CG"})
        return steps


@functools.cache
def _checked_cp2k_class() -> type:
    """ASE's CP2K calculator, refusing results of an SCF that did not converge.

    CP2K prints ``SCF run NOT converged`` and carries on; ASE then returns the
    unconverged energy and forces as if nothing happened. Each label runs in a fresh
    folder, so every warning in the output file belongs to this calculation.
    """
    from ase.calculators.cp2k import CP2K

    from alflow.label.pyscf import SCFNotConverged

    class CheckedCP2K(CP2K):
        def calculate(self, *args: Any, **kwargs: Any) -> None:
            super().calculate(*args, **kwargs)
            output = Path(f"{self.label}.out")
            text = output.read_text(errors="replace") if output.is_file() else ""
            if "SCF run NOT converged" in text:
                raise SCFNotConverged(
                    f"CP2K SCF did not converge in {self.parameters.max_scf} steps "
                    f"({output.resolve()})"
                )

    return CheckedCP2K


@functools.cache
def _cp2k_version() -> str | None:
    """CP2K's version from its Debian package or binary name, without running it."""
    import subprocess

    binary = shutil.which("cp2k") or shutil.which("cp2k.psmp")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.strip().startswith("CP2K version"):
            return line.split("version", 1)[1].strip()
    return None
