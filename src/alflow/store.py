"""Where a campaign keeps its results: the jobflow ``JobStore`` and the folder layout.

The default is embedded and needs no server: MontyDB on SQLite inside the campaign
folder. The ``JobStore`` has three parts:

``docs``
    job outputs (small pydantic documents);
``data``
    large job data (explored trajectories, selections), referenced from ``docs``;
``frames``
    the append-only dataset of labelled frames, one document per frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobflow import JobStore
from maggma.stores import MontyStore

if TYPE_CHECKING:
    from alflow.config import Campaign

FRAMES = "frames"
DATA = "data"


@dataclass(frozen=True)
class CampaignPaths:
    """The folder of one campaign and what lives in it."""

    root: Path

    @property
    def config(self) -> Path:
        """The resolved campaign config (JSON) the run used."""
        return self.root / "campaign.json"

    @property
    def store(self) -> Path:
        """MontyDB database folder."""
        return self.root / "store"

    @property
    def models(self) -> Path:
        """Trained model files, one sub-folder per iteration."""
        return self.root / "models"

    @property
    def scratch(self) -> Path:
        """Temporary working folders of jobs; emptied as jobs finish."""
        return self.root / "scratch"

    @property
    def log(self) -> Path:
        """Log of the campaign's runs."""
        return self.root / "alflow.log"

    def model_dir(self, iteration: int) -> Path:
        """Folder for the models of one iteration."""
        return self.models / f"iter_{iteration:03d}"

    def exists(self) -> bool:
        """Whether a campaign has been started in this folder."""
        return self.config.is_file()


def embedded_store(root: str | Path) -> JobStore:
    """A JobStore on MontyDB/SQLite under ``root/store`` (created if needed)."""
    path = CampaignPaths(Path(root)).store
    path.mkdir(parents=True, exist_ok=True)

    def collection(name: str, key: str) -> MontyStore:
        return MontyStore(name, database_path=str(path), storage="sqlite", key=key)

    return JobStore(
        collection("outputs", "uuid"),
        additional_stores={
            DATA: collection("data", "blob_uuid"),
            FRAMES: collection("frames", "frame_key"),
        },
    )


def save_campaign(paths: CampaignPaths, campaign: Campaign) -> None:
    """Write the resolved config into the campaign folder."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(campaign.model_dump_json(indent=2))


def load_saved_campaign(root: str | Path) -> Campaign:
    """Read the config a campaign folder was run with.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a campaign folder.
    """
    from alflow.config import Campaign

    paths = CampaignPaths(Path(root))
    if not paths.exists():
        raise FileNotFoundError(
            f"{root} is not an alflow campaign folder (no {paths.config.name}); "
            "give the folder that 'alflow run' created"
        )
    # inputs may have moved since the run; reading results does not need them
    return Campaign.model_validate(
        json.loads(paths.config.read_text()), context={"check_files": False}
    )
