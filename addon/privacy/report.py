"""The reporting pass (CONTRACT §11): per tenant, every stored accountId is reported through the tenant's door at
most once per cycle, in batches of at most 90; the accounts Atlassian answers `closed` are erased from everything
stored, in one transaction per tenant.

State that survives a failed call or a crash: `reported_accounts` (when each account was last reported, and whether
it is closed and still to be erased) and `privacy_cycles` (the tenant's cycle, a `Retry-After` to wait out, and the
lease of the process running its pass). A batch is recorded as reported in the transaction after its answer; a
batch that failed is not, so the next pass sends it again, and a closed account recorded before a crash is erased
by the next pass.

Reading what is stored streams through the rows in batches (keyset on the id), so memory holds one batch of bodies
and the set of distinct accounts, never every body at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from addon.admin.permissions import forget_admin_checks
from addon.doors import JiraError, ReportAnswer
from addon.intake.jira_attributes import LEAD, dump_snapshot, load_snapshot
from addon.outbox.store import encode_body
from addon.privacy.accounts import (
    accounts_in_body,
    accounts_in_inbox_body,
    erase_from_body,
    erase_from_inbox_body,
    is_account,
)
from addon.process.runtime import Runtime
from addon.sending.client import parse_retry_after
from addon.storage.engine import rowcount, transaction
from addon.storage.models import (
    Delivery,
    DeliveryStatus,
    Event,
    JiraInboxEvent,
    PrivacyCycle,
    ProjectSnapshot,
    ReportedAccount,
    Tenant,
    TenantState,
    utcnow,
)
from addon.storage.tenants import TenantView, get_view

log = logging.getLogger(__name__)

DEFAULT_CYCLE = dt.timedelta(days=7)
BATCH_SIZE = 90
"""Atlassian takes at most 90 accounts per report."""
SCAN_BATCH = 500
"""Stored rows read at a time."""
LEASE = dt.timedelta(minutes=15)
DEFAULT_RETRY_AFTER_S = 60.0
"""A 429 without a usable `Retry-After`: wait this long before the tenant's next report."""
PASS_EVERY = dt.timedelta(days=1)
"""A tenant's pass runs daily; one that did not go through (a 429, a site or token not available: a Forge site's
system token is fresh for an hour after one of its requests) is tried again at the next hourly look."""
LOOK_EVERY = dt.timedelta(hours=1)


@dataclass
class PassCounts:
    """What a pass did: accounts reported, and of those how many Atlassian answered closed and updated."""

    reported: int = 0
    closed: int = 0
    updated: int = 0
    tenants: int = 0
    failed_tenants: int = 0

    def add(self, other: PassCounts) -> None:
        self.reported += other.reported
        self.closed += other.closed
        self.updated += other.updated
        self.tenants += other.tenants
        self.failed_tenants += other.failed_tenants


def report_all(runtime: Runtime, now: dt.datetime | None = None, *, daily: bool = False) -> PassCounts:
    """One pass over every installed tenant (an uninstalled tenant's data goes within 30 days, §4); with `daily`,
    only over those whose last pass that went through is a day old or more."""
    totals = PassCounts()
    with runtime.sessions() as session:
        tenant_ids = session.scalars(select(Tenant.id).where(Tenant.state != TenantState.UNINSTALLED)
                                     .order_by(Tenant.id)).all()
    for tenant_id in tenant_ids:
        try:
            totals.add(report_tenant(runtime, tenant_id, now, daily=daily))
        except Exception:  # noqa: BLE001 - one tenant's failure must not stop the others' reports
            log.exception("personal data report failed tenant=%s", tenant_id)
            totals.failed_tenants += 1
    if totals.reported:
        log.info("personal data reported accounts=%s closed=%s updated=%s tenants=%s", totals.reported,
                 totals.closed, totals.updated, totals.tenants)
    return totals


def housekeeping_job(runtime: Runtime, now: dt.datetime | None = None) -> None:
    report_all(runtime, now, daily=True)


