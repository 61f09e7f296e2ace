"""The labellers a campaign can name, by their YAML ``calculator`` value.

Adding a labeller is one settings class (a subclass of
:class:`~alflow.label.base.LabelSettingsBase`) and one entry here.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from alflow.label.atomate2 import Cp2kStaticSettings, VaspStaticSettings
from alflow.label.base import LabelSettingsBase
from alflow.label.cp2k import CP2KSettings
from alflow.label.emt import EMTSettings
from alflow.label.generic import ASECalculatorSettings
from alflow.label.pyscf import PySCFSettings
from alflow.label.xtb import XTBSettings

#: YAML name of each labeller -> its settings class.
LABELLERS: dict[str, type[LabelSettingsBase]] = {
    "pyscf": PySCFSettings,
    "cp2k": CP2KSettings,
    "xtb": XTBSettings,
    "emt": EMTSettings,
    "ase": ASECalculatorSettings,
    "atomate2-vasp": VaspStaticSettings,
    "atomate2-cp2k": Cp2kStaticSettings,
}

LabelSettings = Annotated[
    PySCFSettings
    | CP2KSettings
    | XTBSettings
    | EMTSettings
    | ASECalculatorSettings
    | VaspStaticSettings
    | Cp2kStaticSettings,
    Field(discriminator="calculator"),
]
