"""Checks on a MACE foundation model before anything is trained from it.

Fine-tuning fails late and obscurely inside mace-torch when the file is not a MACE
model or lacks an element of the data; these checks fail early, naming the file
and what is wrong.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import BaseModel, Field


class FoundationModelError(ValueError):
    """The foundation model cannot be used."""


class FoundationInfo(BaseModel):
    """What alflow needs to know about a foundation model."""

    path: str = Field(description="The model file.")
    model_class: str = Field(description="Python class of the model (e.g. ScaleShiftMACE).")
    elements: list[str] = Field(description="Elements the model was trained on.")
    r_max: float = Field(description="Cut-off radius (Å).")
    heads: list[str] = Field(description="Output heads.")


def inspect_foundation(path: str | Path) -> FoundationInfo:
    """Load ``path`` and describe it.

    Raises
    ------
    FoundationModelError
        If the file is missing, cannot be loaded by torch, or is not a MACE model.
    """
    import torch
    from ase.data import chemical_symbols

    path = Path(path)
    if not path.is_file():
        raise FoundationModelError(
            f"foundation model '{path}' not found; download a MACE-MP or MACE-OFF "
            "'.model' file on a machine with internet and give its local path"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weights_only.*")
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for foreign files
        raise FoundationModelError(
            f"foundation model '{path}' cannot be loaded by torch ({type(err).__name__}: "
            f"{err}); expected a MACE '.model' file"
        ) from err
    needed = ("atomic_numbers", "interactions", "readouts", "r_max")
    if not isinstance(model, torch.nn.Module) or not all(hasattr(model, a) for a in needed):
        raise FoundationModelError(
            f"foundation model '{path}' is a {type(model).__name__}, not a MACE model "
            "(a '.model' file saved by mace-torch, e.g. MACE-MP-0 or MACE-OFF23)"
        )
    return FoundationInfo(
        path=str(path),
        model_class=type(model).__name__,
        elements=[chemical_symbols[int(z)] for z in model.atomic_numbers],
        r_max=float(model.r_max),
        heads=[str(h) for h in getattr(model, "heads", ["Default"])],
    )


def check_coverage(info: FoundationInfo, elements: set[str], where: str) -> None:
    """Raise if ``elements`` (found in ``where``) are not all known to the model."""
    missing = sorted(elements - set(info.elements))
    if missing:
        raise FoundationModelError(
            f"{where} contain {', '.join(missing)}, which the foundation model "
            f"'{info.path}' does not cover (it knows {', '.join(info.elements)}); "
            "pick a foundation model trained on these elements or train from scratch"
        )