def report_tenant(runtime: Runtime, tenant_id: int, now: dt.datetime | None = None, *,
                  daily: bool = False) -> PassCounts:
    """One tenant's pass, unless another process runs it, a `Retry-After` is not over, or (`daily`) its last pass
    went through less than a day ago."""
    now = now or utcnow()
    counts = PassCounts()
    if not _take_lease(runtime, tenant_id, now, daily):
        return counts
    finished = False
    try:
        with runtime.sessions() as session:
            tenant = get_view(session, tenant_id, runtime.box)
            cycle_row = session.get_one(PrivacyCycle, tenant_id)
            cycle = dt.timedelta(seconds=cycle_row.cycle_s)
        if tenant is None or tenant.state == TenantState.UNINSTALLED:
            return counts
        counts.tenants = 1
        stored = stored_accounts(runtime, tenant_id)
        due = _due_accounts(runtime, tenant_id, stored, now - cycle)
        for start in range(0, len(due), BATCH_SIZE):
            batch = due[start:start + BATCH_SIZE]
            if not _report_batch(runtime, tenant, batch, stored, now, counts):
                counts.failed_tenants = 1
                break
        erase_closed(runtime, tenant_id)
        finished = not counts.failed_tenants
    finally:
        done = {"passed_at": now} if finished else {}
        with transaction(runtime.sessions) as session:
            session.execute(update(PrivacyCycle).where(PrivacyCycle.tenant_id == tenant_id)
                            .values(lease_until=None, **done))
    return counts


def _take_lease(runtime: Runtime, tenant_id: int, now: dt.datetime, daily: bool) -> bool:
    try:
        with transaction(runtime.sessions) as session:
            if session.get(PrivacyCycle, tenant_id) is None:
                session.add(PrivacyCycle(tenant_id=tenant_id, cycle_s=int(DEFAULT_CYCLE.total_seconds())))
    except IntegrityError:
        pass  # another process added it meanwhile
    with transaction(runtime.sessions) as session:
        return rowcount(session.execute(
            update(PrivacyCycle)
            .where(PrivacyCycle.tenant_id == tenant_id,
                   or_(PrivacyCycle.lease_until.is_(None), PrivacyCycle.lease_until < now),
                   or_(PrivacyCycle.not_before.is_(None), PrivacyCycle.not_before <= now),
                   *([or_(PrivacyCycle.passed_at.is_(None), PrivacyCycle.passed_at <= now - PASS_EVERY)]
                     if daily else []))
            .values(lease_until=now + LEASE))) == 1


def _rows(session: Session, query: Any, key: Any) -> Iterator[Any]:
    """The rows of `query` ordered by `key`, read SCAN_BATCH at a time (keyset, so each read is an index range)."""
    last = None
    while True:
        page = session.execute((query if last is None else query.where(key > last)).order_by(key)
                               .limit(SCAN_BATCH)).all()
        yield from page
        if len(page) < SCAN_BATCH:
            return
        last = page[-1][0]


def stored_accounts(runtime: Runtime, tenant_id: int) -> dict[str, dt.datetime]:
    """Every accountId the tenant's stored data holds, with the oldest time it was stored: the `user` and user-type
    values of stored events (the bodies their pending and logged deliveries send), project leads in snapshots, and
    the acting users and project leads of Jira events in the inbox."""
    oldest: dict[str, dt.datetime] = {}

    def seen(account: str, at: dt.datetime) -> None:
        if account not in oldest or at < oldest[account]:
            oldest[account] = at

    with runtime.sessions() as session:
        events = select(Event.id, Event.body, Event.created_at).where(Event.tenant_id == tenant_id)
        for _id, body, created_at in _rows(session, events, Event.id):
            for account in accounts_in_body(_parsed(body)):
                seen(account, created_at)
        snapshots = select(ProjectSnapshot.id, ProjectSnapshot.attributes, ProjectSnapshot.updated_at).where(
            ProjectSnapshot.tenant_id == tenant_id)
        for _id, attributes, updated_at in _rows(session, snapshots, ProjectSnapshot.id):
            lead = _lead(attributes)
            if lead is not None and is_account(lead):
                seen(lead, updated_at)
        inbox = select(JiraInboxEvent.id, JiraInboxEvent.body, JiraInboxEvent.user_account_id,
                       JiraInboxEvent.received_at).where(JiraInboxEvent.tenant_id == tenant_id)
        for _id, text, user, received_at in _rows(session, inbox, JiraInboxEvent.id):
            if user is not None and is_account(user):
                seen(user, received_at)
            for lead in accounts_in_inbox_body(_parsed(text)):
                seen(lead, received_at)
    return oldest


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _lead(attributes: str) -> str | None:
    try:
        return load_snapshot(attributes).get(LEAD)
    except ValueError:
        return None


