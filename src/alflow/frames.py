"""The frame record: a structure, its labels and where it came from.

A :class:`Frame` is what travels between the stages of the loop. Exploration emits
frames without labels (with their committee deviation), selection picks some of them,
labelling fills in energy, forces and stress, and the dataset keeps them forever.
Frames are plain pydantic documents so that they serialise into jobflow stores
without pickling.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ase import Atoms

#: Positions are rounded to this many decimals (Å) before hashing, so that a frame
#: written to extxyz and read back keeps its identity.
_HASH_DECIMALS = 5


class LevelOfTheory(BaseModel):
    """Fingerprint of the reference method that produced a label."""

    code: str = Field(description="Program or ASE calculator that labelled the frame.")
    version: str | None = Field(None, description="Version of that program.")
    method: str | None = Field(None, description="Functional or Hamiltonian, e.g. PBE.")
    basis: str | None = Field(None, description="Basis set or plane-wave cut-off.")
    kpoints: list[int] | None = Field(None, description="k-point grid, if any.")
    settings_hash: str = Field(
        description="sha256 (first 16 hex digits) of every setting that changes the "
        "numbers; two labels are comparable only when their hashes agree."
    )


class Provenance(BaseModel):
    """Where a frame came from and why it was picked."""

    source: str = Field(
        description="'initial' (user data), 'bootstrap' (perturbed seed) or "
        "'explore' (MD with the committee)."
    )
    iteration: int = Field(description="Iteration that produced the frame (0 = seed).")
    explorer_run: str | None = Field(None, description="Id of the MD run, if any.")
    step: int | None = Field(None, description="MD step at which it was recorded.")
    deviation: float | None = Field(
        None,
        description="Frame uncertainty when recorded: calibrated predicted max force error (eV/Å).",
    )
    selection_rank: int | None = Field(
        None, description="Position in the selected batch (0 = picked first)."
    )
    novelty: float | None = Field(
        None,
        description="SOAP novelty at selection (distance to the nearest training environment).",
    )
    selection_reason: str | None = Field(None, description="Why the frame was selected.")


class Frame(BaseModel):
    """An atomic structure with optional reference labels and provenance."""

    numbers: list[int] = Field(description="Atomic numbers.")
    positions: list[list[float]] = Field(description="Cartesian positions (Å).")
    cell: list[list[float]] = Field(description="Cell vectors as rows (Å).")
    pbc: list[bool] = Field(description="Periodic boundary conditions per axis.")
    energy: float | None = Field(None, description="Reference total energy (eV).")
    forces: list[list[float]] | None = Field(None, description="Forces (eV/Å).")
    stress: list[float] | None = Field(
        None, description="Voigt stress (eV/Å^3, ASE sign convention)."
    )
    provenance: Provenance | None = Field(None, description="Origin of the frame.")
    level_of_theory: LevelOfTheory | None = Field(
        None, description="Method that produced the labels."
    )

    @property
    def frame_id(self) -> str:
        """Content hash of the structure (not the labels): the dataset's key."""
        return structure_hash(
            np.asarray(self.numbers),
            np.asarray(self.positions),
            np.asarray(self.cell),
            self.pbc,
        )

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.numbers)

    @property
    def symbols(self) -> list[str]:
        """Element symbol of each atom."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    @property
    def is_labelled(self) -> bool:
        """Whether energy and forces are present."""
        return self.energy is not None and self.forces is not None

    @classmethod
    def from_atoms(cls, atoms: Atoms, labels_from_calc: bool = True, **fields: Any) -> Frame:
        """Build a frame from ASE atoms, taking labels from an attached calculator.

        Labels are read only from results already stored on the calculator
        (``SinglePointCalculator`` after :func:`ase.io.read`), never computed here.
        Pass ``labels_from_calc=False`` when the calculator is a model, whose
        predictions are not labels.
        """
        labels: dict[str, Any] = {}
        calc = atoms.calc if labels_from_calc else None
        results = getattr(calc, "results", {}) if calc is not None else {}
        if "energy" in results:
            labels["energy"] = float(results["energy"])
        if "forces" in results:
            labels["forces"] = np.asarray(results["forces"], dtype=float).tolist()
        if "stress" in results and any(atoms.pbc):
            labels["stress"] = _voigt(results["stress"]).tolist()
        labels.update(fields)
        return cls(
            numbers=atoms.numbers.tolist(),
            positions=atoms.positions.tolist(),
            cell=np.asarray(atoms.cell).tolist(),
            pbc=[bool(p) for p in atoms.pbc],
            **labels,
        )

    def to_atoms(self, with_labels: bool = True) -> Atoms:
        """Convert to ASE atoms; labels go on a ``SinglePointCalculator``."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        if with_labels and self.is_labelled:
            results: dict[str, Any] = {
                "energy": self.energy,
                "forces": np.asarray(self.forces),
            }
            if self.stress is not None:
                results["stress"] = np.asarray(self.stress)
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def with_labels(
        self,
        energy: float,
        forces: np.ndarray,
        stress: np.ndarray | None,
        level_of_theory: LevelOfTheory,
    ) -> Frame:
        """Return a copy carrying reference labels."""
        return self.model_copy(
            update={
                "energy": float(energy),
                "forces": np.asarray(forces, dtype=float).tolist(),
                "stress": None if stress is None else _voigt(stress).tolist(),
                "level_of_theory": level_of_theory,
            }
        )


