"""From a campaign config to a jobflow Flow that runs the active-learning loop.

The models are a MACE committee, one MACE model with a shallow ensemble, or a GAP
(``train.model`` and ``train.uncertainty``); validation calibrates their uncertainty
and the next iteration explores and selects with the calibrated values.

Each iteration is built at run time by a controller job, :func:`advance`, which
closes the previous iteration (roll-up, stop decision) and, unless the campaign
stops, returns the next iteration's jobs plus the next controller as a
``Response.addition`` (the dynamic-flow idiom of atomate2). Iteration 0 seeds the
dataset and trains the first models; iteration i ≥ 1 explores with models i-1,
selects, labels, trains models i on everything labelled so far and validates
them, so the last models of a campaign have seen every label.

::

    advance ─► explore ×M ─► select ─► label ×N ─► train ×K ─► validate ─► advance
                                                                 (+ calibrate)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jobflow import Flow, Job, JobConfig, Response, job

from alflow import progress
from alflow.accounting import ComputeRecord, roll_up
from alflow.bootstrap import perturbed_copies
from alflow.config import Campaign, GAPConfig
from alflow.dataset import job_dataset
from alflow.decide import decide
from alflow.explore.md import MDMaker
from alflow.frames import Frame, LevelOfTheory, Provenance, read_frames
from alflow.label.jobs import LabelMaker, LabelResult, label_all
from alflow.select.jobs import SelectionSummary, SelectMaker
from alflow.state import CampaignState, IterationRecord
from alflow.store import CampaignPaths
from alflow.train.gap import GAPTrainMaker
from alflow.train.mace import MACETrainMaker
from alflow.train.records import ModelRecord
from alflow.validate import ValidateMaker, ValidationResult

#: ``metadata["alflow"]`` of controller jobs, so that the store can be queried.
CONTROLLER = "controller"


def campaign_flow(campaign: Campaign, state: CampaignState | None = None) -> Flow:
    """The Flow of a campaign, starting after ``state`` (from scratch if None)."""
    state = state or CampaignState(campaign=campaign.name)
    return Flow([controller_job(campaign, state)], name=f"alflow {campaign.name}")


def controller_job(
    campaign: Campaign, state: CampaignState, outcome: dict[str, Any] | None = None
) -> Job:
    """A controller job tagged so that status queries can find it."""
    controller = advance(campaign, state, outcome)
    controller.name = f"controller after iteration {state.iteration}"
    controller.metadata = {"alflow": CONTROLLER, "campaign": campaign.name}
    return controller


@job(config=JobConfig(expose_store=True))
def advance(
    campaign: Campaign, state: CampaignState, outcome: dict[str, Any] | None = None
) -> Response:
    """Close the iteration that produced ``outcome`` and start the next one."""
    campaign = Campaign.model_validate(campaign, context={"check_files": False})
    state = CampaignState.model_validate(state)
    if outcome is not None:
        state = close_iteration(campaign, state, outcome)
        if state.stopped:
            progress.report(state.iteration, "stop", state.stop_reason or "")
            return Response(output=state)
    state = state.model_copy(update={"iteration_started": time.time()})
    nxt = state.iteration + 1
    flow = bootstrap_flow(campaign, state) if nxt == 0 else iteration_flow(campaign, state, nxt)
    return Response(output=state, addition=flow)


def close_iteration(
    campaign: Campaign, state: CampaignState, outcome: dict[str, Any]
) -> CampaignState:
    """Summarise an iteration, add it to the history and apply the stop decision."""
    dataset = job_dataset(campaign.name)
    labels_used = dataset.labels_spent()
    record = summarize_iteration(
        state.iteration + 1,
        outcome,
        labels_total=dataset.count("ok"),
        wall_s=time.time() - (state.iteration_started or time.time()),
    )
    history = [*state.history, record]
    decision = decide(history, campaign.stop, labels_used)
    progress.report(record.iteration, "decide", decision.reason, labels_total=record.labels_total)
    return state.model_copy(
        update={
            "iteration": record.iteration,
            "history": history,
            "models": record.models,
            "uncertainty_scale": record.calibration.scale if record.calibration else 1.0,
            "uncertainty_element_scales": (
                record.calibration.element_scales if record.calibration else {}
            ),
            "uncertainty_energy_scale": (
                record.calibration.energy_scale if record.calibration else 1.0
            ),
            "labels_used": labels_used,
            "stopped": decision.stop,
            "stop_reason": decision.reason if decision.stop else None,
            "stop_kind": decision.kind if decision.stop else None,
            "iteration_started": None,
        }
    )


def summarize_iteration(
    iteration: int, outcome: dict[str, Any], labels_total: int, wall_s: float
) -> IterationRecord:
    """Turn the outputs of an iteration's jobs into its record (pure)."""
    selection = outcome.get("selection")
    selection = SelectionSummary.model_validate(selection) if selection else None
    labels = [LabelResult.model_validate(x) for x in outcome.get("labels") or []]
    models = [ModelRecord.model_validate(m) for m in outcome.get("models") or []]
    validation = outcome.get("validation")
    validation = ValidationResult.model_validate(validation) if validation else None
    records: list[ComputeRecord] = [m.compute for m in models if m.compute]
    records += [x.compute for x in labels if x.compute]
    if selection is not None:
        records += selection.explore_compute
        records += [selection.compute] if selection.compute else []
    if validation is not None and validation.compute is not None:
        records.append(validation.compute)
    return IterationRecord(
        iteration=iteration,
        temperature_K=outcome.get("temperature_K"),
        explored=selection.explored if selection else None,
        median_deviation=selection.median_deviation if selection else None,
        runs=selection.runs if selection else 0,
        runs_stopped_early=selection.runs_stopped_early if selection else 0,
        selected=selection.n_selected if selection else len(labels),
        labels_new=sum(x.status == "ok" for x in labels),
        labels_failed=sum(x.status == "failed" for x in labels),
        labels_reused=sum(x.status == "reused" for x in labels),
        failures=[f"{x.frame_id}: {x.reason}" for x in labels if x.status == "failed"],
        labels_total=labels_total,
        validation=validation.committee if validation else None,
        member_force_rmse=validation.member_force_rmse if validation else [],
        mean_force_deviation=validation.mean_force_deviation if validation else None,
        calibration=validation.calibration if validation else None,
        models=models,
        compute=roll_up(records),
        wall_s=wall_s,
    )


