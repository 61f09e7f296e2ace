"""An ASE calculator for molecular Kohn-Sham DFT with PySCF.

PySCF ships no ASE calculator for molecules, so this small one runs restricted
(closed shell) or unrestricted Kohn-Sham and analytic gradients. An SCF that does
not converge raises :class:`SCFNotConverged` instead of returning a number that
would poison the training set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ase.calculators.calculator import Calculator, CalculatorError, all_changes
from ase.units import Bohr, Hartree

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
        energy = mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(
                f"PySCF SCF did not converge in {s['max_cycle']} cycles ({s['xc']}/{s['basis']})"
            )
        gradient = mf.nuc_grad_method().kernel()
        self.results["energy"] = float(energy) * Hartree
        self.results["forces"] = -gradient * Hartree / Bohr