def structure_hash(
    numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]
) -> str:
    """Return a stable 16-hex-digit hash of a structure."""
    digest = hashlib.sha256()
    digest.update(np.asarray(numbers, dtype=np.int64).tobytes())
    # +0.0 turns -0.0 into 0.0 so that rounding noise never changes the hash
    rounded = np.round(np.asarray(positions, dtype=float), _HASH_DECIMALS) + 0.0
    digest.update(rounded.tobytes())
    digest.update((np.round(np.asarray(cell, dtype=float), _HASH_DECIMALS) + 0.0).tobytes())
    digest.update(bytes(int(bool(p)) for p in pbc))
    return digest.hexdigest()[:16]


def settings_hash(settings: dict[str, Any]) -> str:
    """Hash a settings dictionary independently of key order."""
    import json

    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_frames(path: str | Path, index: str = ":") -> list[Frame]:
    """Read an extended-xyz (or any ASE-readable) file into frames."""
    from ase.io import read

    atoms_list = read(str(path), index=index)
    if not isinstance(atoms_list, list):
        atoms_list = [atoms_list]
    return [Frame.from_atoms(atoms) for atoms in atoms_list]


def write_extxyz(
    frames: Iterable[Frame],
    path: str | Path,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    with_provenance: bool = True,
) -> int:
    """Write labelled frames to extended xyz with labels under the given keys.

    Returns the number of frames written. Labels go to ``atoms.info`` and
    ``atoms.arrays`` directly (not a calculator) so that codes such as MACE that
    read custom keys find them.
    """
    from ase.io import write

    images = []
    for frame in frames:
        atoms = frame.to_atoms(with_labels=False)
        if frame.energy is not None:
            atoms.info[energy_key] = frame.energy
        if frame.forces is not None:
            atoms.arrays[forces_key] = np.asarray(frame.forces)
        if frame.stress is not None:
            atoms.info[stress_key] = np.asarray(frame.stress)
        if with_provenance and frame.provenance is not None:
            for key, value in frame.provenance.model_dump(exclude_none=True).items():
                atoms.info[f"alflow_{key}"] = value
        if with_provenance and frame.level_of_theory is not None:
            lot = frame.level_of_theory
            atoms.info["alflow_level_of_theory"] = lot.settings_hash
            atoms.info["alflow_code"] = lot.code
        images.append(atoms)
    write(str(path), images, format="extxyz")
    return len(images)


def _voigt(stress: Any) -> np.ndarray:
    """Return stress as a Voigt 6-vector whatever shape it came in."""
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return np.array(
            [
                stress[0, 0],
                stress[1, 1],
                stress[2, 2],
                stress[1, 2],
                stress[0, 2],
                stress[0, 1],
            ]
        )
    return stress.reshape(6)
