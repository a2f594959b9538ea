"""The Prometheus series (CONTRACT §10.6) and how a scrape reads them.

`addon serve` runs several processes (gunicorn's web processes and its worker child): `prometheus_client`'s
multi-process mode has each write its values into files under `PROMETHEUS_MULTIPROC_DIR`, and a scrape adds them up
(`addon.cli` creates that directory before anything imports the library, so every process of the server shares it).
Without it (a lone `addon worker --metrics-port`) the values live in the process.

No label carries a tenant, a URL or a secret: only bounded sets (a source, an outcome, a status class).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from addon.storage.models import Delivery, DeliveryStatus, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

EVENTS = Counter(
    "addon_events_received", "Intake requests answered, by source and outcome (accepted or refused) and status class",
    ["source", "outcome", "status_class"])
DELIVERY_ATTEMPTS = Counter(
    "addon_delivery_attempts", "Delivery attempts recorded, by outcome: succeeded, retrying (a failure with a retry "
    "scheduled), gave_up (a failure that ends the delivery), test (an administrator's test)", ["outcome"])
ATTEMPT_DURATION = Histogram(
    "addon_delivery_attempt_duration_seconds", "Duration of one delivery attempt, from connecting to the answer",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))


class _SlotGauges:
    """The slots of each delivery worker: one series per live process that runs one (multi-process mode adds a
    `pid` label; a process that ended leaves, `mark_process_dead`). Created by the first worker of a process, never
    at import: a gauge writes its 0 into the shared directory when it is created, and the web processes of `addon
    serve` (which import this module to answer scrapes) would each show up as a worker with no slots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: tuple[Gauge, Gauge] | None = None

    def _get(self) -> tuple[Gauge, Gauge]:
        with self._lock:
            if self._gauges is None:
                self._gauges = (
                    Gauge("addon_delivery_slots_in_use", "Deliveries in flight in a delivery worker",
                          multiprocess_mode="liveall"),
                    Gauge("addon_delivery_slots", "Deliveries a delivery worker may have in flight at once",
                          multiprocess_mode="liveall"))
            return self._gauges

    def set_in_use(self, value: int) -> None:
        self._get()[0].set(value)

    def set_slots(self, value: int) -> None:
        self._get()[1].set(value)


SLOT_GAUGES = _SlotGauges()


def count_event(source: str, status: int) -> None:
    EVENTS.labels(source, "accepted" if status < 300 else "refused", f"{status // 100}xx").inc()


def count_attempt(ok: bool, gave_up: bool, duration_ms: int, *, test: bool = False) -> None:
    outcome = "test" if test else "succeeded" if ok else "gave_up" if gave_up else "retrying"
    DELIVERY_ATTEMPTS.labels(outcome).inc()
    ATTEMPT_DURATION.observe(duration_ms / 1000)


class DueDeliveries(Collector):
    """At each scrape, from the database: the deliveries due now and how long the oldest of them has waited."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        now = utcnow()
        query = (select(func.count(), func.min(Delivery.next_attempt_at))
                 .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now))
        try:
            with self.engine.connect() as connection:
                count, oldest = connection.execute(query).one()
        except SQLAlchemyError as err:
            # The scrape still answers with every process's series: a database outage is when the intake's
            # refusals (`status_class="5xx"`) are worth seeing. These two gauges are left out until it is back.
            log.warning("metrics: due deliveries not read, the database did not answer: %s", type(err).__name__)
            return
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily("addon_deliveries_due", "Deliveries due now (pending, their attempt time passed)",
                                value=count)
        yield GaugeMetricFamily("addon_oldest_due_delivery_age_seconds",
                                "How long the oldest due delivery has been due (0 when none is)", value=age)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read only at scrape time: no query when the collector is registered


def exposition(engine: Engine) -> tuple[bytes, str]:
    """The text a scrape answers: every process's series (multi-process mode) or this process's, plus the
    database's gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessSeries())
    registry.register(DueDeliveries(engine))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ProcessSeries(Collector):
    """The default registry's series (this process's own), inside a registry of a scrape."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header is `Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges from the shared directory (the library's `mark_process_dead`)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
