"""Background work of one process: the delivery worker, the Jira event processor and housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from addon.delivery.housekeeping import start_housekeeping
from addon.delivery.worker import DeliveryWorker
from addon.intake.inbox import start_inbox_processor
from addon.outbox.listen import listen_for_deliveries
from addon.process.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class Background:
    runtime: Runtime
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, runtime: Runtime, deliveries: bool = True, concurrency: int | None = None) -> Background:
        background = cls(runtime)
        if deliveries:
            stop_listening = listen_for_deliveries(runtime.engine, runtime.settings.database_url, runtime.doorbell,
                                                   runtime.deliveries_committed)
            if stop_listening is not None:
                background.stoppers.append(stop_listening)
            worker = DeliveryWorker(runtime) if concurrency is None else DeliveryWorker(runtime, concurrency)
            background.stoppers.append(worker.start().stop)
        background.stoppers.append(start_inbox_processor(runtime))
        background.stoppers.append(start_housekeeping(runtime))
        return background

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # noqa: BLE001 - stopping the rest matters more
                log.exception("error while stopping a background service")
        self.stoppers.clear()
