"""Reference methods a campaign can label with, one settings class each.

Each class is a pydantic model whose ``calculator`` field is the YAML name; it builds
the ASE calculator and the level-of-theory fingerprint. Adding a labeller is one new
class here plus its entry in :data:`LabelSettings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from alflow.frames import LevelOfTheory, settings_hash

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: Elements ASE's EMT has parameters for.
EMT_ELEMENTS = frozenset({"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"})


class _LabelBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_force: float = Field(
        50.0,
        gt=0,
        description="A label with any force component above this (eV/Å) is treated as "
        "failed: such numbers come from broken SCF or overlapping atoms.",
    )

    def supported_elements(self) -> frozenset[str] | None:
        """Elements the method can treat, or None when it has no fixed list."""
        return None


class EMTSettings(_LabelBase):
    """ASE's effective-medium theory: instant, for tests and demos of metals."""

    calculator: Literal["emt"] = Field(description="Use ASE's EMT potential.")

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        from ase.calculators.emt import EMT

        return EMT()

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint of the method."""
        import ase

        return LevelOfTheory(
            code="ase-emt",
            version=ase.__version__,
            method="EMT",
            settings_hash=settings_hash({"code": "emt"}),
        )

    def supported_elements(self) -> frozenset[str]:
        """EMT has parameters for a fixed set of elements only."""
        return EMT_ELEMENTS


class PySCFSettings(_LabelBase):
    """Kohn-Sham DFT for molecules with PySCF."""

    calculator: Literal["pyscf"] = Field(description="Use PySCF molecular DFT.")
    xc: str = Field("PBE", description="Exchange-correlation functional.")
    basis: str = Field("def2-SVP", description="Gaussian basis set.")
    charge: int = Field(0, description="Total charge of the molecule.")
    spin: int = Field(0, ge=0, description="Unpaired electrons (2S); >0 means UKS.")
    density_fit: bool = Field(False, description="Density fitting for the Coulomb term.")
    conv_tol: float = Field(1e-9, gt=0, description="SCF convergence (Hartree).")
    max_cycle: int = Field(100, ge=1, description="Maximum SCF cycles.")
    max_memory_mb: int = Field(4000, ge=100, description="Memory PySCF may use (MB).")
    threads: int | None = Field(
        None, ge=1, description="OpenMP threads for PySCF (default: all cores)."
    )

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        from alflow.label.pyscf import PySCFCalculator

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


#: YAML name of each labeller -> its settings class.
LABELLERS: dict[str, type[_LabelBase]] = {"emt": EMTSettings, "pyscf": PySCFSettings}

LabelSettings = Annotated[EMTSettings | PySCFSettings, Field(discriminator="calculator")]
