"""Background work of one process: the delivery worker, the Jira event processor and housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from addon.process.runtime import Runtime
from addon.storage.engine import is_sqlite

log = logging.getLogger(__name__)


@dataclass
class Background:
    runtime: Runtime
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, runtime: Runtime, deliveries: bool = True, concurrency: int | None = None) -> Background:
        from addon.delivery.housekeeping import start_housekeeping
        from addon.delivery.worker import DeliveryWorker
        from addon.outbox.postgres import NotifyListener

        background = cls(runtime)
        if deliveries:
            if not is_sqlite(runtime.engine):
                background.stoppers.append(NotifyListener(runtime.settings.database_url,
                                                          runtime.deliveries_committed).start().stop)
            elif runtime.doorbell is not None:
                listener = runtime.doorbell.listen(runtime.deliveries_committed)
                if listener is not None:
                    background.stoppers.append(listener.stop)
            worker = DeliveryWorker(runtime) if concurrency is None else DeliveryWorker(runtime, concurrency)
            background.stoppers.append(worker.start().stop)
        from addon.intake.inbox import start_inbox_processor

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
