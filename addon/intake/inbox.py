"""The Jira inbox processor: turns accepted Jira project webhooks into recorded states and outgoing events.

Ordering: the events of one (tenant, project) are handled strictly one at a time, in arrival order, across
threads and processes. Only the oldest unprocessed row of a project (its *head*) can be claimed, and claiming
it sets a lease; a later row of the project cannot be claimed while its head is unprocessed (leased, waiting
for a retry, or not yet picked up). On PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`; on SQLite every
transaction is `BEGIN IMMEDIATE`, which serialises claimers.

Exactly-once effects: Jira is only read while a row is leased, outside any transaction; everything the event
changes (the snapshot, the outgoing event and its deliveries, the row marked processed) is written in one
transaction that first checks the lease is still ours (the row's `attempts` count is the fencing token). A
processor that lost its lease (it stalled past `lease_s` and someone else claimed the row) writes nothing.

Failures: an accepted event is never given up because of Jira's state. A Jira that cannot be reached, times out
or answers `5xx`, and one that answers `429` (rate limited; its `Retry-After` is honoured, up to
`MAX_RETRY_AFTER_S`), `401`/`403` (e.g. a shared secret being rotated by a re-install, or a site briefly
refusing the app) or `408`, leaves the row unprocessed with a growing delay (`not_before`: 1 s, 2 s, 4 s, … capped
at 5 min), for as long as it takes; the project's later events wait behind it. This stops only when the tenant is
uninstalled (the row is then closed with that note) or Jira answers. Final answers end the row at once: a `404`
for the project (deleted meanwhile) records that it no longer exists. Anything else (another `3xx`/`4xx`, an
answer that cannot be used, a bug) is retried the same way up to `MAX_ATTEMPTS` times, then the row is marked
processed with its error and logged as given up (so one poisoned event cannot block its project forever).

Besides Jira's events the inbox carries one synthetic job, `INSTALL_SNAPSHOT` (project id `""`): after a
signed install, record every project of the tenant (`GET /rest/api/3/project/search`, paged). Running it
through the inbox makes it durable and retried like the rest.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from addon.doors import JiraError, JiraNotFound, JiraUnavailable, JiraUnstorable
from addon.intake import snapshots
from addon.intake.jira_attributes import (
    KEY,
    NAME,
    Attributes,
    attributes_from_rest,
    attributes_from_webhook,
    diff_attributes,
    fill_missing,
    missing_attributes,
)
from addon.intake.jira_events import FORGETTING_EVENTS, PROJECT_UPDATED, RECORDING_EVENTS, SEEN_FOR
from addon.intake.outgoing import event_body
from addon.intake.projects import (
    ProjectDirectory,
    ProjectInfo,
    directory,
    fetch_project,
    iter_projects,
    project_info,
)
from addon.outbox.store import enqueue_event
from addon.process.runtime import Runtime
from addon.sending.client import parse_retry_after
from addon.storage.engine import transaction
from addon.storage.models import JiraInboxEvent, SeenJiraWebhook, TenantState, utcnow
from addon.storage.tenants import TenantView, get_view

log = logging.getLogger(__name__)

INSTALL_SNAPSHOT = "install_snapshot"
MAX_ATTEMPTS = 12
"""Attempts after which a row failing for a reason other than Jira's state is given up."""
RETRIED_JIRA_STATUSES = frozenset({401, 403, 408, 429})
"""Jira refusals that say "not now" rather than "never": retried for as long as it takes, like a 5xx."""
MAX_RETRY_AFTER_S = 3600.0
"""The longest `Retry-After` honoured (a larger one waits this long, then asks again)."""
KEEP_PROCESSED = SEEN_FOR
SNAPSHOT_BATCH = 50
_MAX_ERROR_CHARS = 500


class LeaseLost(Exception):
    """The row is no longer ours: another processor claimed it after our lease expired, or it is done."""


