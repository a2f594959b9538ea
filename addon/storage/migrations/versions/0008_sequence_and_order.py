"""Projectrak-Sequence and ordered webhooks (CONTRACT §10.2): project_sequences (the last number per tenant and
project), events.sequence, deliveries.project_id and .sequence with the partial line index, webhooks.ordered

Every pending delivery gets its event's project (its line) and sequence 0, and every project that had an event its
counter row at 0, so a webhook switched to ordered later finds what is pending. A finished delivery keeps no project
(filling every stored row would rewrite the whole table under the lock of its new columns): a redelivery or a
recovery gives it its event's project when it puts it back in line (`addon.delivery.outcomes`). The claim's index
ix_deliveries_webhook_due gains `id` (ties in time go oldest first). Indexes of a big table are built concurrently
(`addon.storage.online_schema`); the columns are added only when missing, so an upgrade stopped during such a
build runs again. Its locks are taken up front (`lock_tables`), so that it cannot deadlock with a running writer.

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from addon.storage.online_schema import IndexSpec, change_indexes, lock_tables

revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


LINE = IndexSpec("ix_deliveries_line", "deliveries", ["webhook_id", "project_id", "sequence", "id"], "status = 'pending'")
WEBHOOK_DUE = IndexSpec("ix_deliveries_webhook_due", "deliveries", ["webhook_id", "status", "next_attempt_at", "id"])
WEBHOOK_DUE_BEFORE = IndexSpec("ix_deliveries_webhook_due", "deliveries", ["webhook_id", "status", "next_attempt_at"])


def upgrade() -> None:
    lock_tables("events", "deliveries", "webhooks", share=["tenants"])
    again = op.get_context().dialect.name == "postgresql" or None  # SQLite has no ADD COLUMN IF NOT EXISTS
    op.create_table(
        "project_sequences",
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        if_not_exists=again,
    )
    op.add_column("events", sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"),
                  if_not_exists=again)
    op.add_column("deliveries", sa.Column("project_id", sa.String(64), nullable=True), if_not_exists=again)
    op.add_column("deliveries", sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"),
                  if_not_exists=again)
    op.add_column("webhooks", sa.Column("ordered", sa.Boolean(), nullable=False, server_default=sa.false()),
                  if_not_exists=again)
    op.execute("UPDATE deliveries SET project_id = (SELECT coalesce(e.project_id, '') FROM events e"
               " WHERE e.id = deliveries.event_id) WHERE status = 'pending' AND project_id IS NULL")
    op.execute("INSERT INTO project_sequences (tenant_id, project_id, last_sequence)"
               " SELECT DISTINCT tenant_id, coalesce(project_id, ''), 0 FROM events e WHERE NOT EXISTS ("
               "SELECT 1 FROM project_sequences p WHERE p.tenant_id = e.tenant_id"
               " AND p.project_id = coalesce(e.project_id, ''))")
    # The claim's per-webhook index gains `id`: deliveries due at the same moment are taken oldest first by the
    # index order itself, not by where an update happened to leave their rows.
    change_indexes(create=[LINE], replace=[WEBHOOK_DUE])


def downgrade() -> None:
    change_indexes(drop=[LINE], replace=[WEBHOOK_DUE_BEFORE])
    lock_tables("events", "deliveries", "webhooks", "project_sequences")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("ordered")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sequence")
        batch.drop_column("project_id")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sequence")
    op.drop_table("project_sequences")
