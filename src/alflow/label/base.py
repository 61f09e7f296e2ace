"""What every labeller's settings have in common: limits, retries, fingerprint.

A labeller is a pydantic settings class with a ``calculator`` tag (its YAML name)
that builds an ASE calculator and a :class:`~alflow.frames.LevelOfTheory`. The
retry policy lives here: each failed attempt is repeated with the next entry of
``retries`` merged into the settings (more SCF cycles, damping, another SCF
algorithm). An escalation may help the SCF converge but must not change the level
of theory; this is checked when the config is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from typing import Self

    from ase.calculators.calculator import Calculator

    from alflow.frames import LevelOfTheory


class LabelSettingsBase(BaseModel):
    """Settings shared by all labellers."""

    model_config = ConfigDict(extra="forbid")

    #: Whether labels run in a child process (timeouts, crash containment). Labellers
    #: that launch and supervise their own program (atomate2 + custodian) say False.
    isolated: ClassVar[bool] = True
    #: Which structures the method can treat: "molecule", "periodic" or "any".
    geometry: ClassVar[str] = "any"

    max_force: float = Field(
        50.0,
        gt=0,
        description="A label with any force component above this (eV/Å) is treated as "
        "failed: such numbers come from broken SCF or overlapping atoms.",
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Wall-time limit of one attempt (s); none by default."
    )
    retries: list[dict[str, Any]] | None = Field(
        None,
        description="Settings to change on each retry, in order, each on top of the "
        "previous (e.g. [{max_cycle: 300}, {newton: true}]; mappings such as a VASP "
        "incar are merged). Default: the labeller's own escalation; [] disables retries.",
    )
    retry_timeouts: bool = Field(
        False, description="Retry attempts that hit timeout_s (off: a hang costs once)."
    )
    allow_mixed_levels: bool = Field(
        False,
        description="Allow adding labels to a dataset that holds labels from another "
        "level of theory. Off: such a campaign is refused.",
    )

    def make(self) -> Calculator:
        """Build the ASE calculator."""
        raise NotImplementedError

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint of everything that changes the numbers."""
        raise NotImplementedError

    def supported_elements(self) -> frozenset[str] | None:
        """Elements the method can treat, or None when it has no fixed list."""
        return None

    def cores(self) -> int:
        """Cores one label occupies (threads or MPI ranks)."""
        return 1

    def default_escalation(self) -> list[dict[str, Any]]:
        """Settings changes tried, in order, when an attempt fails."""
        return []

    def attempts(self) -> list[Self]:
        """The settings of the first attempt and of every retry."""
        steps = self.retries if self.retries is not None else self.default_escalation()
        current = self.model_dump(exclude={"retries"})
        out = [self]
        for step in steps:
            current = merge_settings(current, step)
            out.append(type(self).model_validate({**current, "retries": []}))
        return out

    @model_validator(mode="after")
    def _retries_are_valid_and_keep_level_of_theory(self) -> LabelSettingsBase:
        if not self.retries:
            return self
        base = self.level_of_theory().settings_hash
        current = self.model_dump(exclude={"retries"})
        for i, step in enumerate(self.retries):
            current = merge_settings(current, step)
            try:
                attempt = type(self).model_validate({**current, "retries": []})
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"retries[{i}]: {where}: {first['msg']}") from None
            if attempt.level_of_theory().settings_hash != base:
                changed = ", ".join(sorted(step))
                raise ValueError(
                    f"retries[{i}] ({changed}) changes the level of theory; retries may "
                    "only change convergence settings. Put it in the base settings instead."
                )
        return self


def merge_settings(current: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """Apply one retry step: plain values replace, mappings (e.g. INCAR) are merged."""
    merged = dict(current)
    for key, value in step.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            merged[key] = {**current[key], **value}
        else:
            merged[key] = value
    return merged
