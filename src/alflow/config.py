"""Campaign configuration: the schema of ``campaign.yaml``.

Every section is a pydantic model with ``extra="forbid"`` so that a misspelt key is
an error, not a silently ignored setting. Paths are relative to the YAML file's
folder. Loading with line numbers lives in :mod:`alflow.config_loader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from alflow.accounting import EnergyModel
from alflow.label.registry import LabelSettings
from alflow.select.soap import SOAPSettings


def _resolve_file(value: Path, info: ValidationInfo) -> Path:
    """Make a path absolute against the config's folder and require that it exists."""
    context = info.context or {}
    base = Path(context.get("base_dir", "."))
    path = value if value.is_absolute() else (base / value)
    path = path.resolve()
    if context.get("check_files", True) and not path.is_file():
        raise ValueError(
            f"file '{value}' not found (looked for {path}); give a path relative to "
            "the config file's folder or an absolute one"
        )
    return path


def _resolve_folder(value: Path | None, info: ValidationInfo) -> Path | None:
    """Make a folder path absolute against the config's folder (it may not exist yet)."""
    if value is None or value.is_absolute():
        return value
    return (Path((info.context or {}).get("base_dir", ".")) / value).resolve()


def _as_list(value: Any) -> Any:
    """Accept a single item where a list is expected."""
    return value if isinstance(value, list) else [value]


