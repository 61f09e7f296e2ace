"""Exploration by Langevin molecular dynamics on the models' mean forces.

A run records a frame every ``record_every`` steps together with its calibrated max
force uncertainty (computed only at those steps for estimators where it costs
extra), and stops early when that deviation exceeds ``hi`` (the model is
lost there; what follows would be unphysical) or when the structure breaks
(non-finite numbers, atoms collapsing onto each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from jobflow import Maker, job
from pydantic import BaseModel, Field

from alflow import progress
from alflow.accounting import ComputeRecord, EnergyModel, Meter
from alflow.config import ExploreConfig
from alflow.frames import Frame, Provenance
from alflow.train.records import ModelRecord
from alflow.uncertainty import make_estimator
from alflow.uncertainty.base import UncertaintyCalculator, force_deviation

#: Two atoms closer than this (Å) mean the dynamics has broken down.
MIN_DISTANCE = 0.5


class ExploreResult(BaseModel):
    """Summary of one MD run; its frames go to the data store."""

    run_id: str = Field(description="Unique id of the run within the campaign.")
    iteration: int = Field(description="Iteration of the run.")
    structure_index: int = Field(description="Which starting structure was used.")
    temperature_K: float = Field(description="Thermostat temperature (K).")
    steps_requested: int = Field(description="Steps asked for.")
    steps_done: int = Field(description="Steps actually run.")
    stopped_early: bool = Field(description="Whether the run ended before its steps.")
    stop_reason: str | None = Field(None, description="Why it ended early.")
    deviations: list[float] = Field(description="Deviation of each recorded frame.")
    frames: list[Frame] = Field(description="Recorded frames (in the data store).")
    compute: ComputeRecord | None = Field(None, description="Cost of the run.")


@dataclass
class LangevinMDMaker(Maker):
    """Langevin MD with a committee, recording frames and their deviation.

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
        """
        run_id = f"it{iteration:03d}-run{run:02d}"
        with Meter("explore", self.name, self.energy_model) as meter:
            calc = make_estimator(models, scale=scale)
            result = run_langevin(
                calc,
                structure,
                self.settings,
                temperature_K,
                self.hi,
                seed,
                iteration,
                run_id,
            )
        return result.model_copy(
            update={"structure_index": structure_index, "compute": meter.record}
        )


def run_langevin(
    calc: UncertaintyCalculator,
    structure: Frame,
    settings: ExploreConfig,
    temperature_K: float,
    hi: float,
    seed: int,
    iteration: int = 0,
    run_id: str = "run",
) -> ExploreResult:
    """Integrate Langevin dynamics and record frames with their deviation."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import (
        MaxwellBoltzmannDistribution,
        Stationary,
        ZeroRotation,
    )

    rng = np.random.default_rng(seed)
    atoms = structure.to_atoms(with_labels=False)
    atoms.calc = calc
    # ASE's fixcm=True Langevin samples NVT slightly wrongly; FixCom is exact
    atoms.set_constraint(FixCom())
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dyn = Langevin(
        atoms,
        timestep=settings.timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=settings.friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    frames: list[Frame] = []
    deviations: list[float] = []
    stop_reason = None
    steps = 0
    blocks = -(-settings.steps // settings.record_every)
    for block in range(blocks):
        n = min(settings.record_every, settings.steps - steps)
        dyn.run(n)
        steps += n
        stop_reason = broken_structure(atoms)
        if stop_reason is not None:
            break  # a broken frame is neither recorded nor worth a label
        deviation = force_deviation(calc, atoms)
        deviations.append(deviation)
        snapshot = atoms.copy()
        snapshot.set_constraint()
        frames.append(
            Frame.from_atoms(
                snapshot,
                labels_from_calc=False,
                provenance=Provenance(
                    source="explore",
                    iteration=iteration,
                    explorer_run=run_id,
                    step=steps,
                    deviation=deviation,
                ),
            )
        )
        if deviation > hi:
            stop_reason = f"deviation {deviation:.3f} eV/Å > hi {hi} at step {steps}"
            break
        if block % max(1, blocks // 5) == 0:
            progress.report(
                iteration,
                "explore",
                f"{run_id} at {temperature_K:.0f} K",
                steps,
                settings.steps,
            )
    return ExploreResult(
        run_id=run_id,
        iteration=iteration,
        structure_index=0,
        temperature_K=temperature_K,
        steps_requested=settings.steps,
        steps_done=steps,
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        deviations=deviations,
        frames=frames,
    )


def broken_structure(atoms: object) -> str | None:
    """Why a structure is unphysical, or None if it looks sane."""
    from ase import Atoms

    assert isinstance(atoms, Atoms)
    if not np.all(np.isfinite(atoms.positions)):
        return "non-finite positions"
    if len(atoms) > 1:
        distances = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
        np.fill_diagonal(distances, np.inf)
        closest = float(distances.min())
        if closest < MIN_DISTANCE:
            return f"atoms {closest:.2f} Å apart (< {MIN_DISTANCE} Å)"
    return None
