"""Semi-empirical tight binding (GFN1-xTB, GFN2-xTB) with tblite: cheap pre-labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


class XTBSettings(LabelSettingsBase):
    """GFN-xTB through tblite (molecules and periodic cells)."""

    calculator: Literal["xtb"] = Field(description="Use tblite GFN-xTB.")
    method: Literal["GFN2-xTB", "GFN1-xTB"] = Field("GFN2-xTB", description="Hamiltonian.")
    charge: int = Field(0, description="Total charge.")
    electronic_temperature: float = Field(300.0, gt=0, description="Fermi smearing (K).")
    accuracy: float = Field(1.0, gt=0, description="Numerical accuracy (smaller: tighter).")
    max_iterations: int = Field(250, ge=1, description="Maximum SCC iterations.")
    mixer_damping: float = Field(0.4, gt=0, le=1, description="Broyden mixing damping.")
    threads: int | None = Field(None, ge=1, description="OpenMP threads.")

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        import os

        from tblite.ase import TBLite

        if self.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        return TBLite(
            method=self.method,
            charge=self.charge,
            electronic_temperature=self.electronic_temperature,
            accuracy=self.accuracy,
            max_iterations=self.max_iterations,
            mixer_damping=self.mixer_damping,
            verbosity=0,
        )

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint: Hamiltonian, charge and electronic temperature."""
        from importlib.metadata import version

        numeric = {
            "code": "tblite",
            "method": self.method,
            "charge": self.charge,
            "electronic_temperature": self.electronic_temperature,
        }
        return LevelOfTheory(
            code="tblite",
            version=version("tblite"),
            method=self.method,
            settings_hash=settings_hash(numeric),
        )

    def cores(self) -> int:
        """Threads used."""
        return self.threads or 1

    def default_escalation(self) -> list[dict[str, Any]]:
        """More iterations, then stronger damping."""
        return [{"max_iterations": 1000}, {"max_iterations": 1000, "mixer_damping": 0.1}]