InputFile = Annotated[Path, AfterValidator(_resolve_file)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SystemConfig(_Section):
    """What is being simulated."""

    structures: Annotated[list[InputFile], BeforeValidator(_as_list)] = Field(
        min_length=1,
        description="Starting structures for exploration (and bootstrap seeds): one "
        "or more files readable by ASE; every frame in them is used.",
    )


class BootstrapConfig(_Section):
    """Seed the dataset by labelling perturbed copies of the starting structures."""

    n_frames: int = Field(8, ge=2, description="Perturbed frames to label.")
    rattle_std: float = Field(
        0.05, gt=0, le=0.5, description="Gaussian displacement per coordinate (Å)."
    )
    strain: float = Field(0.0, ge=0, le=0.2, description="Max random strain for periodic cells.")


class DataConfig(_Section):
    """Where the first labels and the held-out test set come from."""

    initial: InputFile | None = Field(
        None, description="Labelled frames (energy and forces) to start from."
    )
    bootstrap: BootstrapConfig | None = Field(
        None, description="Label perturbed copies of the structures to start from."
    )
    validation: InputFile | None = Field(
        None,
        description="Held-out labelled frames, at the same level of theory, for "
        "energy and force RMSE; never trained on.",
    )

    @model_validator(mode="after")
    def _need_a_start(self) -> DataConfig:
        if self.initial is None and self.bootstrap is None:
            raise ValueError(
                "no starting data: set 'initial' (a labelled extxyz file) or "
                "'bootstrap' (e.g. 'bootstrap: {n_frames: 8}')"
            )
        return self


class FoundationConfig(_Section):
    """A MACE foundation model (a local file) to fine-tune instead of training from scratch."""

    path: InputFile = Field(
        description="Local '.model' file of a MACE foundation model (MACE-MP, MACE-OFF, "
        "or one of your own). Its architecture replaces the train section's."
    )
    mode: Literal["naive", "multihead"] = Field(
        "naive",
        description="'naive': continue training all weights on the campaign's data. "
        "'multihead': train a new head jointly with a replay head on frames from "
        "replay_file, so the model keeps what it knew (mace-torch's multihead "
        "fine-tuning); the replay head is removed from the saved model.",
    )
    replay_file: InputFile | None = Field(
        None,
        description="Labelled extxyz frames replayed in multihead mode, e.g. a subset of "
        "the foundation model's training data (keys energy/forces or REF_energy/REF_forces).",
    )
    replay_samples: int = Field(
        1000, ge=1, description="Replay frames drawn per training run (multihead mode)."
    )

    @model_validator(mode="after")
    def _replay_for_multihead(self) -> FoundationConfig:
        if self.mode == "multihead" and self.replay_file is None:
            raise ValueError(
                "multihead fine-tuning needs replay frames: set replay_file to a labelled "
                "extxyz file, or use mode: naive"
            )
        return self


class MACEConfig(_Section):
    """MACE models trained with mace-torch, from scratch or from a foundation model."""

    model: Literal["mace"] = Field("mace", description="Model family: 'mace' or 'gap'.")
    uncertainty: Literal["committee", "shallow"] = Field(
        "committee",
        description="'committee': K independently trained models (their spread). "
        "'shallow': one model whose last layer carries shallow_members members "
        "(one backbone pass gives all of them), fitted by shallow_fit: a third of a "
        "3-member committee's training; it ranks frames less well than a committee "
        "(benchmarks/uncertainty.py) but selected about as well in the pool replays "
        "(benchmarks/data_efficiency.py: fewest labels scored by GAP, behind the "
        "committee in 4 of 5 seeds scored by MACE) and reached the online target with a third "
        "of the kWh (benchmarks/online.py).",
    )
    committee: int = Field(3, ge=2, le=32, description="Committee members (K).")
    bootstrap: bool = Field(
        False,
        description="Train each committee member on a bootstrap resample of the data "
        "(drawn with replacement) instead of all of it.",
    )
    shallow_members: int = Field(
        4,
        ge=2,
        le=64,
        description="Members of a shallow ensemble (M). Force uncertainties cost M-1 "
        "extra gradients; on acetylacetone 4 ranked frames as well as 8-32 with the "
        "'nll' fit (benchmarks/uncertainty.py, an earlier run).",
    )
    shallow_fit: Literal["rigidity", "nll"] = Field(
        "rigidity",
        description="How the shallow members are fitted on the frozen backbone. "
        "'rigidity': closed form, the last layer as a Bayesian linear model; the "
        "members' mean is the trained model and their spread its M-1 widest posterior "
        "directions; reproducible, and on acetylacetone it ranks 600 K frames better "
        "(Spearman 0.52 against 0.31, benchmarks/uncertainty.py). 'nll': L-BFGS on the "
        "Gaussian negative log-likelihood (Kellner & Ceriotti 2024), which also refits "
        "the mean; for comparison.",
    )
    shallow_steps: int = Field(
        200, ge=1, description="L-BFGS iterations of the 'nll' shallow-ensemble fit."
    )
    epochs: int = Field(100, ge=1, description="Training epochs per member.")
    min_steps: int | None = Field(
        None,
        ge=1,
        description="Train for at least this many optimiser steps (more epochs on small "
        "datasets: 8 frames at batch_size 5 are one step per epoch); a warm start "
        "gets the share warm_start_epochs / epochs of it; null: epochs only.",
    )
    warm_start_epochs: int | None = Field(
        None,
        ge=1,
        description="From iteration 1 on, continue each member from its weights of the "
        "previous iteration for this many epochs (same learning rate) instead "
        "of training from scratch; null retrains from scratch.",
    )
    foundation: FoundationConfig | None = Field(
        None, description="Fine-tune this foundation model instead of training from scratch."
    )
    batch_size: int = Field(5, ge=1, description="Frames per batch.")
    lr: float = Field(0.01, gt=0, description="Learning rate.")
    r_max: float = Field(4.0, gt=0, description="Cut-off radius (Å).")
    num_channels: int = Field(16, ge=1, description="Channels per irrep.")
    max_L: int = Field(0, ge=0, le=3, description="Max L of the hidden features.")
    num_interactions: int = Field(2, ge=1, description="Message-passing layers.")
    correlation: int = Field(2, ge=1, description="Body order of messages minus one.")
    e0s: Literal["average"] | dict[str, float] = Field(
        "average",
        description="Isolated-atom energies: 'average' (least squares on the "
        "training set) or a mapping element -> eV.",
    )
    energy_weight: float = Field(
        10.0,
        ge=0,
        description="Energy loss weight. MACE's usual 1 (vs forces 100) lets energies drift "
        "by ~1 eV/atom on small datasets; 10 keeps them anchored at no cost in forces.",
    )
    forces_weight: float = Field(100.0, ge=0, description="Force loss weight.")
    stage_two_from: float | None = Field(
        0.75,
        gt=0,
        lt=1,
        description="Fraction of the epochs after which MACE's stage two starts (energy "
        "weight raised to stage_two_energy_weight, lower learning rate); null disables.",
    )
    stage_two_energy_weight: float = Field(
        100.0, ge=0, description="Energy loss weight in stage two."
    )
    ema_decay: float | None = Field(
        0.99,
        gt=0,
        lt=1,
        description="Exponential moving average of weights; null disables.",
    )
    valid_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Training frames used for early stopping."
    )
    dtype: Literal["float32", "float64"] = Field("float64", description="Precision.")
    threads: int = Field(
        1, ge=1, description="OpenMP threads per training job (members run as jobs)."
    )


