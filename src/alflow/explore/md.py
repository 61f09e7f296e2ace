"""Exploration by molecular dynamics (NVT Langevin, or NPT) on the models' mean forces.

NVT runs can be biased towards high ensemble uncertainty (:mod:`alflow.explore.bias`).

A run records a frame every ``record_every`` steps together with its calibrated max
force uncertainty (computed only at those steps for estimators where it costs
extra), and stops early when that uncertainty stays above ``hi`` (the model is lost
there; what follows would be unphysical) or when the structure breaks (non-finite
numbers, atoms collapsing onto each other, an exploding cell). Temperatures can
ramp within a run; temperature and pressure schedules across iterations are chosen
by the campaign. Several structures and replicas are separate jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.config import ExploreConfig
from alflow.explore.bias import BiasedCalculator
from alflow.frames import Frame, Provenance
from alflow.train.records import ModelRecord
from alflow.uncertainty import make_estimator
from alflow.uncertainty.base import UncertaintyCalculator, force_deviation

if TYPE_CHECKING:
    from ase import Atoms

#: Two atoms closer than this (Å) mean the dynamics has broken down.
MIN_DISTANCE = 0.5


class ExploreResult(BaseModel):
    """Summary of one MD run; its frames go to the data store."""

    run_id: str = Field(description="Unique id of the run within the campaign.")
    iteration: int = Field(description="Iteration of the run.")
    structure_index: int = Field(description="Which starting structure was used.")
    temperature_K: float = Field(description="Thermostat temperature at the start (K).")
    pressure_GPa: float | None = Field(None, description="Barostat pressure (NPT runs).")
    steps_requested: int = Field(description="Steps asked for.")
    steps_done: int = Field(description="Steps actually run.")
    stopped_early: bool = Field(description="Whether the run ended before its steps.")
    stop_reason: str | None = Field(None, description="Why it ended early.")
    deviations: list[float] = Field(description="Deviation of each recorded frame.")
    energy_deviations: list[float] = Field(
        default_factory=list,
        description="Calibrated energy uncertainty per atom of each recorded frame (eV/atom); "
        "empty in runs recorded before alflow kept it.",
    )
    bias_energies: list[float] = Field(
        default_factory=list,
        description="Uncertainty bias energy per atom at each recorded frame (eV/atom, "
        "≤ 0); empty for plain MD.",
    )
    frames: list[Frame] = Field(description="Recorded frames (in the data store).")
    compute: ComputeRecord | None = Field(None, description="Cost of the run.")


@dataclass
class MDMaker(Maker):
    """MD with an uncertainty-aware calculator, recording frames and their uncertainty.

    Parameters
    ----------
    name
        Job name.
    settings
        MD settings.
    hi
        Deviation (eV/Å) above which the run stops.
    energy_model
        Power model for the compute record.
    """

    name: str = "explore md"
    settings: ExploreConfig = field(default_factory=ExploreConfig)
    hi: float = 0.5
    energy_model: EnergyModel = field(default_factory=EnergyModel)

    @job(data=["frames"])
    def make(
        self,
        models: list[ModelRecord],
        structure: Frame,
        iteration: int,
        run: int,
        structure_index: int,
        temperature_K: float,
        seed: int,
        scale: float = 1.0,
        pressure_GPa: float = 0.0,
        element_scales: dict[str, float] | None = None,
        energy_scale: float = 1.0,
    ) -> ExploreResult:
        """Run one MD trajectory.

        Parameters
        ----------
        models
            Committee members.
        structure
            Starting structure.
        iteration
            Current iteration.
        run
            Index of the run within the iteration.
        structure_index
            Index of ``structure`` among the campaign's starting structures.
        temperature_K
            Thermostat temperature.
        seed
            Seed for initial velocities and the Langevin noise.
        scale
            Calibration factor of the models' force uncertainty.
        pressure_GPa
            Barostat pressure (NPT only).
        element_scales
            Calibration factor per element, used instead of ``scale`` where given.
        energy_scale
            Calibration factor of the models' energy uncertainty per atom.
        """
        run_id = f"it{iteration:03d}-run{run:02d}"
        with Meter("explore", self.name, self.energy_model) as meter:
            calc = make_estimator(
                models, scale, element_scales, self.settings.committee_forces, energy_scale
            )
            result = run_md(
                calc,
                structure,
                self.settings,
                temperature_K,
                self.hi,
                seed,
                iteration,
                run_id,
                pressure_GPa,
            )
        return result.model_copy(
            update={"structure_index": structure_index, "compute": meter.record}
        )


#: Old name: jobs stored by earlier campaigns refer to it, so they still load.
LangevinMDMaker = MDMaker


def run_md(
    calc: UncertaintyCalculator,
    structure: Frame,
    settings: ExploreConfig,
    temperature_K: float,
    hi: float,
    seed: int,
    iteration: int = 0,
    run_id: str = "run",
    pressure_GPa: float = 0.0,
) -> ExploreResult:
    """Integrate MD (NVT or NPT) and record frames with their calibrated uncertainty.

    The run ends early when the uncertainty stays above ``hi`` for
    ``settings.patience`` recorded frames in a row, or when the structure breaks
    (non-finite numbers, atoms closer than 0.5 Å, a cell whose volume changed by more
    than ``settings.max_volume_change``); broken frames are not recorded and the
    reason is kept. With ``settings.bias_depth > 0`` the dynamics runs on the biased
    energy of :class:`alflow.explore.bias.BiasedCalculator`; recorded uncertainties
    stay the unbiased ensemble's.
    """
    from ase.md.velocitydistribution import (
        MaxwellBoltzmannDistribution,
        Stationary,
        ZeroRotation,
    )

    rng = np.random.default_rng(seed)
    atoms = structure.to_atoms(with_labels=False)
    atoms.calc = calc
    if settings.bias_depth > 0:
        atoms.calc = BiasedCalculator(calc, settings.bias_depth, settings.bias_width)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dyn = make_integrator(atoms, settings, temperature_K, pressure_GPa, rng)
    volume0 = atoms.get_volume() if atoms.pbc.all() else None
    frames: list[Frame] = []
    deviations: list[float] = []
    energy_deviations: list[float] = []
    bias_energies: list[float] = []
    stop_reason = None
    steps = 0
    above = 0
    blocks = -(-settings.steps // settings.record_every)
    for block in range(blocks):
        target = ramp_temperature(temperature_K, settings.ramp_to_K, steps, settings.steps)
        if settings.ramp_to_K is not None:
            dyn.set_temperature(temperature_K=target)
        n = min(settings.record_every, settings.steps - steps)
        dyn.run(n)
        steps += n
        stop_reason = broken_structure(atoms, volume0, settings.max_volume_change)
        if stop_reason is not None:
            stop_reason += f" at step {steps}"
            break  # a broken frame is neither recorded nor worth a label
        deviation = force_deviation(atoms.calc, atoms)
        deviations.append(deviation)
        energy_deviations.append(float(atoms.calc.results["energy_deviation"]))
        if settings.bias_depth > 0:
            bias_energies.append(float(atoms.calc.results["bias_energy"]) / len(atoms))
        frames.append(_snapshot(atoms, iteration, run_id, steps, deviation))
        above = above + 1 if deviation > hi else 0
        if above >= settings.patience:
            stop_reason = (
                f"deviation above hi {hi} eV/Å for {above} recorded frame(s), "
                f"last {deviation:.3f} at step {steps}"
            )
            break
        if block % max(1, blocks // 5) == 0:
            progress.report(
                iteration, "explore", f"{run_id} at {target:.0f} K", steps, settings.steps
            )
    return ExploreResult(
        run_id=run_id,
        iteration=iteration,
        structure_index=0,
        temperature_K=temperature_K,
        pressure_GPa=pressure_GPa if settings.ensemble != "nvt" else None,
        steps_requested=settings.steps,
        steps_done=steps,
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        deviations=deviations,
        energy_deviations=energy_deviations,
        bias_energies=bias_energies,
        frames=frames,
    )


def make_integrator(
    atoms: Atoms, settings: ExploreConfig, temperature_K: float, pressure_GPa: float, rng: Any
) -> Any:
    """The ASE integrator of ``settings.ensemble``.

    NVT uses Langevin dynamics with an exact centre-of-mass constraint (ASE's
    ``fixcm=True`` samples NVT slightly wrongly). NPT uses ASE's MTK Nosé-Hoover
    chains (correct ensemble) or Berendsen (robust, wrong fluctuations, useful to
    relax a density).
    """
    from ase import units
    from ase.constraints import FixCom

    timestep = settings.timestep_fs * units.fs
    if settings.ensemble == "nvt":
        from ase.md.langevin import Langevin

        atoms.set_constraint(FixCom())
        return Langevin(
            atoms,
            timestep=timestep,
            temperature_K=temperature_K,
            friction=settings.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    if not atoms.pbc.all():
        raise ValueError("NPT needs a periodic cell (pbc in all three directions)")
    pressure_au = pressure_GPa * units.GPa
    if settings.ensemble == "npt-mtk":
        from ase.md.nose_hoover_chain import MTKNPT

        return MTKNPT(
            atoms,
            timestep=timestep,
            temperature_K=temperature_K,
            pressure_au=pressure_au,
            tdamp=settings.thermostat_fs * units.fs,
            pdamp=settings.barostat_fs * units.fs,
        )
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(
        atoms,
        timestep=timestep,
        temperature_K=temperature_K,
        pressure_au=pressure_au,
        taut=settings.thermostat_fs * units.fs,
        taup=settings.barostat_fs * units.fs,
        compressibility_au=settings.compressibility_per_GPa / units.GPa,
    )


def ramp_temperature(start: float, end: float | None, step: int, total: int) -> float:
    """Thermostat target at ``step`` of a linear ramp from ``start`` to ``end`` (pure)."""
    if end is None or total <= 0:
        return start
    return start + (end - start) * min(1.0, step / total)


def _snapshot(atoms: Atoms, iteration: int, run_id: str, step: int, deviation: float) -> Frame:
    snapshot = atoms.copy()
    snapshot.set_constraint()
    return Frame.from_atoms(
        snapshot,
        labels_from_calc=False,
        provenance=Provenance(
            source="explore",
            iteration=iteration,
            explorer_run=run_id,
            step=step,
            deviation=deviation,
        ),
    )


def broken_structure(
    atoms: object, volume0: float | None = None, max_volume_change: float = 0.5
) -> str | None:
    """Why a structure is unphysical, or None if it looks sane."""
    from ase import Atoms

    assert isinstance(atoms, Atoms)
    if not np.all(np.isfinite(atoms.positions)) or not np.all(np.isfinite(atoms.cell.array)):
        return "non-finite positions or cell"
    if volume0 is not None:
        change = atoms.get_volume() / volume0 - 1.0
        if abs(change) > max_volume_change:
            return f"cell volume changed by {change:+.0%} (limit ±{max_volume_change:.0%})"
    if len(atoms) > 1:
        distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
        np.fill_diagonal(distances, np.inf)
        closest = float(distances.min())
        if closest < MIN_DISTANCE:
            return f"atoms {closest:.2f} Å apart (< {MIN_DISTANCE} Å)"
    return None
