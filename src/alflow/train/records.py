"""The record every trainer returns: a model file and what is known about it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from alflow.accounting import ComputeRecord


class ModelRecord(BaseModel):
    """A trained model: the file, its fingerprint, lineage, metrics and cost."""

    path: str = Field(description="Absolute path of the model file.")
    sha256: str = Field(description="sha256 of the model file.")
    kind: str = Field(description="Model family, e.g. 'mace'.")
    architecture: dict[str, Any] = Field(description="Hyper-parameters of the model.")
    parent_sha256: str | None = Field(
        None, description="sha256 of the model this one started from, if any."
    )
    start: str = Field(
        "scratch",
        description="How training started: 'scratch', 'warm' (previous iteration's "
        "weights), 'naive' or 'multihead' (fine-tuning a foundation model).",
    )
    backbone: str | None = Field(
        None, description="Plain MACE model under a shallow ensemble (path), if any."
    )
    iteration: int = Field(description="Iteration that trained it.")
    member: int = Field(0, description="Committee member index.")
    seed: int = Field(description="Random seed of the training run.")
    n_train_frames: int = Field(description="Labelled frames it was trained on.")
    dataset_hash: str = Field(description="Hash of the sorted frame ids trained on.")
    labelled_hash: str | None = Field(
        None,
        description="Hash of the campaign's labelled frames when it was trained (before "
        "any bootstrap resampling): a model is kept while this does not change.",
    )
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Final errors on the trainer's own validation split "
        "(rmse_e_per_atom in eV/atom, rmse_f in eV/Å).",
    )
    compute: ComputeRecord | None = Field(None, description="Cost of training.")

    def verified_path(self) -> Path:
        """The model file, after checking that it is the file that was trained.

        Raises
        ------
        FileNotFoundError
            If the file is gone.
        ValueError
            If its content changed since training.
        """
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} is missing")
        if file_sha256(path) != self.sha256:
            raise ValueError(f"model file {path} changed since it was trained (sha256)")
        return path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def kept_model(previous: list[ModelRecord], member: int, labelled_hash: str) -> ModelRecord | None:
    """The previous model of ``member`` if it was trained on exactly these labels.

    An iteration that added no labels (nothing selected, or every label failed)
    would retrain on the same data; keeping the model saves that compute. The
    returned record has no compute: its training was already accounted for.
    """
    for model in previous:
        if model.member == member and model.labelled_hash == labelled_hash:
            return model.model_copy(update={"compute": None})
    return None


def dataset_hash(frame_ids: list[str]) -> str:
    """Order-independent fingerprint of a training set."""
    return hashlib.sha256("\n".join(sorted(frame_ids)).encode()).hexdigest()[:16]
