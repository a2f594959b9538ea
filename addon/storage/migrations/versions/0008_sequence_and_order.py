"""Projectrak-Sequence and ordered webhooks (CONTRACT §10.2): project_sequences (the last number per tenant and
project), events.sequence, deliveries.project_id and .sequence with the partial line index, webhooks.ordered

It writes no row: a delivery stored before lines existed has no project (its line) until its webhook is made
ordered, or it is queued again on an ordered webhook (`addon.delivery.outcomes.line_up`, which also gives its project
a counter row); no webhook is ordered before this migration, and filling every stored row here would rewrite the
whole table under the lock of its new columns. The claim's index ix_deliveries_webhook_due gains `id` (ties in time
go oldest first). Indexes of a big table are built concurrently (`addon.storage.online_schema`); the columns are
added only when missing, so an upgrade stopped during such a build runs again. Its locks are taken up front
(`lock_tables`), so that it cannot deadlock with a running writer.

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
