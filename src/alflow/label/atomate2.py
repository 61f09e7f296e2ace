"""Labels from atomate2's VASP and CP2K ``StaticMaker`` jobs.

The labeller wraps an atomate2 static job in an ASE calculator: the structure goes
in, atomate2 writes the inputs, runs the code under custodian (which handles the
code's own errors and wall time), parses the outputs into a task document, and the
energy, forces and stress come back in ASE units. These labellers run in the label
job's own process (custodian already supervises the code), so the standard atomate2
test fixtures that replace ``run_vasp`` work unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from pydantic import Field

from alflow.frames import LevelOfTheory, settings_hash
from alflow.label.base import LabelSettingsBase

if TYPE_CHECKING:
    from ase import Atoms
    from jobflow import Maker

#: INCAR tags that only steer the SCF; everything else changes the numbers.
VASP_CONVERGENCE_TAGS = frozenset(
    {
        "NELM",
        "NELMIN",
        "NELMDL",
        "ALGO",
        "AMIX",
        "BMIX",
        "AMIX_MAG",
        "BMIX_MAG",
        "ISTART",
        "ICHARG",
        "LWAVE",
        "LCHARG",
        "NCORE",
        "KPAR",
        "NPAR",
        "LPLANE",
    }
)
_KBAR_TO_EV_A3 = 1e-1 * 6.241509074460763e-3  # 0.1 GPa per kbar, eV/Å³ per GPa
_GPA_TO_EV_A3 = 6.241509074460763e-3


class Atomate2StaticCalculator(Calculator):
    """ASE calculator that runs one atomate2 static job per evaluation.

    Parameters
    ----------
    maker
        An atomate2 ``StaticMaker`` (VASP or CP2K).
    stress_unit
        Unit of the task document's stress: ``"kbar"`` (VASP) or ``"GPa"`` (CP2K).
    stress_sign
        +1 or -1: sign that turns the code's stress into ASE's convention.
    force_unit
        Unit of the task document's forces: ``"eV/A"`` (VASP) or ``"Ha/Bohr"``
        (pymatgen's CP2K parser keeps CP2K's atomic units).
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        maker: Maker,
        stress_unit: str,
        stress_sign: float = -1.0,
        force_unit: str = "eV/A",
        **kwargs: Any,
    ) -> None:
        from ase.units import Bohr, Hartree

        super().__init__(**kwargs)
        self.maker = maker
        self.force_factor = Hartree / Bohr if force_unit == "Ha/Bohr" else 1.0
        self.stress_factor = stress_sign * (
            _KBAR_TO_EV_A3 if stress_unit == "kbar" else _GPA_TO_EV_A3
        )
        self.task_document: Any = None

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Run the atomate2 job in the current folder and read its task document."""
        from jobflow import CURRENT_JOB, JobStore
        from maggma.stores import MemoryStore
        from pymatgen.io.ase import AseAtomsAdaptor

        super().calculate(atoms, properties, system_changes)
        structure = AseAtomsAdaptor.get_structure(self.atoms)
        job = self.maker.make(structure)
        store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
        store.connect()
        # Job.run resets jobflow's CURRENT_JOB when it ends; the label job that runs
        # this calculator still needs its own
        outer_job, outer_store = CURRENT_JOB.job, CURRENT_JOB.store
        try:
            response = job.run(store=store, job_dir=Path.cwd())
        finally:
            CURRENT_JOB.job, CURRENT_JOB.store = outer_job, outer_store
        doc = response.output
        if doc is None or doc.output is None:
            raise RuntimeError("atomate2 job returned no task document")
        self.task_document = doc
        order = match_sites(doc.output.structure.cart_coords, self.atoms)
        forces = np.asarray(doc.output.forces, dtype=float)[order] * self.force_factor
        self.results = {
            "energy": float(doc.output.energy),
            "free_energy": float(doc.output.energy),
            "forces": forces,
        }
        if doc.output.stress is not None and self.atoms.pbc.all():
            stress = np.asarray(doc.output.stress, dtype=float) * self.stress_factor
            self.results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def match_sites(codes_positions: Any, atoms: Atoms, tol: float = 1e-3) -> np.ndarray:
    """Index array mapping the code's site order back to ``atoms`` (input sets may sort).

    Raises
    ------
    ValueError
        If some atom has no site within ``tol`` Å (periodic images considered).
    """
    from ase.geometry import get_distances

    codes = np.asarray(codes_positions, dtype=float)
    _, distances = get_distances(atoms.positions, codes, cell=atoms.cell, pbc=atoms.pbc)
    order = distances.argmin(axis=1)
    if np.any(distances[np.arange(len(atoms)), order] > tol) or len(set(order)) != len(atoms):
        raise ValueError("the code's output structure does not match the input structure")
    return order


class VaspStaticSettings(LabelSettingsBase):
    """VASP single points with atomate2's ``StaticMaker`` (run by custodian)."""

    isolated = False
    geometry = "periodic"

    calculator: Literal["atomate2-vasp"] = Field(description="atomate2 VASP static.")
    incar: dict[str, Any] = Field(
        default_factory=dict, description="INCAR settings on top of atomate2's static set."
    )
    kpoints: dict[str, Any] = Field(
        default_factory=lambda: {"reciprocal_density": 64},
        description="atomate2/pymatgen k-point settings, e.g. {reciprocal_density: 100}.",
    )
    potcar_functional: str | None = Field(None, description="POTCAR family, e.g. PBE_54.")
    ranks: int = Field(1, ge=1, description="MPI ranks VASP runs on (for accounting).")

    def maker(self) -> Maker:
        """The atomate2 maker this labeller runs."""
        from atomate2.vasp.jobs.core import StaticMaker
        from atomate2.vasp.sets.core import StaticSetGenerator

        generator = StaticSetGenerator(
            user_incar_settings=self.incar,
            user_kpoints_settings=self.kpoints,
            user_potcar_functional=self.potcar_functional,
        )
        run_kwargs = {"wall_time": int(self.timeout_s)} if self.timeout_s else {}
        return StaticMaker(input_set_generator=generator, run_vasp_kwargs=run_kwargs)

    def make(self) -> Calculator:
        """Calculator running the atomate2 job."""
        return Atomate2StaticCalculator(self.maker(), stress_unit="kbar", stress_sign=-1.0)

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint: every INCAR tag that changes the numbers, k-points, POTCARs."""
        numeric = {k: v for k, v in self.incar.items() if k.upper() not in VASP_CONVERGENCE_TAGS}
        settings = {
            "code": "vasp",
            "incar": numeric,
            "kpoints": self.kpoints,
            "potcar": self.potcar_functional,
        }
        return LevelOfTheory(
            code="vasp (atomate2)",
            method=str(self.incar.get("GGA", self.incar.get("METAGGA", "PBE"))),
            basis=f"ENCUT {self.incar['ENCUT']}" if "ENCUT" in self.incar else "atomate2 default",
            settings_hash=settings_hash(settings),
        )

    def default_escalation(self) -> list[dict[str, Any]]:
        """More electronic steps, then the robust all-band algorithm."""
        return [{"incar": {"NELM": 200}}, {"incar": {"NELM": 300, "ALGO": "All"}}]

    def cores(self) -> int:
        """MPI ranks."""
        return self.ranks


class Cp2kStaticSettings(LabelSettingsBase):
    """CP2K single points with atomate2's ``StaticMaker`` (run by custodian)."""

    isolated = False
    geometry = "periodic"

    calculator: Literal["atomate2-cp2k"] = Field(description="atomate2 CP2K static.")
    xc: str = Field("PBE", description="Exchange-correlation functional.")
    basis_set: str = Field("DZVP-MOLOPT-SR-GTH", description="Basis set for every element.")
    pseudo_potential: str = Field("GTH-PBE", description="GTH family; -q<valence> is added.")
    data_dir: Path = Field(Path("/usr/share/cp2k"), description="CP2K data folder.")
    cutoff_ry: float = Field(400.0, gt=0, description="Plane-wave cut-off (Ry).")
    rel_cutoff_ry: float = Field(50.0, gt=0, description="Relative cut-off (Ry).")
    kpoint_density: float = Field(
        1.0, gt=0, description="atomate2 grid_density for k-points (1: Gamma for small cells)."
    )
    input_updates: dict[str, Any] = Field(
        default_factory=dict, description="Further atomate2 user_input_settings."
    )
    command: str = Field("cp2k.psmp", description="Command that runs CP2K.")

    def maker(self, atoms: Atoms | None = None) -> Maker:
        """The atomate2 maker, with basis and potentials from ``data_dir``."""
        from atomate2.cp2k.jobs.core import StaticMaker
        from atomate2.cp2k.sets.core import StaticSetGenerator

        generator = StaticSetGenerator(
            user_input_settings={
                "basis_and_potential": self._basis_and_potential(atoms),
                "xc_functionals": [self.xc],
                "cutoff": self.cutoff_ry,
                "rel_cutoff": self.rel_cutoff_ry,
                **self.input_updates,
            },
            user_kpoints_settings={"grid_density": self.kpoint_density},
        )
        return StaticMaker(
            input_set_generator=generator, run_cp2k_kwargs={"cp2k_cmd": self.command}
        )

    def _basis_and_potential(self, atoms: Atoms | None) -> dict[str, dict[str, Any]]:
        from ase.data import chemical_symbols

        elements = sorted(set(atoms.get_chemical_symbols())) if atoms is not None else []
        return {
            el: {
                "basis": self.basis_set,
                "potential": f"{self.pseudo_potential}-q"
                f"{_valence(el, self.pseudo_potential, self.data_dir)}",
                "basis_filename": str(self.data_dir / "BASIS_MOLOPT"),
                "potential_filename": str(self.data_dir / "GTH_POTENTIALS"),
                # atomate2's base set names an auxiliary (ADMM) basis by hash; none here
                "aux_basis": None,
            }
            for el in elements
            if el in chemical_symbols
        }

    def make(self) -> Calculator:
        """Calculator running the atomate2 job (basis chosen per structure)."""
        return _Cp2kPerStructure(self)

    def level_of_theory(self) -> LevelOfTheory:
        """Fingerprint: functional, basis, potentials, cut-offs, k-points."""
        numeric = {
            "code": "cp2k-atomate2",
            "xc": self.xc.upper(),
            "basis_set": self.basis_set,
            "pseudo_potential": self.pseudo_potential,
            "cutoff_ry": self.cutoff_ry,
            "rel_cutoff_ry": self.rel_cutoff_ry,
            "kpoint_density": self.kpoint_density,
            "input_updates": self.input_updates,
        }
        return LevelOfTheory(
            code="cp2k (atomate2)",
            method=self.xc.upper(),
            basis=f"{self.basis_set}/{self.pseudo_potential}, {self.cutoff_ry:g} Ry",
            settings_hash=settings_hash(numeric),
        )


class _Cp2kPerStructure(Atomate2StaticCalculator):
    """Builds the CP2K maker when the structure (and so its elements) is known."""

    def __init__(self, settings: Cp2kStaticSettings, **kwargs: Any) -> None:
        super().__init__(  # the maker is built per structure in calculate()
            maker=None,  # type: ignore[arg-type]
            stress_unit="GPa",
            stress_sign=-1.0,
            force_unit="Ha/Bohr",
            **kwargs,
        )
        self.settings = settings

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Choose basis and potentials for the elements present, then run."""
        self.maker = self.settings.maker(atoms if atoms is not None else self.atoms)
        os.environ.setdefault("PMG_DEFAULT_CP2K_FUNCTIONAL", self.settings.xc)
        super().calculate(atoms, properties, system_changes)


def _valence(element: str, family: str, data_dir: Path) -> int:
    """Valence charge of the ``family`` potential for ``element`` in the data folder."""
    import re

    text = (data_dir / "GTH_POTENTIALS").read_text()
    pattern = rf"^\s*{element}\s+{re.escape(family)}-q(\d+)"
    match = re.search(pattern, text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"no {family} potential for {element} in {data_dir / 'GTH_POTENTIALS'}")
    return int(match.group(1))
