"""Progress events of a running campaign.

Jobs report what they are doing through the ``alflow.progress`` logger; they never
print. Whoever runs the campaign decides how to show it: the ``alflow run`` command
attaches a handler that draws a live status line; on a cluster the same records go
to the job's log. Each record carries a :class:`ProgressEvent` in ``record.progress``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("alflow.progress")


@dataclass
class ProgressEvent:
    """What the campaign is doing now."""

    iteration: int
    stage: str
    message: str
    done: int | None = None
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def report(
    iteration: int,
    stage: str,
    message: str,
    done: int | None = None,
    total: int | None = None,
    **extra: Any,
) -> None:
    """Emit one progress event."""
    event = ProgressEvent(iteration, stage, message, done, total, extra)
    count = f" [{done}/{total}]" if done is not None and total is not None else ""
    logger.info(
        "iteration %d | %s | %s%s",
        iteration,
        stage,
        message,
        count,
        extra={"progress": event},
    )
