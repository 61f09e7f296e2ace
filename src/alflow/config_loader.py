"""Load ``campaign.yaml`` and report every problem with its file, line and field.

A bad config must never end in a traceback. :func:`load_campaign` collects all
problems (YAML syntax, unknown keys, wrong types, impossible values, missing or
unreadable files, cross-field conflicts) and raises one :class:`ConfigError` whose
``problems`` each say where and what to do.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from alflow.config import Campaign, GAPConfig, MACEConfig
from alflow.label.registry import LABELLERS

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else (f"{where}: {self.message}")
        )


class ConfigError(Exception):
    """A campaign file has one or more problems."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_campaign(path: str | Path) -> Campaign:
    """Read, validate and check a campaign file.

    Raises
    ------
    ConfigError
        With one :class:`Problem` per issue found.
    """
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise ConfigError([Problem(shown, None, "", f"no such file: {path}")])
    try:
        tree = YAML(typ="rt").load(path.read_text())
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        what = err.problem or err.context or "syntax error"
        raise ConfigError(
            [
                Problem(
                    shown,
                    line,
                    "",
                    f"invalid YAML: {what}; check indentation and quotes",
                )
            ]
        ) from None
    if not isinstance(tree, CommentedMap):
        raise ConfigError(
            [
                Problem(
                    shown,
                    1,
                    "",
                    "the file must be a mapping of sections (name:, system:, ...)",
                )
            ]
        )
    context = {"base_dir": str(path.parent.resolve())}
    try:
        campaign = Campaign.model_validate(_plain(tree), context=context)
    except ValidationError as err:
        raise ConfigError([_problem(shown, tree, e) for e in err.errors()]) from None
    problems = [
        Problem(shown, _line_of(tree, loc), _dotted(loc), message)
        for loc, message in check_campaign(campaign)
    ]
    if problems:
        raise ConfigError(problems)
    return campaign


def check_campaign(campaign: Campaign) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-field and file-content checks that the schema alone cannot express.

    Returns a list of (location, message); empty when everything is fine.
    """
    from ase.io import read

    problems: list[tuple[tuple[Any, ...], str]] = []
    elements: set[str] = set()
    periodic = False
    for i, file in enumerate(campaign.system.structures):
        try:
            images = read(str(file), index=":")
        except Exception as err:  # ASE raises many types for unreadable files
            problems.append((("system", "structures", i), f"cannot read {file}: {err}"))
            continue
        if not images:
            problems.append((("system", "structures", i), f"{file} holds no structures"))
        for atoms in images:
            elements.update(atoms.get_chemical_symbols())
            periodic = periodic or bool(atoms.pbc.any())

    for key in ("initial", "validation"):
        file = getattr(campaign.data, key)
        if file is not None:
            problems += [(("data", key), m) for m in _labelled_file_problems(file)]

    supported = campaign.label.supported_elements()
    if supported is not None and not elements <= supported:
        missing = ", ".join(sorted(elements - supported))
        problems.append(
            (
                ("label", "calculator"),
                f"'{campaign.label.calculator}' cannot treat {missing}; it supports "
                f"{', '.join(sorted(supported))}",
            )
        )
    geometry = type(campaign.label).geometry
    if geometry == "molecule" and periodic:
        problems.append(
            (
                ("label", "calculator"),
                f"'{campaign.label.calculator}' labels molecules, but the structures are "
                "periodic; set pbc to False in the structure file or pick a periodic "
                "labeller (cp2k, xtb, atomate2-vasp, atomate2-cp2k)",
            )
        )
    if geometry == "periodic" and not periodic:
        problems.append(
            (
                ("label", "calculator"),
                f"'{campaign.label.calculator}' labels periodic cells, but the structures "
                "are not periodic; give them a cell and pbc, or pick pyscf for molecules",
            )
        )
    problems += _model_problems(campaign, elements)
    problems += _bias_problems(campaign)
    if campaign.stop.force_rmse is not None and campaign.data.validation is None:
        problems.append(
            (
                ("stop", "force_rmse"),
                "a force-RMSE target needs held-out frames: set data.validation to a "
                "labelled extxyz file, or remove stop.force_rmse",
            )
        )
    return problems


def _model_problems(campaign: Campaign, elements: set[str]) -> list[tuple[tuple[Any, ...], str]]:
    """Checks of the train section against the data."""
    from alflow.config import GAPConfig

    train = campaign.train
    if isinstance(train, GAPConfig):
        if campaign.data.validation is None:
            return [
                (
                    ("train", "model"),
                    "GAP's variance is an energy variance; it is turned into a force "
                    "uncertainty comparable with select.lo/hi by calibration on held-out "
                    "frames: set data.validation to a labelled extxyz file",
                )
            ]
        return []
    problems: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(train.e0s, dict) and not elements <= set(train.e0s):
        missing = ", ".join(sorted(elements - set(train.e0s)))
        problems.append((("train", "e0s"), f"no isolated-atom energy for {missing}"))
    if train.foundation is not None:
        problems += [
            (("train", "foundation", "path"), m) for m in _foundation_problems(campaign, elements)
        ]
    return problems


def _bias_problems(campaign: Campaign) -> list[tuple[tuple[Any, ...], str]]:
    """Uncertainty-biased MD needs every member's energy and forces (MACE only)."""
    train = campaign.train
    members = getattr(train, "uncertainty", None) in ("committee", "shallow")
    if campaign.explore.bias_depth > 0 and not members:
        return [
            (
                ("explore", "bias_depth"),
                f"uncertainty-biased MD needs a MACE committee or shallow ensemble, but "
                f"train is '{train.model}' with '{train.uncertainty}' uncertainty; set "
                "train.model: mace or explore.bias_depth: 0",
            )
        ]
    return []


