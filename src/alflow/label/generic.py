"""Any ASE calculator, named by its import path, with keyword arguments."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


class ASECalculatorSettings(LabelSettingsBase):
    """An ASE calculator class given by import path, e.g. ``ase.calculators.lj.LennardJones``.

    Every keyword argument enters the level-of-theory hash, except those listed in
    ``convergence_kwargs`` (which retries may change).
    """

    calculator: Literal["ase"] = Field(description="Use an ASE calculator by import path.")
    import_path: str = Field(
        pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
        description="module.path.ClassName of an ASE calculator.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the calculator."
    )
    convergence_kwargs: list[str] = Field(
        default_factory=list,
        description="Keyword arguments that only affect convergence (not the numbers).",
    )
    method: str | None = Field(None, description="Method name, for the record.")

    @field_validator("import_path")
    @classmethod
    def _importable(cls, value: str) -> str:
        _load_class(value)
        return value

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        return _load_class(self.import_path)(**self.kwargs)

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint: the class and every non-convergence keyword."""
        numeric = {k: v for k, v in self.kwargs.items() if k not in self.convergence_kwargs}
        module = self.import_path.rsplit(".", 1)[0].split(".")[0]
        try:
            from importlib.metadata import version

            code_version = version(module)
        except Exception:  # a local module has no distribution metadata
            code_version = None
        return LevelOfTheory(
            code=self.import_path,
            version=code_version,
            method=self.method,
            settings_hash=settings_hash({"class": self.import_path, **numeric}),
        )


def _load_class(path: str) -> type:
    """Import ``module.Class``; ValueError with advice if that fails."""
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module '{module_name}': {err}") from None
    if not hasattr(module, name):
        raise ValueError(f"module '{module_name}' has no '{name}'")
    return getattr(module, name)
