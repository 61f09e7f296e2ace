"""An ASE calculator for molecular Kohn-Sham DFT with PySCF.

PySCF ships no ASE calculator for molecules, so this small one runs restricted
(closed shell) or unrestricted Kohn-Sham and analytic gradients. An SCF that does
not converge raises :class:`SCFNotConverged` instead of returning a number that
would poison the training set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ase.calculators.calculator import Calculator, CalculatorError, all_changes
from ase.units import Bohr, Hartree
from pydantic import Field

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase import Atoms


class SCFNotConverged(CalculatorError):
    """The self-consistent field did not converge within ``max_cycle``."""


class PySCFCalculator(Calculator):
    """Energy and forces of a molecule from PySCF Kohn-Sham DFT.

    Parameters
    ----------
    xc
        Exchange-correlation functional in libxc/PySCF notation, e.g. ``"PBE"``.
    basis
        Basis set name, e.g. ``"def2-SVP"``.
    charge
        Total charge.
    spin
        Number of unpaired electrons (2S). Unrestricted KS is used when non-zero.
    density_fit
        Use density fitting (RI-J) for the Coulomb term: faster, tiny error.
    conv_tol
        SCF energy convergence (Hartree).
    max_cycle
        Maximum SCF iterations.
    max_memory_mb
        Memory PySCF may use (MB).
    damping
        Fraction of the previous density mixed into the next (0: none).
    level_shift
        Virtual-orbital level shift (Hartree) that stabilises the SCF.
    newton
        Use second-order (Newton) SCF after the first iterations.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "def2-SVP",
        charge: int = 0,
        spin: int = 0,
        density_fit: bool = False,
        conv_tol: float = 1e-9,
        max_cycle: int = 100,
        max_memory_mb: int = 4000,
        damping: float = 0.0,
        level_shift: float = 0.0,
        newton: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = {
            "xc": xc,
            "basis": basis,
            "charge": charge,
            "spin": spin,
            "density_fit": density_fit,
            "conv_tol": conv_tol,
            "max_cycle": max_cycle,
            "max_memory_mb": max_memory_mb,
            "damping": damping,
            "level_shift": level_shift,
            "newton": newton,
        }

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Run the SCF and the analytic gradient."""
        from pyscf import dft, gto

        super().calculate(atoms, properties, system_changes)
        s = self.settings
        mol = gto.M(
            atom=[
                (sym, pos)
                for sym, pos in zip(
                    self.atoms.get_chemical_symbols(), self.atoms.positions, strict=True
                )
            ],
            basis=s["basis"],
            charge=s["charge"],
            spin=s["spin"],
            unit="Angstrom",
            verbose=0,
            max_memory=s["max_memory_mb"],
        )
        mf = dft.RKS(mol) if s["spin"] == 0 else dft.UKS(mol)
        if s["density_fit"]:
            mf = mf.density_fit()
        mf.xc = s["xc"]
        mf.conv_tol = s["conv_tol"]
        mf.max_cycle = s["max_cycle"]
        mf.damp = s["damping"]
        mf.level_shift = s["level_shift"]
        if s["newton"]:
            mf = mf.newton()
        energy = mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(
                f"PySCF SCF did not converge in {s['max_cycle']} cycles ({s['xc']}/{s['basis']})"
            )
        gradient = mf.nuc_grad_method().kernel()
        self.results["energy"] = float(energy) * Hartree
        self.results["forces"] = -gradient * Hartree / Bohr


class PySCFSettings(LabelSettingsBase):
    """Kohn-Sham DFT for molecules with PySCF."""

    geometry = "molecule"

    calculator: Literal["pyscf"] = Field(description="Use PySCF molecular DFT.")
    xc: str = Field("PBE", description="Exchange-correlation functional.")
    basis: str = Field("def2-SVP", description="Gaussian basis set.")
    charge: int = Field(0, description="Total charge of the molecule.")
    spin: int = Field(0, ge=0, description="Unpaired electrons (2S); >0 means UKS.")
    density_fit: bool = Field(False, description="Density fitting for the Coulomb term.")
    conv_tol: float = Field(1e-9, gt=0, description="SCF convergence (Hartree).")
    max_cycle: int = Field(100, ge=1, description="Maximum SCF cycles.")
    damping: float = Field(0.0, ge=0, lt=1, description="SCF density damping.")
    level_shift: float = Field(0.0, ge=0, description="SCF level shift (Hartree).")
    newton: bool = Field(False, description="Second-order (Newton) SCF.")
    max_memory_mb: int = Field(4000, ge=100, description="Memory PySCF may use (MB).")
    threads: int | None = Field(
        None, ge=1, description="OpenMP threads for PySCF (default: all cores)."
    )

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        if self.threads is not None:
            from pyscf import lib

            lib.num_threads(self.threads)
        return PySCFCalculator(
            xc=self.xc,
            basis=self.basis,
            charge=self.charge,
            spin=self.spin,
            density_fit=self.density_fit,
            conv_tol=self.conv_tol,
            max_cycle=self.max_cycle,
            max_memory_mb=self.max_memory_mb,
            damping=self.damping,
            level_shift=self.level_shift,
            newton=self.newton,
        )

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint of the method: everything that changes the numbers."""
        import pyscf

        numeric = {
            "code": "pyscf",
            "xc": self.xc.upper(),
            "basis": self.basis.lower(),
            "charge": self.charge,
            "spin": self.spin,
            "density_fit": self.density_fit,
        }
        return LevelOfTheory(
            code="pyscf",
            version=pyscf.__version__,
            method=self.xc.upper(),
            basis=self.basis,
            settings_hash=settings_hash(numeric),
        )

    def cores(self) -> int:
        """Threads PySCF uses."""
        import os

        return self.threads or os.cpu_count() or 1

    def default_escalation(self) -> list[dict[str, Any]]:
        """More cycles with damping and a level shift, then second-order SCF."""
        return [
            {"max_cycle": max(300, 3 * self.max_cycle), "damping": 0.5, "level_shift": 0.2},
            {"max_cycle": max(300, 3 * self.max_cycle), "newton": True},
        ]