def _foundation_problems(campaign: Campaign, elements: set[str]) -> list[str]:
    """A foundation model must load as MACE and know every element of the data."""
    from ase.io import read

    from alflow.train.foundation import FoundationModelError, check_coverage, inspect_foundation

    foundation = campaign.train.foundation
    assert foundation is not None
    try:
        info = inspect_foundation(foundation.path)
        check_coverage(info, elements, "the starting structures")
        for key in ("initial", "validation"):
            file = getattr(campaign.data, key)
            if file is not None:
                found = {s for a in read(str(file), index=":") for s in a.get_chemical_symbols()}
                check_coverage(info, found, f"data.{key} ({file.name})")
        if foundation.replay_file is not None:
            replay = read(str(foundation.replay_file), index=":")
            found = {s for a in replay for s in a.get_chemical_symbols()}
            check_coverage(info, found, f"the replay file ({foundation.replay_file.name})")
    except FoundationModelError as err:
        return [str(err)]
    return []


def _labelled_file_problems(file: Path) -> list[str]:
    """Problems with a file that must hold labelled frames."""
    from ase.io import read

    try:
        images = read(str(file), index=":")
    except Exception as err:  # ASE raises many types for unreadable files
        return [f"cannot read {file}: {err}"]
    if not images:
        return [f"{file} holds no frames"]
    unlabelled = [
        i
        for i, atoms in enumerate(images)
        if atoms.calc is None
        or "energy" not in atoms.calc.results
        or "forces" not in atoms.calc.results
    ]
    if unlabelled:
        first = ", ".join(str(i) for i in unlabelled[:5])
        return [
            f"{len(unlabelled)} of {len(images)} frames in {file.name} lack energy or "
            f"forces (frames {first}{', ...' if len(unlabelled) > 5 else ''}); write "
            "them as extxyz with energy= in the comment line and a forces column"
        ]
    return []


def _plain(node: Any) -> Any:
    """Turn ruamel's round-trip containers into plain dicts and lists."""
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _line_of(tree: CommentedMap, loc: Sequence[Any]) -> int | None:
    """Best line (1-based) for a location: the deepest key or item that exists."""
    node: Any = tree
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        # parts that are not in the file (union tags, missing keys) are skipped
    return line


def _dotted(loc: Sequence[Any]) -> str:
    """'train.epochs' or 'system.structures[0]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _known_fields(loc: Sequence[Any]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (for did-you-mean hints)."""
    model: type[BaseModel] | None = Campaign
    previous: Any = None
    for part in loc[:-1]:
        if model is None:
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            # a union tag (e.g. 'pyscf', 'gap') names the concrete model chosen
            model = _UNION_TAGS.get(str(previous), {}).get(str(part))
            previous = part
            continue
        previous = part
        model = _model_of(field.annotation)
    return list(model.model_fields) if model is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _problem(file: str, tree: CommentedMap, error: dict[str, Any]) -> Problem:
    """Translate one pydantic error into a Problem with advice."""
    loc = _without_union_tags(error["loc"])
    kind = error["type"]
    line = _line_of(tree, loc)
    field = _dotted(loc)
    given = error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _known_fields(error["loc"])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = (
            f"unknown key '{key}'; {hint}allowed here: {', '.join(allowed)}"
            if allowed
            else f"unknown key '{key}'; remove it"
        )
    elif kind == "missing":
        message = f"required key '{loc[-1]}' is missing; add it"
    elif kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        message = f"unknown value {given!r}; choose one of {expected}"
    elif kind == "union_tag_not_found":
        message = "say which method to use with a 'calculator:' key (e.g. pyscf, emt)"
    elif kind == "value_error":
        message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}"
        if given is not None and not isinstance(given, dict | list):
            message += f" (got {given!r})"
    return Problem(file, line, field, message)


def _without_union_tags(loc: Sequence[Any]) -> list[Any]:
    """Drop the tag pydantic inserts after 'label' or 'train' in error locations."""
    return [
        p for i, p in enumerate(loc) if not (i > 0 and p in _UNION_TAGS.get(str(loc[i - 1]), {}))
    ]


#: Sections that are tagged unions: tag value → concrete model.
_UNION_TAGS: dict[str, dict[str, type[BaseModel]]] = {
    "label": LABELLERS,
    "train": {"mace": MACEConfig, "gap": GAPConfig},
}
