"""The delivery worker: claims due deliveries under a lease, sends them, records each attempt, schedules retries.

One dispatcher thread claims work and hands each batch to the process's `Sender`, whose event loop keeps
up to `concurrency` attempts in flight (the slots); at most `per_webhook` deliveries of one webhook (a quarter)
and `per_tenant` of one tenant (half) are in flight in a process, so one hanging receiver holds up no other
webhook (and once its attempts went unanswered, only one at a time until it answers again), and one tenant's
backlog of slow receivers leaves half the slots free for the others' deliveries. The sender only sends: one recorder
thread writes the outcomes of all the attempts that finished meanwhile in one transaction (`outcomes.record_many`), so
the database sees one short write per batch rather than one per delivery, and sending never queues for the
database. A slot is free again as soon as its send ends, so sending goes on while outcomes are written; at
most `MAX_UNRECORDED` outcomes wait to be written before the dispatcher stops claiming (a delivery stays
leased until its outcome is committed).
Claiming (the lease, the SQL) is `addon.outbox.claim`'s.
The dispatcher sleeps until the next delivery is due or until a commit wakes it (an in-process signal, and
LISTEN/NOTIFY on PostgreSQL): no polling interval sits in the latency. A worker killed at any moment loses
nothing: its leased deliveries become due again when the lease ends.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter

from addon.delivery.outcomes import record, record_many
from addon.outbox.claim import DispatcherConnection, Job, claim, next_due_in, release
from addon.process.metrics import SLOT_GAUGES
from addon.process.runtime import Runtime
from addon.sending.client import SendResult
from addon.sending.signing import signature_headers

log = logging.getLogger(__name__)

MAX_IDLE_SLEEP_S = 5.0
MIN_SLEEP_S = 0.02


#: The header of an event's number in its project (CONTRACT §10.2; docs/receivers.md).
SEQUENCE_HEADER = "Projectrak-Sequence"


def attempt_headers(job: Job) -> dict[str, str]:
    """The headers of an attempt of `job` made now: the webhook's own, then the signature's and the event's
    sequence; ValueError for a malformed secret."""
    signed = signature_headers(job.message_id, int(time.time()), job.body, list(job.secrets))
    signed[SEQUENCE_HEADER] = str(job.sequence)
    return {**dict(job.headers), **signed} if job.headers else signed


def send(runtime: Runtime, job: Job) -> SendResult:
    return runtime.get_sender().send(job.url, job.body, attempt_headers(job))


def send_now(runtime: Runtime, delivery_id: int) -> int | None:
    """Send one delivery at once, in the caller's thread, without retries (the admin page's test delivery)."""
    jobs = claim(runtime, 1, delivery_id=delivery_id)
    if not jobs:
        return None
    return record(runtime, jobs[0], send(runtime, jobs[0]), retry=False)


#: Longest the dispatcher waits for more free slots before claiming again (see `_gather_slots`).
BATCH_WAIT_S = 0.005
#: Longest the recorder waits for more outcomes before writing a batch (see `_gather_outcomes`).
RECORD_WAIT_S = 0.01
#: Most attempt outcomes written in one transaction.
MAX_RECORD_BATCH = 256
#: Most outcomes waiting for the recorder (per concurrency slot) before the dispatcher stops claiming.
MAX_UNRECORDED_PER_SLOT = 4
#: Tries of one batch's transaction before its outcomes are written one by one.
RECORD_TRIES = 3


#: Deliveries one worker process sends at once (`addon worker --concurrency`). A slot is an attempt on the
#: sender's event loop, not a thread, so slots are cheap; claims and recordings come in batches of half the
#: slots, and bigger batches cost less per delivery: 64 sends ~6 % more than 32 (docs/benchmarks.md).
DEFAULT_CONCURRENCY = 64


def per_webhook_bound(concurrency: int) -> int:
    """Most deliveries of one webhook in flight in a process: a quarter of the slots, so that a hanging receiver
    holds up at most a quarter of the sending."""
    return max(1, concurrency // 4)


def per_tenant_bound(concurrency: int) -> int:
    """Most deliveries of one tenant in flight in a process: half the slots, always. The contract allows more to a
    tenant while no other has due deliveries, but a slot lent to it then is not free when another tenant's
    delivery arrives: that one would wait for one of the first tenant's sends to end (a slow receiver's whole
    timeout). Keeping the other half free is what lets it go out at the next claim."""
    return max(1, concurrency // 2)


class DeliveryWorker:
    """Dispatcher thread + the sender's loop (at most `concurrency` attempts) + recorder thread; `start()` then
    `stop()`."""

    def __init__(self, runtime: Runtime, concurrency: int = DEFAULT_CONCURRENCY,
                 per_webhook: int | None = None) -> None:
        self.runtime = runtime
        self.concurrency = max(1, concurrency)
        self.per_webhook = max(1, per_webhook if per_webhook is not None else per_webhook_bound(self.concurrency))
        self.per_tenant = per_tenant_bound(self.concurrency)
        self._in_flight: Counter[int] = Counter()
        self._in_flight_tenants: Counter[int] = Counter()
        self._in_flight_total = 0
        self._unanswered: set[int] = set()  # webhooks whose last attempt got no answer (see `_bound`)
        self._lock = threading.Lock()
        self._all_sent = threading.Condition(self._lock)  # notified when nothing is in flight
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-dispatcher", daemon=True)
        self._claims = DispatcherConnection(runtime)  # the dispatcher thread's alone
        self._outcomes: list[tuple[Job, SendResult]] = []
        self._outcomes_ready = threading.Condition()
        # Claims and recordings come in batches of half the slots (see `_gather_slots`, `_gather_outcomes`).
        self._half_slots = max(1, self.concurrency // 2)
        # Whether the last claim may have left claimable deliveries behind (see `_claim_batch`), and the webhooks
        # it left out because they were at their bound: their due deliveries become claimable when one of their
        # sends ends.
        self._more_due = True
        self._held_back: frozenset[int] = frozenset()
        self._held_back_tenants: frozenset[int] = frozenset()  # likewise, the tenants at their bound
        # When the earliest delivery not yet due becomes due (monotonic; None: none waits), as `next_due_in` last
        # read it; not read yet while `_next_due_known` is False.
        self._next_due_at: float | None = None
        self._next_due_known = False
        self._senders_done = False
        self._recorder = threading.Thread(target=self._record_loop, name="delivery-recorder", daemon=True)

    def start(self) -> DeliveryWorker:
        SLOT_GAUGES.set_slots(self.concurrency)
        SLOT_GAUGES.set_in_use(0)
        self._recorder.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.runtime.deliveries_committed.notify_here()
        self._thread.join(timeout)
        with self._all_sent:  # the attempts already started end within the sender's timeout
            self._all_sent.wait_for(lambda: self._in_flight_total == 0,
                                    self.runtime.settings.outgoing_timeout_s + timeout)
        with self._outcomes_ready:  # the sends that finished are recorded before the recorder ends
            self._senders_done = True
            self._outcomes_ready.notify_all()
        self._recorder.join(timeout)

    def _bound(self, webhook_id: int) -> int:
        """Most attempts of a webhook in flight (with `_lock` held). A webhook whose last attempt got no answer (a
        timeout, a refused or reset connection) gets one at a time until it answers again: a dead or hanging
        receiver then holds one slot and costs one new connection per timeout, not its whole share of both.
        (An ordered webhook keeps its share: at most one attempt per project, see `_sent`.)"""
        return 1 if webhook_id in self._unanswered else self.per_webhook

    def _busy_webhooks(self) -> set[int]:
        with self._lock:
            return {w for w, n in self._in_flight.items() if n >= self._bound(w)}

    def _busy_tenants(self) -> set[int]:
        with self._lock:
            return {t for t, n in self._in_flight_tenants.items() if n >= self.per_tenant}

    def _free_slots(self) -> int:
        with self._outcomes_ready:
            if len(self._outcomes) >= self.concurrency * MAX_UNRECORDED_PER_SLOT:
                return 0  # the recorder is behind (a slow database): wait for it
        with self._lock:
            return self.concurrency - self._in_flight_total

    def _run(self) -> None:
        try:
            self._dispatch()
        finally:
            self._claims.drop()

    def _dispatch(self) -> None:
        signal = self.runtime.deliveries_committed
        while not self._stopping.is_set():
            generation = signal.generation
            try:
                claimed = self._claim_batch()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("claiming deliveries failed; retrying")
                self._claims.drop()
                self._stopping.wait(1.0)
                continue
            if claimed and self._more_due:
                self._gather_slots()
                continue
            # Nothing (or everything that was due) claimed: claiming again at once would find nothing. Wait for
            # the next commit's wake-up, or the next scheduled attempt.
            if claimed and self._next_due_known:
                # The next due time read before still holds: what was due is claimed, and a retry this process
                # schedules wakes it (`_record_loop`). Reading it again per event cost a query each time.
                due_in = None if self._next_due_at is None else max(0.0, self._next_due_at - time.monotonic())
            else:
                if self._free_slots() <= 0:
                    signal.wait(MAX_IDLE_SLEEP_S, seen_generation=generation)  # a finished send wakes us
                    continue
                try:
                    due_in = self._claims.run(functools.partial(next_due_in, self.runtime, self._busy_webhooks(),
                                                                busy_tenants=self._busy_tenants()))
                except Exception:  # noqa: BLE001
                    log.exception("reading the next due delivery failed")
                    self._claims.drop()
                    due_in = 1.0
                self._next_due_at = None if due_in is None else time.monotonic() + due_in
                self._next_due_known = True
            sleep = MAX_IDLE_SLEEP_S if due_in is None else min(due_in, MAX_IDLE_SLEEP_S)
            # Something due that we could not claim (another process holds it, or it just became due):
            # wait a moment for a wake-up rather than spin.
            signal.wait(max(sleep, MIN_SLEEP_S), seen_generation=generation)

    def _gather_slots(self) -> None:
        """After a claim, let sends finish for a moment (at most `BATCH_WAIT_S`) until half the slots are free,
        so that under load one claim fetches many deliveries rather than one claim per finished send: a claim
        costs about the same for 1 row as for 16."""
        signal = self.runtime.deliveries_committed
        deadline = time.monotonic() + BATCH_WAIT_S
        while not self._stopping.is_set():
            generation = signal.generation
            with self._lock:
                if self.concurrency - self._in_flight_total >= self._half_slots or self._in_flight_total == 0:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            signal.wait(left, seen_generation=generation)

    def _claim_batch(self) -> int:
        slots = self._free_slots()
        if slots <= 0:
            return 0
        busy, busy_tenants = self._busy_webhooks(), self._busy_tenants()
        jobs = self._claims.run(lambda connection: claim(
            self.runtime, slots, busy, per_webhook=self.per_webhook, connection=connection,
            per_tenant=self.per_tenant, busy_tenants=busy_tenants))
        claimed_per_webhook = Counter(job.webhook_id for job in jobs)
        claimed_per_tenant = Counter(job.tenant_id for job in jobs)
        # Less than asked, from webhooks and tenants that were not cut to their bound by the claim: nothing else
        # was due but the deliveries of those left out (`busy`, `busy_tenants`). Then only a finished send of one
        # of those wakes the dispatcher (see `_release_slots`), which at a low rate saved one empty claim and one
        # `next_due_in` per finished send, also while a hanging receiver's webhook stays at its bound.
        self._more_due = (len(jobs) >= slots or any(n >= self.per_webhook for n in claimed_per_webhook.values())
                          or any(n >= self.per_tenant for n in claimed_per_tenant.values()))
        self._held_back, self._held_back_tenants = frozenset(busy), frozenset(busy_tenants)
        admitted, surplus = [], []
        with self._lock:
            for job in jobs:
                if (self._in_flight[job.webhook_id] >= self._bound(job.webhook_id)
                        or self._in_flight_tenants[job.tenant_id] >= self.per_tenant):
                    surplus.append(job.delivery_id)
                    continue
                self._in_flight[job.webhook_id] += 1
                self._in_flight_tenants[job.tenant_id] += 1
                self._in_flight_total += 1
                admitted.append(job)
            SLOT_GAUGES.set_in_use(self._in_flight_total)
        if surplus:
            self._more_due = True
            release(self.runtime, surplus)
        self._start_sending(admitted)
        return len(admitted)

    def _start_sending(self, jobs: list[Job]) -> None:
        """Sign each job and hand the batch to the sender's loop in one call."""
        attempts, signed, unsendable = [], [], []
        for job in jobs:
            try:
                headers = attempt_headers(job)
            except Exception:  # noqa: BLE001 - the lease brings it back
                log.exception("delivery could not be signed tenant=%s delivery=%s", job.tenant_id, job.delivery_id)
                unsendable.append(job)
                continue
            attempts.append((job.url, job.body, headers, functools.partial(self._sent, job)))
            signed.append(job)
        if unsendable:
            self._release_slots(unsendable)
        if attempts:
            try:
                self.runtime.get_sender().submit(attempts)
            except Exception:  # noqa: BLE001 - the sender is closing: the lease brings them back
                log.exception("handing %s deliveries to the sender failed", len(attempts))
                self._release_slots(signed)

    def _sent(self, job: Job, result: SendResult) -> None:
        """On the sender's loop, when an attempt ends: hand the outcome to the recorder and free the slot."""
        with self._lock:
            # Not for an ordered webhook: its attempts are one per project already, and one project's hanging
            # attempt must not hold its other projects to one at a time (CONTRACT §10.2).
            if result.http_code is None and not job.ordered:
                self._unanswered.add(job.webhook_id)
            else:
                self._unanswered.discard(job.webhook_id)
        with self._outcomes_ready:
            self._outcomes.append((job, result))
            # The recorder waits for the first outcome, then gathers up to half the slots' (`_gather_outcomes`):
            # waking it for every other one would cost a thread switch each time for nothing.
            if len(self._outcomes) == 1 or len(self._outcomes) >= self._half_slots:
                self._outcomes_ready.notify()
        self._release_slots([job])

    def _release_slots(self, jobs: list[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._in_flight[job.webhook_id] -= 1
                if self._in_flight[job.webhook_id] <= 0:
                    del self._in_flight[job.webhook_id]
                self._in_flight_tenants[job.tenant_id] -= 1
                if self._in_flight_tenants[job.tenant_id] <= 0:
                    del self._in_flight_tenants[job.tenant_id]
                self._in_flight_total -= 1
            SLOT_GAUGES.set_in_use(self._in_flight_total)
            # Wake the dispatcher only when it would claim (see `_gather_slots`) and may find something (see
            # `_claim_batch`): a wake-up per finished send costs the busy process a thread switch each time for
            # nothing.
            idle = self._in_flight_total == 0
            more = self._more_due or any(job.webhook_id in self._held_back or job.tenant_id in self._held_back_tenants
                                         for job in jobs)
            claimable = more and (idle or self.concurrency - self._in_flight_total >= self._half_slots)
            if idle:
                self._all_sent.notify_all()
        if idle:  # nothing more is coming: a gathering recorder writes what it has
            with self._outcomes_ready:
                self._outcomes_ready.notify()
        if claimable:
            self.runtime.deliveries_committed.notify_here()

    def _record_loop(self) -> None:
        """Write every outcome that arrived while the previous batch was being written, in one transaction."""
        while True:
            with self._outcomes_ready:
                while not self._outcomes and not self._senders_done:
                    self._outcomes_ready.wait()
                if not self._outcomes:
                    return  # stopping, and every finished send is recorded
                self._gather_outcomes()
                batch = self._outcomes[:MAX_RECORD_BATCH]
                del self._outcomes[:MAX_RECORD_BATCH]
            self._record(batch)
            # The dispatcher may have waited for the recorder, or may sleep past a retry just scheduled, or past
            # the next delivery of an ordered webhook's line, which only this recording released.
            if (len(batch) >= self.concurrency or not all(result.ok for _job, result in batch)
                    or any(job.ordered for job, _result in batch)):
                self.runtime.deliveries_committed.notify_here()

    def _gather_outcomes(self) -> None:
        """With `_outcomes_ready` held and some outcomes waiting: while sends are still in flight, wait at most
        `RECORD_WAIT_S` for half the slots' outcomes, so that under load one transaction writes many attempts
        (a transaction costs about the same for 2 attempts as for 16). Only the recording waits: the slots are
        already free, and the deliveries stay leased until their outcomes are committed."""
        deadline = time.monotonic() + RECORD_WAIT_S
        while len(self._outcomes) < self._half_slots and not self._senders_done and not self._stopping.is_set():
            with self._lock:
                if self._in_flight_total == 0:
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._outcomes_ready.wait(left)

    def _record(self, batch: list[tuple[Job, SendResult]]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                record_many(self.runtime, batch)
                return
            except Exception:  # noqa: BLE001 - a database hiccup must not lose the outcomes
                log.exception("recording %s delivery attempts failed (try %s of %s)", len(batch), attempt,
                              RECORD_TRIES)
                if attempt < RECORD_TRIES:
                    self._stopping.wait(0.5 * attempt)
        for job, result in batch:  # one by one, so one bad outcome cannot hold back the others
            try:
                record(self.runtime, job, result)
            except Exception:  # noqa: BLE001 - the lease brings it back
                log.exception("recording failed tenant=%s delivery=%s", job.tenant_id, job.delivery_id)
