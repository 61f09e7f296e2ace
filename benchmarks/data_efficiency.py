"""Labels and energy per unit of accuracy: selection strategies replayed on labelled data.

Pool-based replay: a labelled dataset plays the unlabelled pool, and a frame's label
is revealed only when a strategy selects it. Every strategy starts from the same
random frames (per seed), selects ``--batch`` frames per step until ``--budget``
labels, and after each step the same MACE model (same settings, same seed) is
trained on what it selected and scored on the test sets. Strategies:

``random``
    frames drawn at random from the pool;
``dpgen``
    a committee of ``--committee`` MACE models; frames drawn at random inside the
    trust window (DP-GEN's loop);
``soap-fps``
    farthest-point sampling in SOAP space, seeded with the training set, no model
    (the autoplex/wfl approach);
``alflow``
    alflow's default policy on the same committee: window, SOAP novelty, then
    farthest-point sampling seeded with the training set (:mod:`alflow.select.policy`);
``alflow-shallow``
    alflow's default policy on a shallow ensemble (``train.uncertainty: shallow``,
    closed-form member fit) built on MACE member 0, the scored model itself: one
    training per step instead of a committee's;
``alflow-energy``
    the same with alflow's energy window (``select.energy_lo``): frames whose
    committee energy spread per atom is above the pool's ``--energy-quantile`` are
    candidates too, whatever their force uncertainty;
``alflow-gap``
    alflow's default policy on the predictive variance of a GAP (2-body + SOAP) fitted
    on the labelled frames, as a campaign with ``train.model: gap`` selects; with
    ``--scorer gap`` that GAP is the scored model, so no MACE model is trained at all;
``design-variance``, ``design-information``
    batch-mode Bayesian experimental design on MACE member 0's last layer
    (:mod:`alflow.select.design`): greedy V-optimal (posterior force variance over
    the pool) or D-optimal (information gain) picks, the posterior updated after
    each; no window and no SOAP. Not a campaign strategy: measured for comparison;
``oracle`` (a reference, not run unless asked for)
    the frames on which the scored model's force error is largest, computed from the
    pool's labels: what selection by a perfect error estimate would pick. No real
    strategy can know these errors; the curve says how far ranking by error can get
    on this pool at all.

The scored model is MACE member 0 (``--scorer mace``) or, with ``--scorer gap``, a GAP
(2-body + SOAP) fitted on the same frames: a kernel fit is exact, so its curve shows
what the frames are worth without the optimiser noise and step limit of a short MACE
training; the MACE committees still do the selecting, and the GAP fit is counted as
the strategy's model cost instead of MACE member 0 (results ``..._gap.json``). The GAP
has alflow's ``GAPConfig`` defaults unless ``--gap KEY=VALUE ...`` sets its fields
(a larger SOAP and tighter regularisation fit mlearn's Si far better than the defaults).

The trust window is relative, because a replayed pool has no broken frames and
absolute thresholds do not transfer between datasets: frames whose committee
uncertainty is above the pool's ``--window-quantile`` quantile are candidates (the
same window for dpgen and alflow; the energy window of alflow-energy is relative too).

Compute is metered per job (training, committee inference on the pool, SOAP) and
converted to kWh with alflow's power model; a label costs ``--label-kwh``, unless
given measured for acac by running PySCF (PBE/def2-SVP) on one pool frame, and for Si
assumed to be 4 core-hours (a VASP PBE single point on 64 atoms; VASP cannot run here).

Datasets: ``acac`` (``../shared/data/acac``: pool ``train_300K.xyz``, tests
``test_MD_300K.xyz`` and ``test_MD_600K.xyz``), ``si`` (``../shared/data/mlearn/Si``:
pool ``training.json``, test ``test.json``), ``si-hot`` (the same files with every
snapshot of the 3374 K runs, liquid and vacancy, held out of the pool as the
extrapolation test ``test_3374K``, beside ``test.json``'s other frames as
``test_below_3374K``), or any extxyz file with energies and forces (``--dataset
path.xyz``: a random fifth is the test set).

Run ``python benchmarks/data_efficiency.py --dataset acac`` (see ``--help``); results
go to ``benchmarks/results/data_efficiency_<dataset>.json`` and ``.png``. Finished
(strategy, seed) runs are kept under ``--work``: an interrupted run started again with
the same settings resumes where it stopped. ``--reuse a.json [b.json ...]`` takes
the finished curves of earlier runs with the same settings (and the first one's label
energy), so that seeds or strategies can be added without replaying what they hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import STARTED_AT, run_metadata, save_figure, write_json

from alflow.accounting import EnergyModel, Meter, read_rapl_uj
from alflow.config import GAPConfig, MACEConfig
from alflow.frames import Frame, read_frames
from alflow.select.policy import select_frames
from alflow.select.soap import SOAPDescriptor, SOAPSettings, score_candidates
from alflow.train.gap import train_gap
from alflow.train.mace import fit_shallow_ensemble, train_mace

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
STRATEGIES = (
    "random",
    "dpgen",
    "soap-fps",
    "alflow",
    "alflow-shallow",
    "alflow-energy",
    "alflow-gap",
    "design-variance",
    "design-information",
)
#: Strategies that no campaign could run (they read the pool's labels), run on request.
REFERENCES = ("oracle",)
NEEDS_COMMITTEE = {"dpgen", "alflow", "alflow-energy"}
#: Strategies whose uncertainty is a shallow ensemble on MACE member 0.
NEEDS_SHALLOW = {"alflow-shallow"}
#: Strategies whose uncertainty is the predictive variance of a GAP on the labelled frames
#: (a campaign with ``train.model: gap``); with ``--scorer gap`` it is the scored GAP.
NEEDS_GAP = {"alflow-gap"}
#: Strategies that design the batch on MACE member 0's last layer (alflow.select.design).
DESIGN = {"design-variance": "variance", "design-information": "information"}
#: Strategy of alflow.select.policy that each replay strategy runs.
POLICY = {
    "dpgen": "dpgen",
    "soap-fps": "soap-fps",
    "alflow": "alflow",
    "alflow-shallow": "alflow",
    "alflow-energy": "alflow",
    "alflow-gap": "alflow",
}


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="acac",
        help="acac, si, si-hot (3374 K held out as the test) or an extxyz path",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=STRATEGIES + REFERENCES,
        default=list(STRATEGIES),
        help="oracle: a reference that picks by the true error (not run by default)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--initial", type=int, default=10, help="random labels to start")
    parser.add_argument("--batch", type=int, default=10, help="labels per step")
    parser.add_argument("--budget", type=int, default=50, help="labels in the end")
    parser.add_argument("--committee", type=int, default=3, help="as train.committee")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--min-steps",
        type=int,
        default=600,
        help="optimiser steps at least (more epochs for few labels, train.min_steps)",
    )
    parser.add_argument(
        "--scorer",
        choices=("mace", "gap"),
        default="mace",
        help="model scored after each step: MACE member 0 (the committee's first), or a "
        "GAP fitted on the same frames (exact fit: the frames' worth without optimiser noise)",
    )
    parser.add_argument(
        "--gap",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="settings of the scored GAP and of alflow-gap's GAP, as fields of alflow's "
        "GAPConfig (YAML values), e.g. soap_l_max=6 soap_n_max=8, or 'default_sigma=[0.005, "
        "0.1, 0]' (the default before 0.002 / 0.04); unset fields keep GAPConfig's defaults",
    )
    parser.add_argument("--window-quantile", type=float, default=0.5)
    parser.add_argument(
        "--energy-quantile",
        type=float,
        default=0.8,
        help="alflow-energy: frames above this quantile of the energy spread are candidates",
    )
    parser.add_argument("--test-every", type=int, default=5, help="use every n-th test frame")
    parser.add_argument("--label-kwh", type=float, default=None, help="energy of one label")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads in all")
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="replays run side by side in this many processes, threads shared among them "
        "(two 1-thread trainings of small models do 1.3x the work of one 2-thread training)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=[],
        help="earlier results JSONs of this dataset and scorer: their finished (strategy, "
        "seed) curves are taken instead of replayed, if they were run with the same "
        "settings (the first one's label energy is used too), e.g. to add seeds or "
        "strategies; a curve in more than one file is taken from the first",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also fit the scored model on the whole pool (seed 0): the error that "
        "labelling everything reaches, i.e. how much room the strategies compete for",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/alflow-bench-efficiency"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    uses_gap = args.scorer == "gap" or "alflow-gap" in args.strategies
    # with --reuse, --gap may name the settings the reused alflow-gap curves were fitted with
    if args.gap and not uses_gap and not args.reuse:
        parser.error("--gap sets the GAP of --scorer gap or of alflow-gap; neither is used")
    try:
        args.gap = gap_overrides(args.gap)
    except ValueError as error:
        parser.error(str(error))
    args.conditions = replay_conditions(args.threads, args.jobs)
    return args


def replay_conditions(threads: int, jobs: int) -> dict[str, Any]:
    """How each replay runs, besides the settings that shape its curve: its threads
    (they change a model's floating-point sums) and how its energy is metered.

    RAPL counts the whole package, so replays side by side (``jobs`` above 1) are
    metered by their own CPU time; a single replay by RAPL where it is readable.
    Curves are resumed only under the same conditions, and the results record them.
    """
    rapl = jobs == 1 and read_rapl_uj() is not None
    return {
        "threads_per_replay": threads if jobs == 1 else max(1, threads // jobs),
        "metering": "RAPL" if rapl else "CPU-time power model",
    }


def gap_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items as GAPConfig fields, checked by building a GAPConfig.

    Raises
    ------
    ValueError
        Naming the item that is not ``KEY=VALUE`` (or not YAML), a field given twice,
        a field that GAPConfig does not have (or that other options set), or a value
        it refuses.
    """
    from pydantic import ValidationError
    from ruamel.yaml import YAML, YAMLError

    yaml = YAML(typ="safe")  # the project's YAML library, as for campaign files

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--gap {item!r}: expected KEY=VALUE, e.g. soap_l_max=6")
        if key in ("model", "threads"):
            raise ValueError(f"--gap {key}: set by the benchmark (threads: --threads)")
        if key not in GAPConfig.model_fields:
            fields = ", ".join(sorted(set(GAPConfig.model_fields) - {"model", "threads"}))
            raise ValueError(f"--gap {key}: GAPConfig has no such field; it has {fields}")
        if key in overrides:
            raise ValueError(f"--gap {key}: given twice")
        try:
            overrides[key] = yaml.load(value)
        except YAMLError as error:
            reason = getattr(error, "problem", None) or error  # one line, not YAML's marks
            raise ValueError(f"--gap {item!r}: the value is not YAML ({reason})") from None
    try:
        checked = GAPConfig(model="gap", **overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"--gap: {problems}") from None
    # as validated (a list becomes default_sigma's tuple), in a JSON-stable form
    return {key: json.loads(json.dumps(getattr(checked, key))) for key in sorted(overrides)}


def load_dataset(name: str, test_every: int) -> tuple[str, list[Frame], dict[str, list[Frame]]]:
    """(short name, pool, {test name: frames})."""
    if name == "acac":
        pool = read_frames(DATA / "acac" / "train_300K.xyz")
        tests = {
            t: read_frames(DATA / "acac" / f"{t}.xyz") for t in ("test_MD_300K", "test_MD_600K")
        }
    elif name == "si":
        pool = read_mlearn(mlearn_si("training"))
        tests = {"test": read_mlearn(mlearn_si("test"))}
    elif name == "si-hot":
        training, test = mlearn_si("training"), mlearn_si("test")
        pool = read_mlearn([e for e in training if not is_hot(e)])
        tests = {
            "test_below_3374K": read_mlearn([e for e in test if not is_hot(e)]),
            "test_3374K": read_mlearn([e for e in training + test if is_hot(e)]),
        }
    else:
        path = Path(name)
        frames = read_frames(path)
        rng = np.random.default_rng(0)
        is_test = np.zeros(len(frames), dtype=bool)
        is_test[rng.permutation(len(frames))[: len(frames) // 5]] = True
        pool = [f for f, t in zip(frames, is_test, strict=True) if not t]
        tests = {"test": [f for f, t in zip(frames, is_test, strict=True) if t]}
        name = path.stem
    return name, pool, {t: frames[::test_every] for t, frames in tests.items()}


#: The hottest runs of mlearn's Si (AIMD of the perfect and the vacancy cell, liquid at
#: twice the melting point). ``si-hot`` holds them out of the pool as an extrapolation
#: test, as acac's 600 K test is for its 300 K pool and as the data's README suggests.
SI_HOT_SUFFIX = "at 3374 K"


def mlearn_si(split: str) -> list[dict[str, Any]]:
    """The entries of mlearn's Si ``training`` or ``test`` file."""
    return json.loads((DATA / "mlearn" / "Si" / f"{split}.json").read_text())


def is_hot(entry: dict[str, Any]) -> bool:
    """Whether an mlearn entry is a snapshot of the 3374 K runs."""
    return entry["description"].endswith(SI_HOT_SUFFIX)


def read_mlearn(entries: list[dict[str, Any]]) -> list[Frame]:
    """Frames of mlearn entries (pymatgen structures, VASP energies and forces)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for entry in entries:
        atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(entry["structure"]))
        outputs = entry["outputs"]
        atoms.calc = SinglePointCalculator(
            atoms, energy=outputs["energy"], forces=np.asarray(outputs["forces"])
        )
        frames.append(Frame.from_atoms(atoms))
    return frames


def pool_groups(name: str) -> list[str] | None:
    """The kind of each pool frame where the dataset says (mlearn's ``group``: AIMD-NVT,
    Vacancy, Elastic = strained cells, Surface), else None. In ``si-hot`` an AIMD
    frame's group also names its temperature, since which ones a strategy picks is the
    point of that split."""
    if name == "si":
        return [entry["group"] for entry in mlearn_si("training")]
    if name == "si-hot":
        return [group_with_temperature(e) for e in mlearn_si("training") if not is_hot(e)]
    return None


def group_with_temperature(entry: dict[str, Any]) -> str:
    """mlearn's group of an entry, with the temperature of its AIMD run if it has one
    ("AIMD-NVT 2530 K", "Vacancy 300 K", "Elastic")."""
    description = entry["description"]
    if " at " in description and description.endswith(" K"):
        return f"{entry['group']} {description.rsplit(' at ', 1)[1]}"
    return entry["group"]


def picks_by_group(
    runs: dict[str, list[list[dict[str, Any]]]], groups: list[str], initial: int
) -> dict[str, dict[str, int]]:
    """How many of each strategy's picks (its labels beyond the initial random frames)
    fall in each group, summed over seeds."""
    table: dict[str, dict[str, int]] = {}
    for strategy, seeds in runs.items():
        counts = dict.fromkeys(sorted(set(groups)), 0)
        for curve in seeds:
            for index in curve[-1]["labelled"][initial:]:
                counts[groups[index]] += 1
        table[strategy] = counts
    return table


def measure_label_kwh(frame: Frame, energy_model: EnergyModel) -> float:
    """Energy of one PySCF PBE/def2-SVP energy + forces on ``frame`` (acac's level, no D3)."""
    from pyscf import dft, gto

    atoms = frame.to_atoms(with_labels=False)
    with Meter("label", "pyscf", energy_model) as meter:
        mol = gto.M(
            atom=[
                (s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)
            ],
            basis="def2-svp",
            verbose=0,
        )
        scf = dft.RKS(mol, xc="pbe")
        scf.kernel()
        scf.nuc_grad_method().kernel()
    print(f"one PySCF label: {meter.record.wall_s:.0f} s, {meter.record.energy_kwh * 1000:.2f} Wh")
    return meter.record.energy_kwh


# mlearn's Si labels are VASP PBE single points (520 eV, dense k-mesh) on 64-atom
# cells, which cannot run here; a few core-hours each is typical, so 4 is assumed.
SI_LABEL_CORE_HOURS = 4.0


def default_label_kwh(name: str, frame: Frame) -> float:
    """Energy of one label: measured with PySCF for acac, assumed for Si, else zero."""
    energy_model = EnergyModel()
    if name == "acac":
        return measure_label_kwh(frame, energy_model)
    if name in ("si", "si-hot"):
        return SI_LABEL_CORE_HOURS * energy_model.cpu_watts_per_core / 1000
    return 0.0


class Replay:
    """One strategy, one seed: select, label, train, score, until the budget is spent."""

    def __init__(
        self,
        strategy: str,
        seed: int,
        pool: list[Frame],
        tests: dict[str, list[Frame]],
        args: argparse.Namespace,
        label_kwh: float,
    ) -> None:
        self.strategy, self.seed, self.pool, self.tests, self.args = (
            strategy,
            seed,
            pool,
            tests,
            args,
        )
        self.label_kwh = label_kwh
        self.settings = MACEConfig(
            epochs=args.epochs, min_steps=args.min_steps, threads=args.threads
        )
        # metered as replay_conditions decided (RAPL only for a replay running alone)
        self.energy_model = EnergyModel(use_rapl=args.conditions["metering"] == "RAPL")
        self.kwh = 0.0
        #: commits of the code that trained the models this replay used (cached ones too)
        self.model_commits: set[str] = set()
        self.pool_id = pool_fingerprint(pool)
        self.species = sorted({z for f in pool for z in f.numbers})
        self.periodic = all(pool[0].pbc)

    def run(self, initial: list[int]) -> list[dict[str, Any]]:
        labelled = list(initial)
        curve = []
        while True:
            # the last step needs no committee, nothing is left to select: only the
            # scored model (member 0 when it is MACE)
            if len(labelled) < self.args.budget:
                models = self.train(labelled)
            else:
                models = self.train(labelled, members=[0]) if self.args.scorer == "mace" else []
            scored = models[0] if self.args.scorer == "mace" else self.fit_gap(labelled)
            curve.append(self.score(scored, len(labelled)) | {"labelled": list(labelled)})
            print(
                f"  {self.strategy:9s} seed {self.seed} labels {len(labelled):4d}: "
                + ", ".join(
                    f"{t} F {v['force_rmse'] * 1000:.0f}" for t, v in curve[-1]["tests"].items()
                )
                + f" meV/Å, {curve[-1]['kwh']:.4f} kWh",
                flush=True,
            )
            if len(labelled) >= self.args.budget:
                return curve
            batch = min(self.args.batch, self.args.budget - len(labelled))
            labelled += self.select(models, labelled, batch, scored)

    def train(self, labelled: list[int], members: list[int] | None = None) -> list[str]:
        """MACE models on the labelled frames: the committee for the strategies that need
        one; member 0 alone for the others when it is the scored model.

        A model is determined by its frames, settings and seed (``model_key``), so models trained
        before (by another strategy: every strategy of a seed starts from the same
        frames) are reused from ``<work>/models`` and their metered energy counted
        again, as if this strategy had trained them itself. ``members``: only these.
        """
        frames = [self.pool[i] for i in labelled]
        if self.strategy in NEEDS_COMMITTEE:
            count = self.args.committee
        elif self.strategy in NEEDS_SHALLOW or self.strategy in DESIGN:
            count = 1
        else:
            count = 1 if self.args.scorer == "mace" else 0
        # the thread count is part of the key: threads change the floating-point sums
        key = model_key(self.pool_id, labelled, self.settings)
        paths = []
        for member in range(count) if members is None else members:
            seed = self.seed * 100 + member

            def fit(private: Path, seed: int = seed) -> None:
                train_mace(frames, self.settings, private, "model", seed=seed)

            folder = self.build_cached(f"{key}_{seed}", fit)
            paths.append(str(folder / "model.model"))
        return paths

    def provenance(self) -> dict[str, Any]:
        """The commit of this replay's code and of the code that trained its models."""
        return {"commit": STARTED_AT, "models": sorted(self.model_commits)}

    def build_cached(self, name: str, fit: Callable[[Path], None]) -> Path:
        """``<work>/models/<name>``, built by ``fit`` unless an earlier run did; its
        metered energy is counted for this strategy either way."""
        folder = self.args.work / "models" / name
        if not (folder / "done.json").is_file():
            build_into(folder, fit, self.energy_model)
        done = json.loads((folder / "done.json").read_text())
        self.kwh += done["kwh"]
        self.model_commits.add(done.get("commit", UNRECORDED))
        return folder

    def select(self, models: list[str], labelled: list[int], batch: int, scored: str) -> list[int]:
        taken = set(labelled)
        candidates = [i for i in range(len(self.pool)) if i not in taken]
        rng = np.random.default_rng(self.seed * 1000 + len(labelled))
        if self.strategy == "random":
            return [int(i) for i in rng.choice(candidates, batch, replace=False)]
        if self.strategy == "oracle":
            with Meter("select", energy_model=self.energy_model) as meter:
                errors = self.force_rmse_per_frame(scored, candidates)
            self.kwh += meter.record.energy_kwh
            return [candidates[i] for i in np.argsort(-errors, kind="stable")[:batch]]
        if self.strategy in DESIGN:
            with Meter("select", energy_model=self.energy_model) as meter:
                picks = design_batch(
                    models[0], self.pool, labelled, candidates, batch, DESIGN[self.strategy], rng
                )
            self.kwh += meter.record.energy_kwh
            return [candidates[i] for i in picks]
        uses_model = self.strategy in NEEDS_COMMITTEE | NEEDS_SHALLOW | NEEDS_GAP
        # fitted before the selection is metered: a shallow fit is counted as training
        shallow = self.fit_shallow(models[0], labelled) if self.strategy in NEEDS_SHALLOW else None
        gap = None
        if self.strategy in NEEDS_GAP:  # the scored GAP is already fitted and counted
            gap = scored if self.args.scorer == "gap" else self.fit_gap(labelled)
        with Meter("select", energy_model=self.energy_model) as meter:
            deviations = np.zeros(len(candidates))
            energy = energy_lo = None
            if uses_model:
                calc = uncertainty_calculator(models, shallow, gap)
                measures = frame_uncertainties(calc, [self.pool[i] for i in candidates])
                deviations = measures[POLICY[self.strategy]]
            if self.strategy == "alflow-energy":
                energy = measures["energy"]
                energy_lo = float(np.quantile(energy, self.args.energy_quantile))
            lo = float(np.quantile(deviations, self.args.window_quantile))
            scores = None
            if POLICY[self.strategy] in {"soap-fps", "alflow"}:
                descriptor = SOAPDescriptor(self.species, SOAPSettings(), self.periodic)
                scores = score_candidates(
                    descriptor,
                    [self.pool[i].to_atoms(with_labels=False) for i in candidates],
                    [self.pool[i].to_atoms(with_labels=False) for i in labelled],
                )
            picks = select_frames(
                POLICY[self.strategy],  # type: ignore[arg-type]
                deviations,
                scores.vectors if scores is not None else np.zeros((len(candidates), 1)),
                lo=lo if uses_model else 0.0,
                hi=float("inf"),
                cap=batch,
                reference=scores.training_vectors if scores is not None else None,
                novelty=scores.novelty if scores is not None else None,
                seed=int(rng.integers(1 << 31)),
                energy_deviations=energy,
                energy_lo=energy_lo,
            )
        self.kwh += meter.record.energy_kwh
        chosen = [candidates[p.index] for p in picks]
        if len(chosen) < batch:  # window too small: top up at random, as DP-GEN would
            rest = [i for i in candidates if i not in set(chosen)]
            chosen += [int(i) for i in rng.choice(rest, batch - len(chosen), replace=False)]
        return chosen

    def fit_shallow(self, backbone: str, labelled: list[int]) -> Path:
        """A shallow ensemble on ``backbone`` (MACE member 0) and the labelled frames, as a
        campaign with ``train.uncertainty: shallow`` fits it; cached and metered like a
        model."""
        frames = [self.pool[i] for i in labelled]
        seed = self.seed * 100  # member 0's, as a campaign passes the member's seed

        def fit(private: Path) -> None:
            private.mkdir(parents=True)
            target = private / "shallow.model"
            fit_shallow_ensemble(Path(backbone), frames, self.settings, seed, target)

        key = model_key(self.pool_id, labelled, self.settings)
        folder = self.build_cached(f"shallow_{key}_{seed}", fit)
        return folder / "shallow.model"

    def fit_gap(self, labelled: list[int]) -> str:
        """A GAP (alflow's 2-body + SOAP, with ``--gap``'s settings) on the labelled
        frames, cached like the MACE models; its metered energy is counted as this
        strategy's model cost."""
        settings = GAPConfig(model="gap", threads=self.args.threads, **self.args.gap)
        frames = [self.pool[i] for i in labelled]

        def fit(private: Path) -> None:
            train_gap(frames, settings, private, "gap", seed=self.seed)

        key = model_key(self.pool_id, labelled, settings)
        folder = self.build_cached(f"gap_{key}_{self.seed}", fit)
        return str(folder / "gap" / "gap.xml")

    def calculator(self, model: str) -> Any:
        """An ASE calculator of the scored model."""
        if self.args.scorer == "gap":
            from quippy.potential import Potential

            return Potential(param_filename=model)
        from mace.calculators import MACECalculator

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weights_only.*")
            return MACECalculator(model_paths=model, device="cpu", default_dtype="float64")

    def force_rmse_per_frame(self, model: str, indices: list[int]) -> np.ndarray:
        """The scored model's force RMSE on each pool frame, from the pool's labels."""
        calc = self.calculator(model)
        errors = []
        for i in indices:
            atoms = self.pool[i].to_atoms(with_labels=False)
            atoms.calc = calc
            errors.append(
                np.sqrt(np.mean((atoms.get_forces() - np.asarray(self.pool[i].forces)) ** 2))
            )
        return np.asarray(errors)

    def score(self, model: str, n_labels: int) -> dict[str, Any]:
        return {
            "labels": n_labels,
            "ml_kwh": self.kwh,
            "kwh": self.kwh + n_labels * self.label_kwh,
            "tests": scored_errors(self.calculator(model), self.tests),
        }


def scored_errors(calc: Any, tests: dict[str, list[Frame]]) -> dict[str, dict[str, float]]:
    """Force RMSE and per-atom energy RMSE of the ASE calculator ``calc`` on each test."""
    errors = {}
    for name, frames in tests.items():
        de, df = [], []
        for frame in frames:
            atoms = frame.to_atoms(with_labels=False)
            atoms.calc = calc
            df.append((atoms.get_forces() - np.asarray(frame.forces)).ravel())
            de.append((atoms.get_potential_energy() - frame.energy) / frame.n_atoms)
        errors[name] = {
            "force_rmse": float(np.sqrt(np.mean(np.concatenate(df) ** 2))),
            "energy_rmse_per_atom": float(np.sqrt(np.mean(np.square(de)))),
        }
    return errors


def whole_pool_floor(
    pool: list[Frame], tests: dict[str, list[Frame]], args: argparse.Namespace, label_kwh: float
) -> dict[str, Any]:
    """The scored model (seed 0, same settings) fitted on every pool frame, scored.

    No strategy can do much better than labelling the whole pool, so the gap between
    this and random sampling's error at its largest budget is the room the strategies
    compete for: where it is small, "labels to reach random's error" compares noise.
    """
    replay = Replay("random", 0, pool, tests, args, label_kwh)
    everything = list(range(len(pool)))
    if args.scorer == "mace":
        model = replay.train(everything, members=[0])[0]
    else:
        model = replay.fit_gap(everything)
    return {"labels": len(pool), "tests": replay.score(model, len(pool))["tests"]}


def model_key(pool_id: str, labelled: list[int], settings: MACEConfig | GAPConfig) -> str:
    """A model is determined by its pool, its frames in the order they were picked
    (the order sets the validation split and batches), its settings and its seed
    (kept apart, in the folder name).

    Two strategies that picked the same frames in another order train two models:
    sharing one would make a curve depend on which strategy trained first, which
    with ``--jobs`` above 1 is up to the scheduler.
    """
    text = json.dumps([pool_id, list(labelled), settings.model_dump()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pool_fingerprint(pool: list[Frame]) -> str:
    """Content hash of a pool's structures and labels: models trained on another
    dataset (``--work`` is shared) never match."""
    digest = hashlib.sha256()
    for frame in pool:
        digest.update(frame.frame_id.encode())
        digest.update(np.asarray([frame.energy], dtype=float).tobytes())
        digest.update(np.asarray(frame.forces, dtype=float).tobytes())
    return digest.hexdigest()[:16]


def build_into(folder: Path, fit: Callable[[Path], None], energy_model: EnergyModel) -> None:
    """Run ``fit(private folder)`` metered, write ``done.json`` (its kWh), move into place.

    The model is built in a private folder that is renamed into place, so that
    replays running in parallel processes never see a half-written model; when two
    build the same model, the second copy is dropped.
    """
    private = folder.with_name(f"{folder.name}.{os.getpid()}")
    shutil.rmtree(private, ignore_errors=True)
    if folder.is_dir() and not (folder / "done.json").is_file():
        shutil.rmtree(folder)  # left by a run that crashed before this scheme; rename needs it gone
    with Meter("train", energy_model=energy_model) as meter:
        fit(private)
    write_json(private / "done.json", {"kwh": meter.record.energy_kwh, "commit": STARTED_AT})
    try:
        private.rename(folder)
    except OSError:  # another process finished it first
        shutil.rmtree(private, ignore_errors=True)


#: Settings that shape a curve (besides the scorer), as recorded in a results JSON's
#: ``meta``.
CURVE_SETTINGS = (
    "initial",
    "batch",
    "budget",
    "committee",
    "epochs",
    "min_steps",
    "window_quantile",
    "energy_quantile",
    "test_every",
)

#: GAPConfig's fields as they were before ``default_sigma`` changed to (0.002, 0.04, 0)
#: (see ``benchmarks/gap_settings.py``). Results written before record only the fields
#: ``--gap`` set (``meta.gap``), on top of these.
GAP_CONFIG_BEFORE: dict[str, Any] = {
    "uncertainty": "variance",
    "two_body_cutoff": 5.0,
    "two_body_delta": 1.0,
    "two_body_n_sparse": 20,
    "soap_cutoff": 4.5,
    "soap_l_max": 4,
    "soap_n_max": 6,
    "soap_atom_sigma": 0.5,
    "soap_delta": 0.2,
    "soap_n_sparse": 300,
    "default_sigma": [0.005, 0.1, 0.0],
}


def gap_config(overrides: dict[str, Any]) -> dict[str, Any]:
    """Every GAPConfig field of the scored GAP (and alflow-gap's): ``--gap``'s
    ``overrides`` over today's defaults, JSON-stable."""
    settings = GAPConfig(model="gap", **overrides)
    return settings.model_dump(mode="json", exclude={"model", "threads"})


def recorded_gap_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The GAP settings a results JSON's curves were fitted with: ``meta.gap_config``,
    or, written before it existed, ``meta.gap`` (absent before ``--gap``) over the
    defaults of then."""
    if "gap_config" in meta:
        return meta["gap_config"]
    return {**GAP_CONFIG_BEFORE, **meta.get("gap", {})}


def gap_difference(earlier: dict[str, Any], path: Path, args: argparse.Namespace) -> str | None:
    """The GAP settings that differ between ``earlier``'s curves and this run, if the
    GAP shapes them (it is the scorer, or they hold alflow-gap curves), else None."""
    if earlier["meta"].get("scorer") != "gap" and "alflow-gap" not in earlier["runs"]:
        return None
    theirs, ours = recorded_gap_config(earlier["meta"]), gap_config(args.gap)
    keys = sorted(k for k in ours if theirs.get(k) != ours[k])
    if not keys:
        return None
    return (
        f"GAP settings ({path}: {', '.join(f'{k}={theirs.get(k)}' for k in keys)}; "
        f"now: {', '.join(f'{k}={ours[k]}' for k in keys)})"
    )


def runs_folder(args: argparse.Namespace, name: str) -> Path:
    """Where the finished curves of ``name`` are kept, one folder per scorer."""
    return args.work / (name if args.scorer == "mace" else f"{name}_{args.scorer}")


#: The commit of a curve or model saved before they were recorded.
UNRECORDED = "unrecorded"


class FinishedRuns:
    """Curves of finished (strategy, seed) runs, kept on disk so that an interrupted
    benchmark resumes where it stopped. A curve is reused only when every setting
    that shapes it, and the conditions it ran under, are the same; each keeps the
    commit of the code that replayed it and of the code that trained its models."""

    def __init__(self, folder: Path, args: argparse.Namespace, label_kwh: float) -> None:
        # the scorer is not among them: each scorer has its own folder
        self.settings = {k: getattr(args, k) for k in CURVE_SETTINGS}
        self.settings |= {"label_kwh": label_kwh, "gap_config": gap_config(args.gap)}
        self.settings |= args.conditions
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, strategy: str, seed: int) -> Path:
        return self.folder / f"{strategy}_{seed}.json"

    def get(self, strategy: str, seed: int, quiet: bool = False) -> list[dict[str, Any]] | None:
        path = self._path(strategy, seed)
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved["settings"] != self.settings:
            return None
        if not quiet:
            print(f"  {strategy} seed {seed}: finished earlier ({path})")
        return saved["curve"]

    def put(
        self,
        strategy: str,
        seed: int,
        curve: list[dict[str, Any]],
        provenance: dict[str, Any],
    ) -> None:
        """Save a curve with its ``provenance``: ``{"commit": ..., "models": [...]}``."""
        path = self._path(strategy, seed)
        write_json(path, {"settings": self.settings, "curve": curve, "provenance": provenance})

    def provenance(self, strategy: str, seed: int) -> dict[str, Any]:
        """Which code replayed a saved curve and trained its models."""
        saved = json.loads(self._path(strategy, seed).read_text())
        return saved.get("provenance", {"commit": UNRECORDED, "models": [UNRECORDED]})


def design_batch(
    model: str,
    pool: list[Frame],
    labelled: list[int],
    candidates: list[int],
    batch: int,
    criterion: str,
    rng: np.random.Generator,
) -> list[int]:
    """Candidates (indices into ``candidates``) picked by experimental design on the
    last layer of ``model``, the posterior given the labelled frames, the label noise
    the model's own residuals on them (as the rigidity shallow ensemble takes it);
    topped up at random with ``rng`` (the replay's, seeded by its seed and step)."""
    from alflow.select.design import frame_precision, greedy_design, posterior_covariance
    from alflow.train.shallow import (
        last_layer_features,
        linearise,
        per_frame_features,
        residual_noise,
    )

    frames = [pool[i] for i in labelled]
    _model, _w0, linear = linearise(model, frames)
    noise_e, noise_f = (float(noise) for noise in residual_noise(linear))
    trained = [
        frame_precision(g, jac, noise_e, noise_f)
        for g, jac in per_frame_features(linear, [f.n_atoms for f in frames])
    ]
    features = last_layer_features(model, [pool[i].to_atoms(with_labels=False) for i in candidates])
    precisions = np.asarray([frame_precision(g, jac, noise_e, noise_f) for g, jac in features])
    moments = [jac.reshape(len(g), -1) for g, jac in features]
    pool_moment = np.mean([m @ m.T for m in moments], axis=0) / noise_f
    picks = greedy_design(
        posterior_covariance(trained),
        precisions,
        batch,
        criterion,  # type: ignore[arg-type]
        pool_moment,
    )
    chosen = [i for i, _ in picks]
    if len(chosen) < batch:  # nothing left to gain: top up at random
        rest = [i for i in range(len(candidates)) if i not in set(chosen)]
        chosen += [int(i) for i in rng.choice(rest, batch - len(chosen), replace=False)]
    return chosen


def uncertainty_calculator(models: list[str], shallow: Path | None, gap: str | None = None) -> Any:
    """The GAP at ``gap`` if given, else the shallow ensemble at ``shallow`` if given,
    else the committee of ``models``."""
    if gap is not None:
        from alflow.uncertainty.gap import GAPCalculator

        return GAPCalculator(gap)
    if shallow is not None:
        from alflow.uncertainty.shallow import ShallowEnsembleCalculator

        return ShallowEnsembleCalculator(shallow)
    from alflow.uncertainty.committee import CommitteeCalculator

    return CommitteeCalculator(models)


def frame_uncertainties(calc: Any, frames: list[Frame]) -> dict[str, np.ndarray]:
    """Frame uncertainties of a committee or shallow ensemble, uncalibrated (a replay
    has no held-out set).

    ``dpgen``: DP-GEN's max over atoms of the per-atom force spread; ``alflow``:
    alflow's expected max force error of the per-atom spreads; ``energy``: the
    energy spread per atom.
    """
    out: dict[str, list[float]] = {"dpgen": [], "alflow": [], "energy": []}
    for frame in frames:
        calc.calculate(frame.to_atoms(with_labels=False), ["energy", "forces", "force_deviation"])
        out["dpgen"].append(calc.results["raw_force_deviation"])
        out["alflow"].append(calc.results["force_deviation"])
        out["energy"].append(calc.results["energy_deviation"])
    return {k: np.asarray(v) for k, v in out.items()}


def labels_to_reach(
    curve: list[dict[str, Any]], test: str, target: float, x: str = "labels"
) -> float | None:
    """Labels (or with ``x="kwh"`` total kWh) at which the mean force RMSE first
    reaches ``target`` (log-interpolated in the error)."""
    labels = [p[x] for p in curve]
    errors = [p[test] for p in curve]
    for i, error in enumerate(errors):
        if error <= target:
            if i == 0:
                return float(labels[0])
            fraction = np.log(errors[i - 1] / target) / np.log(errors[i - 1] / error)
            return float(labels[i - 1] + fraction * (labels[i] - labels[i - 1]))
    return None


def labels_to_stay_below(
    curve: list[dict[str, Any]], test: str, target: float, x: str = "labels"
) -> float | None:
    """Like ``labels_to_reach``, but from where the mean force RMSE reaches ``target``
    for good: after its last point above it. A noisy curve that dips below and comes
    back up is not credited with the dip (random sampling, the reference, is charged
    its whole budget)."""
    above = [i for i, point in enumerate(curve) if point[test] > target]
    if not above:
        return float(curve[0][x])
    if above[-1] == len(curve) - 1:
        return None
    return labels_to_reach(curve[above[-1] :], test, target, x)


def mean_curves(runs: dict[str, list[list[dict[str, Any]]]], tests: list[str]) -> dict:
    """Mean (and std) over seeds of force RMSE and kWh per label count, per strategy."""
    out: dict[str, list[dict[str, Any]]] = {}
    for strategy, seeds in runs.items():
        points = []
        for step in zip(*seeds, strict=True):
            point: dict[str, Any] = {
                "labels": step[0]["labels"],
                "kwh": float(np.mean([p["kwh"] for p in step])),
            }
            for test in tests:
                forces = [p["tests"][test]["force_rmse"] for p in step]
                energies = [p["tests"][test]["energy_rmse_per_atom"] for p in step]
                point[test] = float(np.mean(forces))
                point[f"{test}_std"] = float(np.std(forces))
                point[f"{test}_energy"] = float(np.mean(energies))
                point[f"{test}_energy_std"] = float(np.std(energies))
            points.append(point)
        out[strategy] = points
    return out


def summary_table(curves: dict[str, list[dict[str, Any]]], tests: list[str]) -> dict:
    """Labels and kWh each strategy needs to reach random's force RMSE at its largest budget."""
    table: dict[str, dict[str, Any]] = {}
    for test in tests:
        target = curves["random"][-1][test]
        budget = curves["random"][-1]["labels"]
        random_kwh = curves["random"][-1]["kwh"]
        row = {}
        for strategy, curve in curves.items():
            labels = labels_to_reach(curve, test, target)
            staying = labels_to_stay_below(curve, test, target)
            kwh = labels_to_reach(curve, test, target, x="kwh")
            row[strategy] = {
                "labels": labels,
                "ratio_to_random": None if labels is None else labels / budget,
                "ratio_staying_below": None if staying is None else staying / budget,
                "kwh": kwh,
                "kwh_ratio_to_random": None if kwh is None else kwh / random_kwh,
            }
        table[test] = {"target_force_rmse": target, "random_labels": budget, "strategies": row}
    return table


def ratio_by_budget(curves: dict[str, list[dict[str, Any]]], tests: list[str]) -> dict:
    """Labels each strategy needs to reach random's force RMSE at each of random's budgets.

    The issue's table compares at random's largest budget only; this repeats it at every
    budget after the first (where all strategies share the initial frames), so one sees
    whether a ratio is a property of the pool or of where the replay stopped. Per test:
    random's budgets, its force RMSE at each, and per strategy the labels needed and
    their ratio to the budget (``None`` where the strategy never reaches it).
    """
    out: dict[str, dict[str, Any]] = {}
    for test in tests:
        budgets = [p["labels"] for p in curves["random"][1:]]
        targets = [p[test] for p in curves["random"][1:]]
        rows = {}
        for strategy, curve in curves.items():
            labels = [labels_to_reach(curve, test, target) for target in targets]
            rows[strategy] = {
                "labels": labels,
                "ratio_to_random": [
                    None if n is None else n / budget
                    for n, budget in zip(labels, budgets, strict=True)
                ],
            }
        out[test] = {"random_labels": budgets, "target_force_rmse": targets, "strategies": rows}
    return out


def mean_difference(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], test: str) -> float:
    """Force RMSE of one curve minus another's (meV/Å), averaged over the steps after
    the first."""
    return 1000 * float(
        np.mean(
            [
                a["tests"][test]["force_rmse"] - b["tests"][test]["force_rmse"]
                for a, b in zip(mine[1:], theirs[1:], strict=True)
            ]
        )
    )


def paired_differences(
    runs: dict[str, list[list[dict[str, Any]]]], tests: list[str], reference: str = "alflow"
) -> dict[str, dict[str, Any]]:
    """Force RMSE of ``reference`` minus each other strategy's, seed by seed.

    Seeds share their initial frames, so the difference per seed removes most of the
    spread that the seed means carry. Per test and strategy: the difference averaged
    over the steps after the first (where all strategies are equal) for each seed
    (meV/Å), its mean and standard error over seeds, and in how many seeds
    ``reference`` is lower.
    """
    out: dict[str, dict[str, Any]] = {}
    if reference not in runs:
        return out
    for test in tests:
        rows = {}
        for strategy, curves in runs.items():
            if strategy == reference:
                continue
            per_seed = [
                mean_difference(mine, theirs, test)
                for mine, theirs in zip(runs[reference], curves, strict=True)
            ]
            rows[strategy] = {
                "per_seed_mev": per_seed,
                "mean_mev": float(np.mean(per_seed)),
                "sem_mev": float(np.std(per_seed, ddof=1) / np.sqrt(len(per_seed)))
                if len(per_seed) > 1
                else None,
                "seeds_lower": sum(d < 0 for d in per_seed),
                "seeds": len(per_seed),
            }
        out[test] = rows
    return out


def main() -> None:
    args = arguments()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    name, pool, tests = load_dataset(args.dataset, args.test_every)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    label_kwh = args.label_kwh
    earlier = {path: read_results(path) for path in args.reuse}
    if earlier and label_kwh is None:
        # their curves include their label energy
        label_kwh = next(iter(earlier.values()))["label_kwh"]
    measured = args.work / name / "label_kwh.json"  # measured once, reused on resume
    if label_kwh is None and measured.is_file():
        label_kwh = json.loads(measured.read_text())["label_kwh"]
    if label_kwh is None:
        label_kwh = default_label_kwh(name, pool[0])
        measured.parent.mkdir(parents=True, exist_ok=True)
        write_json(measured, {"label_kwh": label_kwh})
    print(f"{name}: pool {len(pool)} frames, tests {[len(t) for t in tests.values()]}")
    started = time.perf_counter()
    for path, results in earlier.items():
        adopt_runs(results, path, args, name, label_kwh)
    runs = replay_all(args, name, pool, tests, label_kwh)
    finished = FinishedRuns(runs_folder(args, name), args, label_kwh)
    curve_provenance = {
        strategy: [finished.provenance(strategy, seed) for seed in range(args.seeds)]
        for strategy in runs
    }
    curves = mean_curves(runs, list(tests))
    results = {
        "dataset": name,
        "label_kwh": label_kwh,
        "runs": runs,
        "curves": curves,
        "table": summary_table(curves, list(tests)) if "random" in curves else {},
        "ratio_by_budget": ratio_by_budget(curves, list(tests)) if "random" in curves else {},
        "paired": paired_differences(runs, list(tests)),
        "picks_by_group": None,
        "floor": whole_pool_floor(pool, tests, args, label_kwh) if args.floor else None,
        "wall_s": time.perf_counter() - started,
        "meta": run_metadata(
            seeds=args.seeds,
            initial=args.initial,
            batch=args.batch,
            budget=args.budget,
            committee=args.committee,
            epochs=args.epochs,
            min_steps=args.min_steps,
            window_quantile=args.window_quantile,
            energy_quantile=args.energy_quantile,
            scorer=args.scorer,
            test_every=args.test_every,
            gap=args.gap,
            gap_config=gap_config(args.gap),
            threads=args.threads,
            jobs=args.jobs,
            conditions=args.conditions,
            # per curve: the commit that replayed it and those that trained its models
            curve_provenance=curve_provenance,
            # provenance of the reused curves: their commit, wall time and own sources
            reused=[
                {
                    "path": str(path),
                    "commit": results["meta"]["commit"],
                    "wall_s": results.get("wall_s"),
                    "reused": results["meta"].get("reused", []),
                }
                for path, results in earlier.items()
            ],
        ),
    }
    groups = pool_groups(args.dataset)
    if groups is not None:
        results["picks_by_group"] = picks_by_group(runs, groups, args.initial)
    stem = f"data_efficiency_{name}" + ("" if args.scorer == "mace" else f"_{args.scorer}")
    write_json(args.out / f"{stem}.json", results, indent=2)
    plot(results, list(tests), args.out / f"{stem}.png")
    if results["ratio_by_budget"]:
        plot_ratio_by_budget(results, list(tests), args.out / f"{stem}_ratio.png")
    report(results, list(tests))


def read_results(path: Path) -> dict[str, Any]:
    """An earlier results JSON of this script, or ``SystemExit`` saying what is wrong."""
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"--reuse {path}: no such file") from None
    except json.JSONDecodeError as error:
        raise SystemExit(f"--reuse {path}: not JSON ({error})") from None
    missing = [key for key in ("dataset", "label_kwh", "runs", "meta") if key not in results]
    if missing:
        raise SystemExit(
            f"--reuse {path}: not a data_efficiency.py result (no {', '.join(missing)})"
        )
    return results


def adopt_runs(
    earlier: dict[str, Any], path: Path, args: argparse.Namespace, name: str, label_kwh: float
) -> None:
    """Take the finished curves of an earlier results JSON as finished runs.

    Raises ``SystemExit`` naming the settings that differ: curves of other settings
    would be mixed into this benchmark's means.
    """
    meta = earlier["meta"]
    theirs = {key: meta.get(key) for key in CURVE_SETTINGS}
    theirs["scorer"] = meta.get("scorer")
    different = [
        f"{key} ({path}: {value}, now: {getattr(args, key)})"
        for key, value in theirs.items()
        if value != getattr(args, key)
    ]
    if earlier["dataset"] != name:
        different.insert(0, f"dataset ({path}: {earlier['dataset']}, now: {name})")
    gap = gap_difference(earlier, path, args)
    if gap is not None:
        different.append(gap)
    if earlier["label_kwh"] != label_kwh:
        different.append(f"label_kwh ({path}: {earlier['label_kwh']}, now: {label_kwh})")
    conditions = meta.get("conditions")
    if conditions is not None and conditions != args.conditions:
        different.append(
            f"conditions ({path}: {conditions}, now: {args.conditions}; "
            "--threads and --jobs set them)"
        )
    if different:
        raise SystemExit(f"--reuse {path}: other settings: " + "; ".join(different))
    if conditions is None:
        print(
            f"--reuse {path}: threads and metering not recorded (written before they were); "
            f"its curves are taken as run like this one ({args.conditions})"
        )
    finished = FinishedRuns(runs_folder(args, name), args, label_kwh)
    recorded = meta.get("curve_provenance", {})
    for strategy, curves in earlier["runs"].items():
        for seed, curve in enumerate(curves):
            kept = finished.get(strategy, seed, quiet=True)
            if kept is None:
                provenance = recorded.get(strategy, [None] * len(curves))[seed] or {
                    "commit": UNRECORDED,
                    "models": [UNRECORDED],
                }
                finished.put(strategy, seed, curve, provenance | {"via": f"{path}"})
            elif kept != curve:
                print(
                    f"  {strategy} seed {seed}: kept the curve replayed in "
                    f"{finished.folder} (commit {finished.provenance(strategy, seed)['commit']}), "
                    f"not {path}'s"
                )
    print(f"reused the finished curves of {path} (commit {meta['commit']})")


def initial_frames(seed: int, pool_size: int, count: int) -> list[int]:
    """The random frames every strategy of ``seed`` starts from."""
    return [int(i) for i in np.random.default_rng(seed).permutation(pool_size)[:count]]


def replay_all(
    args: argparse.Namespace,
    name: str,
    pool: list[Frame],
    tests: dict[str, list[Frame]],
    label_kwh: float,
) -> dict[str, list[list[dict[str, Any]]]]:
    """Curves of every (strategy, seed), from the finished runs on disk or replayed now.

    With ``--jobs`` above 1 the replays run in worker processes; the committees of
    the initial frames (the first step of every strategy of a seed) are trained
    first, so that two workers do not train the same model at the same time.
    """
    finished = FinishedRuns(runs_folder(args, name), args, label_kwh)
    todo = [
        (strategy, seed)
        for seed in range(args.seeds)
        for strategy in args.strategies
        if finished.get(strategy, seed) is None
    ]
    if args.jobs == 1:
        for strategy, seed in todo:
            replay = Replay(strategy, seed, pool, tests, args, label_kwh)
            curve = replay.run(initial_frames(seed, len(pool), args.initial))
            finished.put(strategy, seed, curve, replay.provenance())
    elif todo:
        run_in_workers(args, label_kwh, todo)
    runs: dict[str, list[list[dict[str, Any]]]] = {s: [] for s in args.strategies}
    for seed in range(args.seeds):
        for strategy in args.strategies:
            curve = finished.get(strategy, seed, quiet=True)
            if curve is None:
                raise RuntimeError(f"replay {strategy} seed {seed} did not finish")
            runs[strategy].append(curve)
    return runs


def run_in_workers(args: argparse.Namespace, label_kwh: float, todo: list[tuple[str, int]]) -> None:
    """Replay ``todo`` in ``args.jobs`` spawned processes (spawned, not forked: the
    parent may already hold OpenMP threads, which do not survive a fork)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    worker_args = argparse.Namespace(**vars(args))
    worker_args.threads = args.conditions["threads_per_replay"]
    os.environ["OMP_NUM_THREADS"] = str(worker_args.threads)  # inherited by the workers
    # MACE models of the first step: the committee if a strategy needs one, else
    # member 0 when it is the scored model, else none
    members = 1 if args.scorer == "mace" else 0
    if any(strategy in NEEDS_COMMITTEE for strategy, _ in todo):
        members = args.committee
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as workers:
        first_steps = [
            workers.submit(_train_initial_member, worker_args, seed, member)
            for seed in sorted({seed for _, seed in todo})
            for member in range(members)
        ]
        for future in first_steps:
            future.result()
        replays = [
            workers.submit(_replay_in_worker, worker_args, label_kwh, strategy, seed)
            for strategy, seed in todo
        ]
        for future in replays:
            future.result()  # re-raises a worker's exception here


_WORKER_DATA: dict[str, Any] = {}


def _worker_dataset(args: argparse.Namespace) -> tuple[str, list[Frame], dict[str, list[Frame]]]:
    if "dataset" not in _WORKER_DATA:
        import torch

        torch.set_num_threads(args.threads)
        _WORKER_DATA["dataset"] = load_dataset(args.dataset, args.test_every)
    return _WORKER_DATA["dataset"]


def _train_initial_member(args: argparse.Namespace, seed: int, member: int) -> None:
    _name, pool, tests = _worker_dataset(args)
    replay = Replay("alflow", seed, pool, tests, args, 0.0)
    replay.train(initial_frames(seed, len(pool), args.initial), members=[member])


def _replay_in_worker(args: argparse.Namespace, label_kwh: float, strategy: str, seed: int) -> None:
    name, pool, tests = _worker_dataset(args)
    replay = Replay(strategy, seed, pool, tests, args, label_kwh)
    curve = replay.run(initial_frames(seed, len(pool), args.initial))
    FinishedRuns(runs_folder(args, name), args, label_kwh).put(
        strategy, seed, curve, replay.provenance()
    )


def plot(results: dict[str, Any], tests: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # rows: force and energy RMSE, each against labels and against total kWh
    rows = [
        ("", "force RMSE (meV/Å)", "labels"),
        ("", "force RMSE (meV/Å)", "kwh"),
        ("_energy", "energy RMSE (meV/atom)", "labels"),
        ("_energy", "energy RMSE (meV/atom)", "kwh"),
    ]
    fig, axes = plt.subplots(4, len(tests), figsize=(6 * len(tests), 15), squeeze=False)
    for column, test in enumerate(tests):
        for row, (suffix, ylabel, x) in enumerate(rows):
            ax = axes[row, column]
            for strategy, curve in results["curves"].items():
                xs = [p[x] for p in curve]
                ys = np.array([p[f"{test}{suffix}"] for p in curve]) * 1000
                spread = np.array([p[f"{test}{suffix}_std"] for p in curve]) * 1000
                style = strategy_style(strategy)
                ax.errorbar(xs, ys, spread, marker="o", capsize=3, label=strategy, **style)
            floor = results.get("floor")
            if floor is not None and x == "labels":
                key = "force_rmse" if suffix == "" else "energy_rmse_per_atom"
                ax.axhline(
                    floor["tests"][test][key] * 1000,
                    c="k",
                    ls=":",
                    label=f"whole pool ({floor['labels']} labels)",
                )
            xlabel = (
                "labels" if x == "labels" else "total compute (kWh: labels + training + selection)"
            )
            ax.set(
                xlabel=xlabel,
                ylabel=ylabel,
                yscale="log",
                xscale="linear" if x == "labels" else "log",
            )
            plain_log_ticks(ax)
            ax.legend(fontsize=7)
        axes[0, column].set_title(f"{results['dataset']}: {test}")
    meta = results["meta"]
    save_figure(fig, f"alflow data efficiency — {meta['seeds']} seeds, mean ± std", meta, path)


def strategy_style(strategy: str) -> dict[str, str]:
    """The same colour for a strategy in every figure; references grey and dashed."""
    if strategy in REFERENCES:
        return {"ls": "--", "c": "grey"}
    return {"c": f"C{STRATEGIES.index(strategy) % 10}"}


def plain_log_ticks(ax: Any) -> None:
    """Plain numbers (145, not 1.45 × 10²) on log axes. Minor ticks are labelled where
    the axis spans less than a decade: all of them below a factor of 3, else only the
    2s, 3s and 5s (so that their labels do not overlap)."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, NullFormatter

    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log":
            continue
        axis.set_major_formatter(FormatStrFormatter("%g"))
        span = max(limits) / min(limits)
        if span >= 10:
            axis.set_minor_formatter(NullFormatter())
            continue
        shown = set(range(2, 10)) if span < 3 else {2, 3, 5}

        def label(value: float, _: Any, shown: set[int] = shown) -> str:
            mantissa = round(value / 10 ** np.floor(np.log10(value)))
            return f"{value:g}" if mantissa in shown else ""

        axis.set_minor_formatter(FuncFormatter(label))


def plot_ratio_by_budget(results: dict[str, Any], tests: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tests), figsize=(6 * len(tests), 4.5), squeeze=False)
    for ax, test in zip(axes[0], tests, strict=True):
        row = results["ratio_by_budget"][test]
        for strategy, entry in row["strategies"].items():
            if strategy == "random":
                continue
            ratios = [np.nan if r is None else r for r in entry["ratio_to_random"]]
            style = strategy_style(strategy)
            ax.plot(row["random_labels"], ratios, marker="o", label=strategy, **style)
        ax.axhline(0.5, c="k", lw=0.8, ls=":", label="goal 0.5×")
        ax.axhline(1.0, c="k", lw=0.8)
        ax.set(
            xlabel="random sampling's labels (its force RMSE there is the target)",
            ylabel="labels to reach it / random's labels",
            title=f"{results['dataset']}: {test}",
            ylim=(0, 1.2),
        )
        ax.legend(fontsize=7)
    meta = results["meta"]
    title = f"labels ratio to random by budget — {meta['seeds']} seeds, seed-mean curves"
    save_figure(fig, title, meta, path)


def report(results: dict[str, Any], tests: list[str]) -> None:
    for test, row in results["table"].items():
        print(
            f"\n{results['dataset']} {test}: labels to reach random's "
            f"{row['target_force_rmse'] * 1000:.0f} meV/Å (random: {row['random_labels']})"
        )
        for strategy, entry in row["strategies"].items():
            labels = entry["labels"]
            text = (
                "not reached"
                if labels is None
                else f"{labels:5.1f} labels ({entry['ratio_to_random']:.2f}x), "
                f"{entry['kwh'] * 1000:.2f} Wh ({entry['kwh_ratio_to_random']:.2f}x)"
            )
            print(f"  {strategy:13s} {text}")
    if results.get("floor"):
        floor = results["floor"]
        print(f"\nwhole pool, {floor['labels']} labels (the scored model's floor):")
        for test, values in floor["tests"].items():
            random_last = (
                results["curves"]["random"][-1][test] if "random" in results["curves"] else None
            )
            tail = "" if random_last is None else f" (random's last: {random_last * 1000:.0f})"
            print(f"  {test}: F {values['force_rmse'] * 1000:.0f} meV/Å{tail}")
    for test, row in results["ratio_by_budget"].items():
        print(
            f"\n{results['dataset']} {test}: labels ratio to random at random's budgets"
            " (n/r: not reached)"
        )
        print("  " + " " * 13 + " ".join(f"{n:6.0f}" for n in row["random_labels"]))
        for strategy, entry in row["strategies"].items():
            cells = ["   n/r" if r is None else f"{r:6.2f}" for r in entry["ratio_to_random"]]
            print(f"  {strategy:13s}" + " ".join(cells))
    for test, rows in results["paired"].items():
        print(f"\n{test}: alflow minus each strategy, force RMSE over steps 2+, per seed")
        for strategy, row in rows.items():
            sem = "" if row["sem_mev"] is None else f" ± {row['sem_mev']:.1f}"
            print(
                f"  {strategy:13s} {row['mean_mev']:+6.1f}{sem} meV/Å, alflow lower in "
                f"{row['seeds_lower']} of {row['seeds']} seeds"
            )
    if results["picks_by_group"]:
        print("\npicks beyond the initial frames, by kind of frame (all seeds):")
        for strategy, counts in results["picks_by_group"].items():
            print(f"  {strategy:13s} " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