@dataclass(frozen=True)
class Claim:
    id: int
    tenant_id: int
    event: str
    project_id: str
    body: dict[str, Any]
    user: str | None
    attempts: int
    """The fencing token: the row's `attempts` after this claim."""


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    max_s: float = 300.0

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Exponential backoff with ±20 % jitter: base, 2×base, 4×base, … up to `max_s`; never sooner than a
        `Retry-After` (itself at most `MAX_RETRY_AFTER_S`)."""
        raw = min(self.max_s, self.base_s * 2 ** max(0, min(attempts - 1, 30)))
        delay = raw * random.uniform(0.8, 1.2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay


def waits_for_jira(err: Exception) -> bool:
    """Whether a failure is Jira's (or the database's) passing state, retried without limit."""
    if isinstance(err, JiraUnavailable):
        return True
    if isinstance(err, JiraError):
        return err.status in RETRIED_JIRA_STATUSES
    return isinstance(err, OperationalError)  # the database briefly unreachable or locked


def fence(session: Session, claim: Claim, **values: Any) -> None:
    """Update the claimed row only while the claim still holds; else raise LeaseLost (rolling back)."""
    result = session.execute(
        update(JiraInboxEvent)
        .where(JiraInboxEvent.id == claim.id, JiraInboxEvent.attempts == claim.attempts,
               JiraInboxEvent.processed_at.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"inbox row {claim.id} is no longer leased by this processor")


def claim_next(session: Session, lease_s: float) -> Claim | None:
    """Lease the oldest claimable head row (the oldest unprocessed row of its project), if any."""
    now = utcnow()
    older = aliased(JiraInboxEvent)
    is_head = ~exists().where(older.tenant_id == JiraInboxEvent.tenant_id,
                              older.project_id == JiraInboxEvent.project_id,
                              older.processed_at.is_(None), older.id < JiraInboxEvent.id)
    row = session.scalar(
        select(JiraInboxEvent)
        .where(JiraInboxEvent.processed_at.is_(None),
               or_(JiraInboxEvent.not_before.is_(None), JiraInboxEvent.not_before <= now),
               or_(JiraInboxEvent.lease_until.is_(None), JiraInboxEvent.lease_until < now),
               is_head)
        .order_by(JiraInboxEvent.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=JiraInboxEvent)
    )
    if row is None:
        return None
    row.attempts += 1
    row.lease_until = now + dt.timedelta(seconds=lease_s)
    try:
        body = json.loads(row.body)
    except ValueError:
        body = {}
    return Claim(row.id, row.tenant_id, row.event, row.project_id, body if isinstance(body, dict) else {},
                 row.user_account_id, row.attempts)


def schedule_install_snapshot(runtime: Runtime, tenant_id: int) -> None:
    """The `on_installed` hook: queue the snapshot of every project of the tenant (once while one is pending)."""
    try:
        with transaction(runtime.sessions) as session:
            pending = session.scalar(
                select(JiraInboxEvent.id)
                .where(JiraInboxEvent.tenant_id == tenant_id, JiraInboxEvent.event == INSTALL_SNAPSHOT,
                       JiraInboxEvent.processed_at.is_(None), JiraInboxEvent.attempts == 0)
                .limit(1)
            )
            if pending is None:
                session.add(JiraInboxEvent(tenant_id=tenant_id, event=INSTALL_SNAPSHOT, project_id="", body="{}",
                                           received_at=utcnow(), attempts=0))
    except Exception:  # noqa: BLE001 - the install itself has succeeded; the snapshot is best effort here
        log.exception("could not queue the project snapshot tenant=%s", tenant_id)
        return
    runtime.jira_events_committed.notify()


class InboxProcessor:
    """Worker threads that claim and handle inbox rows; wake on `runtime.jira_events_committed` or every `poll_s`."""

    def __init__(self, runtime: Runtime, *, threads: int = 2, poll_s: float = 1.0, lease_s: float = 120.0,
                 retry: RetryPolicy | None = None,
                 projects: ProjectDirectory = directory) -> None:
        self.runtime = runtime
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.retry = retry or RetryPolicy()
        self.projects = projects
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"jira-inbox-{i}", daemon=True)
                         for i in range(max(1, threads))]

    # Running.

    def start(self) -> InboxProcessor:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        self._stop.set()
        self.runtime.jira_events_committed.notify()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        wakeup = self.runtime.jira_events_committed
        while not self._stop.is_set():
            seen = wakeup.generation
            try:
                worked = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable: try again later
                log.exception("jira inbox processor error")
                worked = False
            if not worked:
                wakeup.wait(self.poll_s, seen_generation=seen)

    def run_once(self) -> bool:
        """Claim and handle one row; False when nothing was claimable."""
        with transaction(self.runtime.sessions) as session:
            claim = claim_next(session, self.lease_s)
            tenant = get_view(session, claim.tenant_id, self.runtime.box) if claim is not None else None
        if claim is None:
            return False
        try:
            self._handle(claim, tenant)
        except LeaseLost as err:
            log.warning("%s tenant=%s inbox=%s", err, claim.tenant_id, claim.id)
        except Exception as err:  # noqa: BLE001 - retried (or recorded), never crashing the thread
            waiting = waits_for_jira(err)
            if not isinstance(err, JiraError) and not waiting:
                log.exception("jira inbox event failed tenant=%s inbox=%s", claim.tenant_id, claim.id)
            error = str(err) if isinstance(err, JiraError) else f"{type(err).__name__}: {err}"
            retry_after = parse_retry_after(err.retry_after) if isinstance(err, JiraError) else None
            final = isinstance(err, JiraUnstorable) or (not waiting and claim.attempts >= MAX_ATTEMPTS)
            self._fail(claim, error, give_up=final, retry_after_s=retry_after)  # Jira would answer the same
        return True

    def _fail(self, claim: Claim, error: str, *, give_up: bool, retry_after_s: float | None = None) -> None:
        error = error[:_MAX_ERROR_CHARS]
        try:
            with transaction(self.runtime.sessions) as session:
                if give_up:
                    fence(session, claim, processed_at=utcnow(), lease_until=None, error=error)
                else:
                    delay = self.retry.delay(claim.attempts, retry_after_s)
                    not_before = utcnow() + dt.timedelta(seconds=delay)
                    fence(session, claim, not_before=not_before, lease_until=None, error=error)
        except LeaseLost as err:
            log.warning("%s tenant=%s inbox=%s", err, claim.tenant_id, claim.id)
            return
        if give_up:
            log.error("jira inbox event given up tenant=%s inbox=%s event=%s project=%s attempts=%s: %s",
                      claim.tenant_id, claim.id, claim.event, claim.project_id, claim.attempts, error)
        else:
            log.warning("jira inbox event will be retried tenant=%s inbox=%s event=%s project=%s attempts=%s: %s",
                        claim.tenant_id, claim.id, claim.event, claim.project_id, claim.attempts, error)

    def _finish(self, claim: Claim, effects: Callable[[Session], Any] | None = None, note: str | None = None) -> Any:
        """Mark the row processed and apply its effects, in one fenced transaction; returns what `effects` does."""
        with transaction(self.runtime.sessions) as session:
            fence(session, claim, processed_at=utcnow(), lease_until=None, error=note)
            return effects(session) if effects is not None else None

    # Handling one event.

    def _handle(self, claim: Claim, tenant: TenantView | None) -> None:
        if tenant is None or tenant.state == TenantState.UNINSTALLED:
            self._finish(claim, note="the tenant is uninstalled")
            return
        if claim.event == INSTALL_SNAPSHOT:
            self._snapshot_all(claim, tenant)
        elif claim.event in FORGETTING_EVENTS:
            self._finish(claim, functools.partial(snapshots.forget, tenant_id=tenant.id, project_id=claim.project_id))
            self.projects.forget(tenant.client_key, claim.project_id)
        elif claim.event in RECORDING_EVENTS:
            self._record(claim, tenant)
        elif claim.event == PROJECT_UPDATED:
            self._compare(claim, tenant)
        else:
            self._finish(claim, note=f"unknown event {claim.event!r}")
            return
        log.info("jira event processed tenant=%s inbox=%s event=%s project=%s", tenant.id, claim.id, claim.event,
                 claim.project_id)

    def _fetch(self, tenant: TenantView, project_id: str) -> Mapping[str, Any] | None:
        """The project from Jira's REST API (None when Jira says it does not exist)."""
        try:
            answer = fetch_project(self.runtime.jira_for(tenant), project_id)
        except JiraNotFound:
            return None
        if not isinstance(answer, Mapping):
            raise JiraUnavailable("Jira answered GET project with something that is not a project")
        return answer

    def _remember(self, tenant: TenantView, project: Mapping[str, Any]) -> None:
        info = project_info(project)
        if info is not None:
            self.projects.remember(tenant.client_key, info)

    def _record(self, claim: Claim, tenant: TenantView) -> None:
        """`project_created` / `project_restored_*`: the body's attributes, completed from REST."""
        raw_project = claim.body.get("project")
        attributes = attributes_from_webhook(raw_project) if isinstance(raw_project, Mapping) else {}
        if missing_attributes(attributes):
            rest = self._fetch(tenant, claim.project_id)
            if rest is not None:
                attributes = fill_missing(attributes, attributes_from_rest(rest))
                self._remember(tenant, rest)
        self._finish(claim, lambda session: snapshots.record(session, tenant.id, claim.project_id, attributes))

    def _compare(self, claim: Claim, tenant: TenantView) -> None:
        """`project_updated`: the current state from REST against the recorded one."""
        rest = self._fetch(tenant, claim.project_id)
        if rest is None:
            self._finish(claim, note="the project no longer exists in Jira")
            return
        current = attributes_from_rest(rest)
        self._remember(tenant, rest)
        emitted = self._finish(claim, functools.partial(self._compare_effects, claim=claim, tenant=tenant,
                                                        current=current, rest=rest))
        if emitted:
            self.runtime.deliveries_committed.notify()

    def _compare_effects(self, session: Session, *, claim: Claim, tenant: TenantView, current: Attributes,
                         rest: Mapping[str, Any]) -> bool:
        recorded = snapshots.load(session, tenant.id, claim.project_id)
        snapshots.record(session, tenant.id, claim.project_id, current)
        if recorded is None:
            return False
        fields = diff_attributes(recorded, current)
        if not fields:
            return False
        project = ProjectInfo(claim.project_id, current.get(KEY) or str(rest.get("key") or ""),
                              current.get(NAME) or str(rest.get("name") or ""))
        timestamp = claim.body.get("timestamp")
        body = event_body(user=claim.user, timestamp=timestamp if isinstance(timestamp, int) else 0,
                          project=project, fields=fields)
        event_id, deliveries = enqueue_event(session, tenant_id=tenant.id, source="jira", body=body,
                                             project_id=claim.project_id)
        log.info("jira project change accepted tenant=%s event=%s project=%s fields=%s deliveries=%s", tenant.id,
                 event_id, claim.project_id, len(fields), deliveries)
        return True

    def _snapshot_all(self, claim: Claim, tenant: TenantView) -> None:
        """Record every project of the tenant, page by page; each batch also renews the lease."""
        batch: list[Mapping[str, Any]] = []
        count = 0
        for project in iter_projects(self.runtime.jira_for(tenant), page_size=SNAPSHOT_BATCH):
            if isinstance(project, Mapping) and project_info(project) is not None:
                batch.append(project)
            if len(batch) >= SNAPSHOT_BATCH:
                count += self._record_batch(claim, tenant, batch)
                batch = []
        count += self._record_batch(claim, tenant, batch)
        self._finish(claim)
        log.info("project snapshot taken tenant=%s projects=%s", tenant.id, count)

    def _record_batch(self, claim: Claim, tenant: TenantView, batch: list[Mapping[str, Any]]) -> int:
        with transaction(self.runtime.sessions) as session:
            fence(session, claim, lease_until=utcnow() + dt.timedelta(seconds=self.lease_s))
            for project in batch:
                info = project_info(project)
                assert info is not None
                snapshots.record(session, tenant.id, info.id, attributes_from_rest(project))
        for project in batch:
            self._remember(tenant, project)
        return len(batch)


def prune(runtime: Runtime, now: dt.datetime | None = None) -> None:
    """Delete processed inbox rows and seen identifiers older than 7 days (a housekeeping job)."""
    now = now or utcnow()
    with transaction(runtime.sessions) as session:
        session.execute(delete(JiraInboxEvent).where(JiraInboxEvent.processed_at.is_not(None),
                                                     JiraInboxEvent.processed_at < now - KEEP_PROCESSED))
        session.execute(delete(SeenJiraWebhook).where(SeenJiraWebhook.seen_at < now - SEEN_FOR))


def start_inbox_processor(runtime: Runtime, **options: Any) -> Callable[[], None]:
    """Start the processor threads; returns the function that stops them (for `Background.stoppers`)."""
    return InboxProcessor(runtime, **options).start().stop