def bootstrap_flow(campaign: Campaign, state: CampaignState) -> Flow:
    """Iteration 0: seed the dataset, train and validate the first committee."""
    jobs: list[Job | Flow] = []
    waits: list[Any] = []
    labels_ref: Any = []
    lot = campaign.label.level_of_theory()
    if campaign.data.initial is not None:
        imported = import_labelled(str(campaign.data.initial), campaign.name, lot)
        jobs.append(imported)
        waits.append(imported.output)
    if campaign.data.bootstrap is not None:
        b = campaign.data.bootstrap
        seeds = perturbed_copies(
            starting_structures(campaign),
            b.n_frames,
            b.rattle_std,
            b.strain,
            campaign.seed,
        )
        labeller = LabelMaker(settings=campaign.label, energy_model=campaign.accounting)
        labelled = label_all(seeds, labeller, campaign.name, 0)
        jobs.append(labelled)
        waits.append(labelled.output)
        labels_ref = labelled.output
    outcome = {"labels": labels_ref, "selection": None, "temperature_K": None}
    return _train_validate_advance(campaign, state, 0, jobs, waits, outcome)


def iteration_flow(campaign: Campaign, state: CampaignState, iteration: int) -> Flow:
    """Iteration i ≥ 1: explore, select, label, train, validate, advance."""
    temperature, pressure = campaign.explore.at_iteration(iteration)
    structures = starting_structures(campaign)
    explorer = MDMaker(
        settings=campaign.explore,
        hi=campaign.select.hi,
        energy_model=campaign.accounting,
    )
    md_jobs = []
    for run in range(campaign.explore.runs):
        index = run % len(structures)
        md = explorer.make(
            state.models,
            structures[index],
            iteration,
            run,
            index,
            temperature,
            seed=_seed(campaign, iteration, 1000 + run),
            scale=state.uncertainty_scale,
            pressure_GPa=pressure,
            element_scales=state.uncertainty_element_scales,
            energy_scale=state.uncertainty_energy_scale,
        )
        md.name = f"explore {run + 1}/{campaign.explore.runs}"
        md_jobs.append(md)
    selector = SelectMaker(
        settings=campaign.select,
        max_labels=campaign.stop.max_labels,
        energy_model=campaign.accounting,
    ).make([md.output for md in md_jobs], campaign.name, iteration)
    labeller = LabelMaker(settings=campaign.label, energy_model=campaign.accounting)
    labels = label_all(selector.output.selected, labeller, campaign.name, iteration)
    outcome = {
        "labels": labels.output,
        "selection": selector.output.summary,
        "temperature_K": temperature,
    }
    return _train_validate_advance(
        campaign,
        state,
        iteration,
        [*md_jobs, selector, labels],
        [labels.output],
        outcome,
    )