class GAPConfig(_Section):
    """A Gaussian approximation potential (2-body + SOAP) fitted with quippy's gap_fit."""

    model: Literal["gap"] = Field(description="Model family: 'mace' or 'gap'.")
    uncertainty: Literal["variance"] = Field(
        "variance", description="GAP's own predictive variance is its uncertainty."
    )
    two_body_cutoff: float = Field(5.0, gt=0, description="Cut-off of the 2-body term (Å).")
    two_body_delta: float = Field(1.0, gt=0, description="Energy scale of the 2-body term (eV).")
    two_body_n_sparse: int = Field(20, ge=1, description="Sparse points of the 2-body term.")
    soap_cutoff: float = Field(4.5, gt=0, description="SOAP cut-off (Å).")
    soap_l_max: int = Field(4, ge=1, le=12, description="SOAP angular resolution.")
    soap_n_max: int = Field(6, ge=1, le=16, description="SOAP radial resolution.")
    soap_atom_sigma: float = Field(0.5, gt=0, description="SOAP Gaussian width (Å).")
    soap_delta: float = Field(0.2, gt=0, description="Energy scale of the SOAP term (eV).")
    soap_n_sparse: int = Field(300, ge=1, description="Sparse environments of the SOAP term.")
    default_sigma: tuple[float, float, float] = Field(
        (0.002, 0.04, 0.0),
        description="Regularisation: expected errors of energies (eV/atom), forces "
        "(eV/Å) and virials (eV/atom), gap_fit's default_sigma. The default suits "
        "converged DFT single points (21-35 % lower force errors than 0.005 / 0.1 on acac, "
        "3-6 % on Si, at the same cost: benchmarks/gap_settings.py); raise it for noisy "
        "labels.",
    )
    threads: int = Field(1, ge=1, description="OpenMP threads of gap_fit.")


def _mace_by_default(value: Any) -> Any:
    """``train`` without a ``model`` key means MACE."""
    if isinstance(value, dict) and "model" not in value:
        return {**value, "model": "mace"}
    return value


TrainConfig = Annotated[
    MACEConfig | GAPConfig, Field(discriminator="model"), BeforeValidator(_mace_by_default)
]


class ExploreConfig(_Section):
    """MD exploration: ensemble, schedules, stopping rules, and which model drives it."""

    ensemble: Literal["nvt", "npt-mtk", "npt-berendsen"] = Field(
        "nvt",
        description="'nvt': Langevin. 'npt-mtk': ASE's MTK Nosé-Hoover chains (correct "
        "NPT ensemble). 'npt-berendsen': Berendsen (robust; wrong fluctuations).",
    )
    pressure_GPa: Annotated[list[float], BeforeValidator(_as_list)] = Field(
        default_factory=lambda: [0.0],
        min_length=1,
        description="Barostat pressure (GPa, NPT); a list gives one value per iteration "
        "and the last one repeats.",
    )
    ramp_to_K: float | None = Field(
        None,
        ge=0,
        description="Ramp the thermostat linearly within each run from the iteration's "
        "temperature to this one (nvt and npt-berendsen).",
    )
    thermostat_fs: float = Field(100.0, gt=0, description="Thermostat time constant (fs, NPT).")
    barostat_fs: float = Field(1000.0, gt=0, description="Barostat time constant (fs, NPT).")
    compressibility_per_GPa: float = Field(
        0.01, gt=0, description="Compressibility for the Berendsen barostat (1/GPa)."
    )
    patience: int = Field(
        1,
        ge=1,
        description="Stop a run after this many recorded frames in a row above select.hi.",
    )
    max_volume_change: float = Field(
        0.5,
        gt=0,
        description="Stop a run (cell exploding or collapsing) when the volume changed by "
        "more than this fraction.",
    )

    runs: int = Field(2, ge=1, description="MD runs per iteration (structures cycle).")
    steps: int = Field(400, ge=1, description="Maximum MD steps per run.")
    timestep_fs: float = Field(0.5, gt=0, le=10, description="Time step (fs).")
    temperature_K: Annotated[list[float], BeforeValidator(_as_list)] = Field(
        default_factory=lambda: [300.0],
        min_length=1,
        description="Temperature (K); a list gives one value per iteration and the "
        "last one repeats.",
    )
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction (1/fs).")
    record_every: int = Field(10, ge=1, description="Record a frame every n steps.")
    committee_forces: Literal["mean", "first"] = Field(
        "mean",
        description="With a committee: 'mean' integrates the committee mean (every "
        "member at every step); 'first' integrates member 0 and evaluates the other "
        "members only at recorded frames (DP-GEN's way; MD costs about one model per "
        "step, but a single member trained on few frames visits worse structures). "
        "Shallow ensembles and GAP always integrate their one model.",
    )
    bias_depth: float = Field(
        0.0,
        ge=0,
        description="Uncertainty-biased MD (MACE committee with committee_forces 'mean', or "
        "shallow ensemble; nvt): depth "
        "(eV/atom) of a bias energy that is lower where the members' energies disagree, "
        "pulling the dynamics towards configurations the models do not know; bounded, so "
        "it stops pushing once they are lost. 0: plain MD.",
    )
    bias_width: float = Field(
        0.005,
        gt=0,
        description="Calibrated energy uncertainty per atom (eV/atom) over which the bias "
        "reaches about 40 % of its depth; below it the bias is quadratic in the uncertainty.",
    )

    @model_validator(mode="after")
    def _positive_temperatures(self) -> ExploreConfig:
        if any(t < 0 for t in self.temperature_K):
            raise ValueError("temperature_K must be ≥ 0 K")
        if self.ramp_to_K is not None and self.ensemble == "npt-mtk":
            raise ValueError(
                "ramp_to_K works with nvt and npt-berendsen; ASE's MTK integrator keeps "
                "a fixed temperature"
            )
        if self.bias_depth > 0 and (self.ensemble != "nvt" or self.committee_forces != "mean"):
            raise ValueError(
                "bias_depth > 0 (uncertainty-biased MD) needs ensemble: nvt and "
                "committee_forces: mean (the bias acts on positions and needs every "
                "member at every step)"
            )
        return self

    def at_iteration(self, iteration: int) -> tuple[float, float]:
        """Temperature (K) and pressure (GPa) of the schedules for iteration ≥ 1."""
        t = self.temperature_K[min(iteration - 1, len(self.temperature_K) - 1)]
        p = self.pressure_GPa[min(iteration - 1, len(self.pressure_GPa) - 1)]
        return t, p