def _due_accounts(runtime: Runtime, tenant_id: int, stored: dict[str, dt.datetime],
                  reported_before: dt.datetime) -> list[str]:
    """The stored accounts not reported within the cycle; records of accounts no longer stored are pruned."""
    with transaction(runtime.sessions) as session:
        records = {account: (reported_at, closed_at) for account, reported_at, closed_at in session.execute(
            select(ReportedAccount.account_id, ReportedAccount.reported_at, ReportedAccount.closed_at)
            .where(ReportedAccount.tenant_id == tenant_id))}
        gone = [account for account, (_, closed_at) in records.items() if account not in stored and closed_at is None]
        for chunk in _chunks(gone, SCAN_BATCH):
            session.execute(delete(ReportedAccount).where(ReportedAccount.tenant_id == tenant_id,
                                                          ReportedAccount.account_id.in_(chunk)))
    return sorted(account for account in stored
                  if account not in records or (records[account][1] is None and records[account][0] <= reported_before))


def _updated_at(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _report_batch(runtime: Runtime, tenant: TenantView, batch: list[str], stored: dict[str, dt.datetime],
                  now: dt.datetime, counts: PassCounts) -> bool:
    """Report one batch and record the answer; False when the tenant's pass must stop here."""
    accounts = [{"accountId": account, "updatedAt": _updated_at(stored[account])} for account in batch]
    try:
        answer = runtime.door(tenant.door).report_accounts(tenant, accounts)
    except JiraError as err:
        if err.status == 429:
            wait = parse_retry_after(err.retry_after)
            wait = DEFAULT_RETRY_AFTER_S if wait is None else wait
            with transaction(runtime.sessions) as session:
                session.execute(update(PrivacyCycle).where(PrivacyCycle.tenant_id == tenant.id)
                                .values(not_before=now + dt.timedelta(seconds=wait)))
            log.warning("personal data report rate-limited tenant=%s retry_after_s=%s", tenant.id, round(wait))
        else:
            log.warning("personal data report failed tenant=%s: %s", tenant.id, err)
        return False
    closed, updated = _statuses(answer, set(batch))
    cycle_s = _cycle_period_s(answer)
    with transaction(runtime.sessions) as session:
        for account in batch:
            session.merge(ReportedAccount(tenant_id=tenant.id, account_id=account, reported_at=now,
                                          closed_at=now if account in closed else None))
        if cycle_s is not None:
            session.execute(update(PrivacyCycle).where(PrivacyCycle.tenant_id == tenant.id).values(cycle_s=cycle_s))
    counts.reported += len(batch)
    counts.closed += len(closed)
    counts.updated += len(updated)
    return True


def _statuses(answer: ReportAnswer, batch: set[str]) -> tuple[set[str], set[str]]:
    """The batch's accounts Atlassian answered closed and updated (`200 {"accounts": [{accountId, status}]}`)."""
    closed: set[str] = set()
    updated: set[str] = set()
    listed = answer.body.get("accounts") if answer.status == 200 and isinstance(answer.body, dict) else None
    for item in listed if isinstance(listed, list) else ():
        if not isinstance(item, dict) or item.get("accountId") not in batch:
            continue
        if item.get("status") == "closed":
            closed.add(item["accountId"])
        elif item.get("status") == "updated":
            updated.add(item["accountId"])
    return closed, updated


def _cycle_period_s(answer: ReportAnswer) -> int | None:
    """The `Cycle-Period` header (seconds until the next report is due), when it is a positive whole number."""
    value = next((v for k, v in answer.headers.items() if k.lower() == "cycle-period"), None)
    if value is None or not value.strip().isdigit() or int(value) <= 0:
        return None
    return int(value)


def _id_in_json(account: str) -> str:
    """How an accountId stands in stored JSON (compact, UTF-8 as is): a prefilter for the rows that may hold it."""
    return json.dumps(account, ensure_ascii=False)


def erase_closed(runtime: Runtime, tenant_id: int) -> int:
    """Erase every account of the tenant recorded as closed from everything stored, in one transaction; returns
    how many accounts were erased. Logs what was changed, never the accountIds themselves (those at debug)."""
    with transaction(runtime.sessions) as session:
        closed = set(session.scalars(select(ReportedAccount.account_id).where(
            ReportedAccount.tenant_id == tenant_id, ReportedAccount.closed_at.is_not(None))))
        if not closed:
            return 0
        events, pending, occurrences = _erase_from_events(session, tenant_id, closed)
        snapshots = _erase_from_snapshots(session, tenant_id, closed)
        inbox = _erase_from_inbox(session, tenant_id, closed)
        for chunk in _chunks(sorted(closed)):
            session.execute(delete(ReportedAccount).where(ReportedAccount.tenant_id == tenant_id,
                                                          ReportedAccount.account_id.in_(chunk)))
    checks = forget_admin_checks(tenant_id, closed)
    log.info("closed accounts erased tenant=%s accounts=%s events=%s pending_deliveries=%s occurrences=%s "
             "snapshots=%s inbox_events=%s admin_checks=%s", tenant_id, len(closed), events, pending, occurrences,
             snapshots, inbox, checks)
    log.debug("closed accounts erased tenant=%s account_ids=%s", tenant_id, sorted(closed))
    return len(closed)


def _chunks(items: list[str], size: int = 50) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _erase_from_events(session: Session, tenant_id: int, closed: set[str]) -> tuple[int, int, int]:
    """Rewrite the bodies of the tenant's events that hold a closed account: the delivery log shows, and pending
    deliveries send, the body as it is now. Returns (events changed, their pending deliveries, occurrences)."""
    changed: list[int] = []
    occurrences = 0
    for chunk in _chunks(sorted(closed)):
        candidates = select(Event.id, Event.body).where(
            Event.tenant_id == tenant_id, or_(*(Event.body.contains(_id_in_json(a), autoescape=True) for a in chunk)))
        updates: list[tuple[int, str]] = []
        for event_id, text in _rows(session, candidates, Event.id):
            try:
                body = json.loads(text)
            except ValueError:
                continue
            erased = erase_from_body(body, closed)
            if erased:
                occurrences += erased
                updates.append((event_id, encode_body(body)))
        for event_id, text in updates:
            session.execute(update(Event).where(Event.id == event_id).values(body=text))
            changed.append(event_id)
    pending = 0
    for start in range(0, len(changed), SCAN_BATCH):
        _erase_from_own_bodies(session, changed[start:start + SCAN_BATCH], closed)
        pending += session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.event_id.in_(changed[start:start + SCAN_BATCH]), Delivery.status == DeliveryStatus.PENDING)) or 0
    return len(changed), pending, occurrences


