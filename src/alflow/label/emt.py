"""ASE's effective-medium theory: instant labels for tests and demos of metals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: Elements ASE's EMT has parameters for.
EMT_ELEMENTS = frozenset({"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"})


class EMTSettings(LabelSettingsBase):
    """ASE's EMT potential (not DFT; for tests and tutorials)."""

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