class SelectConfig(_Section):
    """Which explored frames are worth a label."""

    lo: float = Field(
        0.05,
        ge=0,
        description="Frame uncertainty (predicted max force error, calibrated; eV/Å) "
        "below which a frame is trusted.",
    )
    hi: float = Field(
        0.5,
        gt=0,
        description="Frame uncertainty (predicted max force error, calibrated; eV/Å) "
        "above which a frame is taken as unphysical (DP-GEN's 'failed': not labelled, "
        "and MD runs stop after explore.patience such frames).",
    )
    energy_lo: float | None = Field(
        None,
        gt=0,
        description="Energy uncertainty per atom (predicted energy error, calibrated; "
        "eV/atom) from which a frame below lo is a candidate too: strained or compressed "
        "crystals, whose forces vanish by symmetry for every model. null: forces only.",
    )
    max_per_iteration: int = Field(8, ge=1, description="Labels per iteration, at most.")
    strategy: Literal["alflow", "dpgen", "max-uncertainty", "soap-fps"] = Field(
        "alflow",
        description="'alflow': window, then SOAP novelty, then farthest-point sampling "
        "seeded with the training set. For comparison: 'dpgen' (random in the window), "
        "'max-uncertainty' (largest first in the window), 'soap-fps' (SOAP "
        "farthest-point sampling only, no uncertainty).",
    )
    novelty_min: float = Field(
        0.0,
        ge=0,
        le=2,
        description="Frames whose most novel environment is closer than this to the "
        "training set (unit-SOAP distance, 0..2) are not labelled.",
    )
    soap: SOAPSettings = Field(default_factory=SOAPSettings, description="SOAP settings.")

    @model_validator(mode="after")
    def _window(self) -> SelectConfig:
        if self.lo >= self.hi:
            raise ValueError(
                f"lo ({self.lo}) must be smaller than hi ({self.hi}): frames with "
                "lo ≤ deviation < hi are selected"
            )
        return self


class StopConfig(_Section):
    """When the campaign ends: whichever criterion is met first."""

    max_iterations: int = Field(5, ge=1, description="Active-learning iterations.")
    max_labels: int | None = Field(
        None, ge=1, description="Label budget (frames sent to the labeller)."
    )
    accurate_fraction: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="Stop when this fraction of explored frames has deviation < lo.",
    )
    force_rmse: float | None = Field(
        None, gt=0, description="Stop when the held-out force RMSE (eV/Å) is below."
    )
    max_failed_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Stop (with the reasons) when more than this fraction of an "
        "iteration's labels failed: the labeller settings need attention.",
    )


class Campaign(_Section):
    """A whole active-learning campaign."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Campaign name (letters, digits, '_', '-', '.').",
    )
    seed: int = Field(0, ge=0, description="Master random seed.")
    output: Annotated[Path | None, AfterValidator(_resolve_folder)] = Field(
        None,
        description="Campaign folder, relative to the config file. Default: runs/<name> "
        "in the folder alflow is run from.",
    )
    system: SystemConfig
    data: DataConfig
    label: LabelSettings
    train: TrainConfig = Field(default_factory=MACEConfig)
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    accounting: EnergyModel = Field(default_factory=EnergyModel)

    def campaign_dir(self, cwd: Path | None = None) -> Path:
        """The campaign folder, absolute."""
        if self.output is not None:
            return self.output
        return ((cwd or Path.cwd()) / "runs" / self.name).resolve()