def _erase_from_own_bodies(session: Session, event_ids: list[int], closed: set[str]) -> None:
    """The deliveries of these events with a body of their own (a field filter's subset of the event's, so it
    holds a closed account only where its event did): rewritten likewise."""
    own = select(Delivery.id, Delivery.body).where(Delivery.event_id.in_(event_ids), Delivery.body.is_not(None))
    for delivery_id, text in session.execute(own).all():
        body = _parsed(text) if text is not None else None
        if body is not None and erase_from_body(body, closed):
            session.execute(update(Delivery).where(Delivery.id == delivery_id).values(body=encode_body(body)))


def _erase_from_snapshots(session: Session, tenant_id: int, closed: set[str]) -> int:
    """Snapshot leads of closed accounts become null."""
    changed = 0
    for chunk in _chunks(sorted(closed)):
        candidates = select(ProjectSnapshot.id, ProjectSnapshot.attributes).where(
            ProjectSnapshot.tenant_id == tenant_id,
            or_(*(ProjectSnapshot.attributes.contains(_id_in_json(a), autoescape=True) for a in chunk)))
        for snapshot_id, text in list(_rows(session, candidates, ProjectSnapshot.id)):
            try:
                attributes = load_snapshot(text)
            except ValueError:
                continue
            if attributes.get(LEAD) in closed:
                attributes[LEAD] = None
                session.execute(update(ProjectSnapshot).where(ProjectSnapshot.id == snapshot_id)
                                .values(attributes=dump_snapshot(attributes)))
                changed += 1
    return changed


def _erase_from_inbox(session: Session, tenant_id: int, closed: set[str]) -> int:
    """Jira events in the inbox: the acting user becomes null, a closed lead's object too. Returns rows changed."""
    changed: set[int] = set()
    for chunk in _chunks(sorted(closed)):
        users = select(JiraInboxEvent.id).where(JiraInboxEvent.tenant_id == tenant_id,
                                               JiraInboxEvent.user_account_id.in_(chunk))
        changed.update(session.scalars(users))
        session.execute(update(JiraInboxEvent).where(JiraInboxEvent.tenant_id == tenant_id,
                                                     JiraInboxEvent.user_account_id.in_(chunk))
                        .values(user_account_id=None))
        candidates = select(JiraInboxEvent.id, JiraInboxEvent.body).where(
            JiraInboxEvent.tenant_id == tenant_id,
            or_(*(JiraInboxEvent.body.contains(_id_in_json(a), autoescape=True) for a in chunk)))
        updates = []
        for row_id, text in _rows(session, candidates, JiraInboxEvent.id):
            body = _parsed(text)
            if erase_from_inbox_body(body, closed):
                updates.append((row_id, json.dumps(body, separators=(",", ":"), ensure_ascii=False)))
        for row_id, text in updates:
            session.execute(update(JiraInboxEvent).where(JiraInboxEvent.id == row_id).values(body=text))
            changed.add(row_id)
    return len(changed)
