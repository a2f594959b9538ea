"""The tables. Times are timezone-aware UTC; JSON documents are stored as text so what is sent is byte-exact."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC; always hands back aware datetimes (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class TenantState(enum.StrEnum):
    INSTALLED = "installed"
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNINSTALLED = "uninstalled"


class Door(enum.StrEnum):
    CONNECT = "connect"
    FORGE = "forge"
    DEMO = "demo"  # `addon demo`'s local site (addon/demo/): a key and a shared secret, as a Connect tenant


class Tenant(Base):
    """One installation on a Jira site, through either door: a Connect site by its clientKey (a site import is a
    new tenant), a Forge installation by its installationId (a reinstall is a new one)."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("(door IN ('connect', 'demo') AND client_key IS NOT NULL AND shared_secret IS NOT NULL)"
                        " OR (door = 'forge' AND installation_id IS NOT NULL)", name="ck_tenants_door_key"),
        UniqueConstraint("installation_id", name="uq_tenants_installation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    door: Mapped[str] = mapped_column(String(16), default=Door.CONNECT, server_default=Door.CONNECT.value)
    client_key: Mapped[str | None] = mapped_column(String(255), unique=True)  # Connect
    shared_secret: Mapped[str | None] = mapped_column(Text)  # Connect; sealed with SecretBox
    installation_id: Mapped[str | None] = mapped_column(String(255))  # Forge
    # Forge: where Jira calls go (the FIT's app.apiBaseUrl), the newest app system token (sealed) and when it came.
    api_base_url: Mapped[str | None] = mapped_column(String(255))
    forge_token: Mapped[str | None] = mapped_column(Text)
    forge_token_received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Forge's uninstall inference (no uninstall event reaches a remote): the last authenticated request (written
    # at most hourly) and since when Jira refuses the app's token (401/403), cleared by any Jira success.
    last_request_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    jira_refused_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    base_url: Mapped[str] = mapped_column(String(255))
    display_url: Mapped[str | None] = mapped_column(String(255))
    product_type: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=TenantState.INSTALLED)
    installed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    uninstalled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Grows whenever a webhook filter of the tenant changes: the intake checks it in the statement that stores an
    # event, so a filter it remembered from an older version is never applied (`addon.outbox.filters`).
    filters_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def is_active(self) -> bool:
        return self.state != TenantState.UNINSTALLED


