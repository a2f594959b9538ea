"""Background work of one process: the delivery worker, the Jira event processor and housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from addon.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class Background:
    runtime: Runtime
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, runtime: Runtime, deliveries: bool = True, concurrency: int = 16) -> Background:
        background = cls(runtime)
        # Services register here as they are built (delivery worker, Jira inbox, housekeeping).
        return background

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001 - stopping the rest matters more
                log.exception("error while stopping a background service")
        self.stoppers.clear()
