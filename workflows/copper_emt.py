"""A campaign written in Python instead of YAML: Cu with EMT labels.

Builds the same typed :class:`alflow.config.Campaign` a YAML file gives, turns it into a
jobflow Flow and runs it on the embedded store. Swap ``run_locally`` for FireWorks or
jobflow-remote to run the same Flow on a cluster.

    python workflows/copper_emt.py /tmp/cu-campaign
"""

from __future__ import annotations

import sys
from pathlib import Path

from ase.build import bulk
from ase.io import write
from jobflow import run_locally

from alflow.campaign import campaign_flow
from alflow.config import Campaign
from alflow.query import latest_state, status_rows
from alflow.store import CampaignPaths, embedded_store, save_campaign


def main(folder: Path) -> None:
    """Write the starting cell, run the campaign in ``folder`` and print its rows."""
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1))
    campaign = Campaign.model_validate(
        {
            "name": "cu-python",
            "output": str(folder / "run"),
            "system": {"structures": "cu.xyz"},
            "data": {"bootstrap": {"n_frames": 6, "rattle_std": 0.05, "strain": 0.02}},
            "label": {"calculator": "emt"},
            "train": {"committee": 2, "epochs": 20},
            "explore": {"runs": 2, "steps": 200, "timestep_fs": 2.0, "temperature_K": 800},
            "select": {"lo": 0.02, "hi": 0.8, "max_per_iteration": 5},
            "stop": {"max_iterations": 2},
        },
        context={"base_dir": str(folder)},
    )
    paths = CampaignPaths(campaign.campaign_dir())
    save_campaign(paths, campaign)
    store = embedded_store(paths.root)
    run_locally(campaign_flow(campaign), store=store, log=False, root_dir=paths.scratch)
    for row in status_rows(latest_state(store, campaign.name)):
        print(row)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "cu-campaign").resolve())