def _train_validate_advance(
    campaign: Campaign,
    state: CampaignState,
    iteration: int,
    jobs: list[Job | Flow],
    waits: list[Any],
    outcome: dict[str, Any],
) -> Flow:
    """Append committee training (after ``waits``), validation and the next controller."""
    model_dir = CampaignPaths(campaign.campaign_dir()).model_dir(iteration)
    trainer, count = trainer_for(campaign)
    train_jobs = []
    for member in range(count):
        train = trainer.make(
            campaign.name,
            iteration,
            member,
            _seed(campaign, iteration, member),
            str(model_dir),
            after=waits,
            previous=state.models,
        )
        train.name = f"train member {member + 1}/{count}" if count > 1 else trainer.name
        train_jobs.append(train)
    models_ref = [t.output for t in train_jobs]
    validation_ref = None
    if campaign.data.validation is not None:
        validate = ValidateMaker(energy_model=campaign.accounting).make(
            models_ref, str(campaign.data.validation), iteration, str(model_dir)
        )
        train_jobs.append(validate)
        validation_ref = validate.output
    outcome = {**outcome, "models": models_ref, "validation": validation_ref}
    controller = controller_job(campaign, state, outcome)
    return Flow([*jobs, *train_jobs, controller], name=f"iteration {iteration}")


def trainer_for(campaign: Campaign) -> tuple[MACETrainMaker | GAPTrainMaker, int]:
    """The training Maker of the campaign's model kind and how many models it trains."""
    settings = campaign.train
    if isinstance(settings, GAPConfig):
        return GAPTrainMaker(settings=settings, energy_model=campaign.accounting), 1
    trainer = MACETrainMaker(settings=settings, energy_model=campaign.accounting)
    if settings.uncertainty == "shallow":
        trainer.name = "train mace + shallow ensemble"
        return trainer, 1
    return trainer, settings.committee


@job(config=JobConfig(expose_store=True))
def import_labelled(path: str, campaign: str, level_of_theory: LevelOfTheory) -> int:
    """Add the user's labelled frames to the dataset (skipping ones already there).

    The frames are taken to be at the campaign's level of theory. Returns how many
    frames the file holds.
    """
    dataset = job_dataset(campaign)
    lot = LevelOfTheory.model_validate(level_of_theory)
    frames = read_frames(path)
    for frame in frames:
        frame = frame.model_copy(
            update={
                "level_of_theory": lot,
                "provenance": Provenance(source="initial", iteration=0),
            }
        )
        if dataset.get(frame.frame_id, lot.settings_hash) is None:
            dataset.add(frame, "ok", 0)
    progress.report(0, "import", f"{len(frames)} labelled frames from {Path(path).name}")
    return len(frames)


def starting_structures(campaign: Campaign) -> list[Frame]:
    """Every frame of every file in ``system.structures``, without labels."""
    frames = []
    for path in campaign.system.structures:
        frames += [
            f.model_copy(update={"energy": None, "forces": None, "stress": None})
            for f in read_frames(path)
        ]
    return frames


def _seed(campaign: Campaign, iteration: int, stream: int) -> int:
    """Distinct, reproducible seeds per iteration and stream (member or MD run)."""
    return (campaign.seed * 1_000_003 + iteration * 10_007 + stream) % (2**31 - 1)
