"""Read a campaign back from its store: one module for the CLI and the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alflow.campaign import CONTROLLER
from alflow.dataset import Dataset
from alflow.frames import write_extxyz
from alflow.state import CampaignState
from alflow.store import FRAMES

if TYPE_CHECKING:
    from pathlib import Path

    from jobflow import JobStore


def latest_state(store: JobStore, campaign: str) -> CampaignState | None:
    """The most advanced state a controller of ``campaign`` has written, if any."""
    store.connect()
    docs = store.query(
        {"metadata.alflow": CONTROLLER, "metadata.campaign": campaign},
        properties=["output", "completed_at"],
    )
    best: CampaignState | None = None
    best_key: tuple[int, str] | None = None
    for doc in docs:
        state = CampaignState.model_validate(doc["output"])
        # at equal iteration the newest wins: a stopped campaign may have been extended
        key = (state.iteration, str(doc.get("completed_at", "")))
        if best_key is None or key > best_key:
            best, best_key = state, key
    return best


def dataset(store: JobStore, campaign: str) -> Dataset:
    """The campaign's dataset in ``store``."""
    return Dataset(store.additional_stores[FRAMES], campaign)


def status_rows(state: CampaignState) -> list[dict[str, Any]]:
    """One row per finished iteration, with the numbers `alflow status` prints."""
    rows = []
    for record in state.history:
        total = record.compute.get("total")
        validation = record.validation
        rows.append(
            {
                "iteration": record.iteration,
                "labels_new": record.labels_new,
                "labels_total": record.labels_total,
                "median_deviation": record.median_deviation,
                "accurate": record.fraction("accurate"),
                "candidate": record.fraction("candidate"),
                "failed": record.fraction("failed"),
                "labels_failed": record.labels_failed,
                "energy_rmse_mev_atom": (
                    validation.energy_rmse_per_atom * 1000 if validation else None
                ),
                "force_rmse_mev_a": validation.force_rmse * 1000 if validation else None,
                "cpu_h": total.cpu_hours if total else 0.0,
                "kwh": total.energy_kwh if total else 0.0,
                "co2e_kg": total.co2e_kg if total else 0.0,
                "wall_s": record.wall_s,
            }
        )
    return rows


def export_dataset(
    store: JobStore, campaign: str, path: str | Path, include_failed: bool = False
) -> int:
    """Write the labelled frames to extxyz; returns how many were written.

    Failed frames (no labels) are only written when asked for, with their reason.
    """
    entries = dataset(store, campaign).entries(None if include_failed else "ok")
    return write_extxyz([e.frame for e in entries], path)
