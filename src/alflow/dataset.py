"""The campaign's append-only dataset of labelled frames.

One document per (campaign, frame, level of theory), written the moment a label job
ends. Nothing is ever overwritten: a frame that already has a label is never sent
to the labeller again, also after a crash and a resume. Failed labels are kept too,
with their reason, so that they are neither retried forever nor trained on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from alflow.accounting import ComputeRecord
from alflow.frames import Frame, LevelOfTheory

if TYPE_CHECKING:
    from maggma.core import Store

Status = Literal["ok", "failed"]


class DatasetEntry(BaseModel):
    """One labelled (or failed) frame in the dataset."""

    campaign: str = Field(description="Campaign the frame belongs to.")
    frame_id: str = Field(description="Structure hash of the frame.")
    lot_hash: str = Field(description="Settings hash of the level of theory.")
    frame_key: str = Field(description="campaign/frame_id/lot_hash: the unique key.")
    status: Status = Field(description="'ok' labels train; 'failed' ones never do.")
    reason: str | None = Field(None, description="Why the label failed.")
    attempts: list[str] = Field(
        default_factory=list,
        description="One line per attempt: the settings changed and what happened.",
    )
    iteration: int = Field(description="Iteration in which the label was made.")
    labelled_at: str = Field(description="UTC time the entry was written.")
    frame: Frame = Field(description="The frame, with labels when status is ok.")
    compute: ComputeRecord | None = Field(None, description="Cost of the label.")


class DuplicateLabelError(RuntimeError):
    """A frame that already has a label was about to be written again."""


class MixedLevelOfTheoryError(RuntimeError):
    """A label from another level of theory was about to join the dataset."""


class Dataset:
    """Read and append labelled frames of one campaign in a maggma store.

    Parameters
    ----------
    store
        The ``frames`` store of the campaign's JobStore.
    campaign
        Campaign name; one store can hold several campaigns.
    """

    def __init__(self, store: Store, campaign: str) -> None:
        self.store = store
        self.campaign = campaign
        self.store.connect()

    def key(self, frame_id: str, lot_hash: str) -> str:
        """Unique key of one frame at one level of theory."""
        return f"{self.campaign}/{frame_id}/{lot_hash}"

    def get(self, frame_id: str, lot_hash: str) -> DatasetEntry | None:
        """The entry for a frame at a level of theory, if there is one."""
        doc = self.store.query_one({"frame_key": self.key(frame_id, lot_hash)})
        return None if doc is None else _entry(doc)

    def add(
        self,
        frame: Frame,
        status: Status,
        iteration: int,
        reason: str | None = None,
        compute: ComputeRecord | None = None,
        attempts: list[str] | None = None,
        allow_mixed_levels: bool = False,
    ) -> DatasetEntry:
        """Append one frame.

        Raises
        ------
        DuplicateLabelError
            If the frame already has an entry at this level of theory.
        MixedLevelOfTheoryError
            If the dataset holds labels at another level and mixing is not allowed.
        ValueError
            If an 'ok' frame has no labels or no level of theory.
        """
        if frame.level_of_theory is None:
            raise ValueError("a dataset frame needs its level of theory")
        if status == "ok" and not frame.is_labelled:
            raise ValueError("an 'ok' dataset frame needs energy and forces")
        frame_id, lot_hash = frame.frame_id, frame.level_of_theory.settings_hash
        if self.get(frame_id, lot_hash) is not None:
            raise DuplicateLabelError(f"frame {frame_id} already has a label at level {lot_hash}")
        if not allow_mixed_levels:
            other = self.other_level(lot_hash)
            if other is not None:
                raise MixedLevelOfTheoryError(mixed_levels_message(other, frame.level_of_theory))
        entry = DatasetEntry(
            campaign=self.campaign,
            frame_id=frame_id,
            lot_hash=lot_hash,
            frame_key=self.key(frame_id, lot_hash),
            status=status,
            reason=reason,
            iteration=iteration,
            labelled_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            frame=frame,
            compute=compute,
            attempts=attempts or [],
        )
        self.store.update([entry.model_dump(mode="json")], key="frame_key")
        return entry

    def other_level(self, lot_hash: str) -> LevelOfTheory | None:
        """A level of theory in the dataset that differs from ``lot_hash``, if any."""
        doc = self.store.query_one(
            {"campaign": self.campaign, "lot_hash": {"$ne": lot_hash}}, properties=["frame"]
        )
        if doc is None or doc["frame"].get("level_of_theory") is None:
            return None
        return LevelOfTheory.model_validate(doc["frame"]["level_of_theory"])

    def entries(
        self, status: Status | None = None, max_iteration: int | None = None
    ) -> list[DatasetEntry]:
        """Entries of the campaign in the order they were written."""
        criteria: dict[str, Any] = {"campaign": self.campaign}
        if status is not None:
            criteria["status"] = status
        if max_iteration is not None:
            criteria["iteration"] = {"$lte": max_iteration}
        docs = self.store.query(criteria, sort={"labelled_at": 1})
        return [_entry(doc) for doc in docs]

    def frames(self, max_iteration: int | None = None) -> list[Frame]:
        """Frames with good labels: the training data."""
        return [e.frame for e in self.entries("ok", max_iteration)]

    def labels_spent(self, max_iteration: int | None = None) -> int:
        """Frames sent to the labeller (good and failed); the user's own data is free."""
        return sum(
            1
            for e in self.entries(max_iteration=max_iteration)
            if e.frame.provenance is None or e.frame.provenance.source != "initial"
        )

    def count(self, status: Status | None = None) -> int:
        """Number of entries (optionally of one status)."""
        criteria: dict[str, Any] = {"campaign": self.campaign}
        if status is not None:
            criteria["status"] = status
        return self.store.count(criteria)


def mixed_levels_message(existing: LevelOfTheory, new: LevelOfTheory) -> str:
    """Why two levels of theory cannot share a dataset, and what to do."""

    def describe(lot: LevelOfTheory) -> str:
        parts = [lot.code, lot.method, lot.basis]
        return " ".join(p for p in parts if p) + f" [{lot.settings_hash}]"

    return (
        f"the dataset holds labels at {describe(existing)}, but this label is at "
        f"{describe(new)}; mixing levels of theory corrupts training. Use the same "
        "labeller settings, start a new campaign (new name or output folder), or set "
        "label.allow_mixed_levels: true if the mix is intended"
    )


def _entry(doc: dict[str, Any]) -> DatasetEntry:
    doc = {k: v for k, v in doc.items() if k != "_id"}
    return DatasetEntry.model_validate(doc)


def job_dataset(campaign: str) -> Dataset:
    """The dataset of the store the current jobflow job runs against.

    The job must be created with ``JobConfig(expose_store=True)``.
    """
    from jobflow import CURRENT_JOB

    from alflow.store import FRAMES

    store = CURRENT_JOB.store
    if store is None:
        raise RuntimeError(
            "this job reads the dataset from its JobStore; create it with "
            "JobConfig(expose_store=True)"
        )
    if FRAMES not in store.additional_stores:
        raise RuntimeError(
            f"the JobStore has no '{FRAMES}' additional store; build it with "
            "alflow.store.embedded_store or add one to your jobflow configuration"
        )
    return Dataset(store.additional_stores[FRAMES], campaign)