class UsedInstallToken(Base):
    """Signed-install tokens already used, refused again until they expire."""

    __tablename__ = "used_install_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class SeenJiraWebhook(Base):
    """`X-Atlassian-Webhook-Identifier`s a tenant has sent, kept 7 days for de-duplication."""

    __tablename__ = "seen_jira_webhooks"
    __table_args__ = (UniqueConstraint("tenant_id", "identifier"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class JiraInboxEvent(Base):
    """A Jira project webhook accepted and not yet compared; processed per project in arrival order."""

    __tablename__ = "jira_inbox"
    __table_args__ = (Index("ix_jira_inbox_pending", "processed_at", "tenant_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    user_account_id: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class ProjectSnapshot(Base):
    """The last recorded Jira attributes of a project (ids -1…-9), in output form, as JSON."""

    __tablename__ = "project_snapshots"
    __table_args__ = (UniqueConstraint("tenant_id", "project_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


#: CONTRACT §7: at most this many (not deleted) webhooks per tenant.
MAX_WEBHOOKS_PER_TENANT = 50


class WebhookKind(enum.StrEnum):
    WEBHOOK = "webhook"
    OPERATIONAL = "operational"


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_tenant", "tenant_id", "enabled"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(16))  # manual | gone | failing
    secret: Mapped[str] = mapped_column(Text)  # sealed
    previous_secret: Mapped[str | None] = mapped_column(Text)  # sealed; signs alongside until it expires
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_execution_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(String(8))  # OK | ERROR
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # first failure after a success
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # kept for its delivery log
    headers: Mapped[str | None] = mapped_column(Text)  # custom headers: JSON {name: sealed value}
    # `webhook`, or `operational`: the tenant's operational webhook (CONTRACT §10.5), at most one not deleted; it
    # gets only the add-on's own notices, never the tenant's events, and is not listed with the webhooks.
    kind: Mapped[str] = mapped_column(String(16), default=WebhookKind.WEBHOOK,
                                      server_default=WebhookKind.WEBHOOK.value)
    # The last transition told to the operational webhook (`disabled` | `failing`), its reason and since when;
    # kept until the webhook succeeds again (which is told as recovered). `alert_shown`: the page still shows it
    # at the top (a change of the webhook hides it).
    alert_state: Mapped[str | None] = mapped_column(String(16))
    alert_reason: Mapped[str | None] = mapped_column(String(16))
    alert_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    alert_shown: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Filters (CONTRACT §10.1); None = everything. Projects as resolved when saved: JSON [{id, key, name}] (id a
    # string); fields: JSON [field id, …].
    filter_projects: Mapped[str | None] = mapped_column(Text)
    filter_fields: Mapped[str | None] = mapped_column(Text)
    # One delivery at a time per project, in sequence order (CONTRACT §10.2; outbox/claim.py's ordered pick).
    ordered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Event(Base):
    """One accepted change: the exact §6.1 body decided at intake."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))  # projectrak | jira | test
    project_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)  # for pruning
    # The event's `webhook-id`: each delivery's is this, `_` and the webhook's id. None for events stored before 0003.
    message_id: Mapped[str | None] = mapped_column(String(64))
    # `Projectrak-Sequence` (CONTRACT §10.2): this event's number in its project's line (`ProjectSequence`); 0 for
    # tests and for events stored before 0008.
    sequence: Mapped[int] = mapped_column(BigInteger, server_default="0")


#: The project key of an event without a project: such events share one line per tenant.
NO_PROJECT = ""


class ProjectSequence(Base):
    """The last `Projectrak-Sequence` given to an event of a tenant's project (`project_id` as events store it,
    `NO_PROJECT` for none). The intake bumps it in the statement that stores the event, so the row's lock orders
    one project's acceptances. Its rows are also the lines an ordered webhook's claim looks at (outbox/claim.py)."""

    __tablename__ = "project_sequences"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final answer or schedule exhausted
    CANCELLED = "cancelled"


class Delivery(Base):
    """The outbox: one event to one webhook, claimed by a worker under a lease."""

    __tablename__ = "deliveries"
    # The claim picks each webhook's oldest due deliveries (`webhook_due`; its `id` orders deliveries due at the
    # same moment, a burst or a recovery, oldest first by the index itself). `line`: a pending delivery's place
    # among its webhook's pending deliveries of the same project, so an ordered webhook's claim finds each line's
    # head with one probe; partial (finished deliveries are not in it), it also gives the claim the webhooks that
    # have pending deliveries (outbox/claim.py's loose scan). `webhook_id`: one webhook's deliveries newest first
    # (the delivery log's pages); `finished`: housekeeping's pruning of finished deliveries in batches.
    __table_args__ = (
        Index("ix_deliveries_webhook_due", "webhook_id", "status", "next_attempt_at", "id"),
        Index("ix_deliveries_line", "webhook_id", "project_id", "sequence", "id",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
        Index("ix_deliveries_webhook_id", "webhook_id", "id"),
        Index("ix_deliveries_finished", "finished_at", postgresql_where=text("finished_at IS NOT NULL"),
              sqlite_where=text("finished_at IS NOT NULL")),  # no entry for a delivery the intake writes
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64), unique=True)  # the `webhook-id` header
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    schedule_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # This delivery's own body when a field filter made it differ from its event's (CONTRACT §10.1); None: the
    # event's body, as for every unfiltered webhook.
    body: Mapped[str | None] = mapped_column(Text)
    # The event's project (`NO_PROJECT` for none) and `Projectrak-Sequence`, copied so the line index holds them.
    project_id: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger, server_default="0")


class SeenField(Base):
    """A field that came through a tenant's intake, by id, with its name and type as last seen (CONTRACT §10.1's
    `GET /api/fields`). `last_seen_at` is written at most every few hours per field (`addon.intake.seen_fields`)."""

    __tablename__ = "seen_fields"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    field_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Attempt(Base):
    """One HTTP attempt of a delivery, as the administrator sees it in the log."""

    __tablename__ = "attempts"
    # One webhook's attempts newest first, by id (the attempts list's pages: `before` is an id).
    __table_args__ = (Index("ix_attempts_webhook_id", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(8))  # OK | ERROR
    http_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body_start: Mapped[str | None] = mapped_column(Text)


def table_of(model: type[Base]) -> Table:
    """A model's `Table`, for Core statements (SQLAlchemy types `__table__` as any `FromClause`)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class ReportedAccount(Base):
    """An accountId this tenant's stored data mentions, as last reported to Atlassian (CONTRACT §11).

    `reported_at` says when (an account is reported again once the tenant's cycle has passed since); `closed_at`,
    that Atlassian answered `closed` and its occurrences are still to be erased (set in the same transaction as
    `reported_at`, so an erasure interrupted by a crash is done by the next pass). A row goes when no stored data
    mentions the account any more, and with its tenant."""

    __tablename__ = "reported_accounts"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PrivacyCycle(Base):
    """A tenant's reporting state: its cycle (Atlassian's `Cycle-Period`), a `Retry-After` to wait out, when its
    last pass went through to the end, and the lease of the process running its pass (so two processes never
    report the same accounts twice)."""

    __tablename__ = "privacy_cycles"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    cycle_s: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    passed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
