"""Projectrak-Sequence and ordered webhooks (CONTRACT §10.2): project_sequences (the last number per tenant and
project), events.sequence, deliveries.project_id and .sequence with the partial line index, webhooks.ordered

Every delivery gets its event's project (its line) and sequence 0, and every project that had an event its counter
row at 0, so a webhook switched to ordered later finds what is pending, and a delivery recovered or redelivered
later finds its line. The claim's index ix_deliveries_webhook_due gains `id` (ties in time go oldest first).

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "project_sequences",
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    )
    op.add_column("events", sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("deliveries", sa.Column("project_id", sa.String(64), nullable=True))
    op.add_column("deliveries", sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("webhooks", sa.Column("ordered", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE deliveries SET project_id = (SELECT coalesce(e.project_id, '') FROM events e"
               " WHERE e.id = deliveries.event_id)")
    op.execute("INSERT INTO project_sequences (tenant_id, project_id, last_sequence)"
               " SELECT DISTINCT tenant_id, coalesce(project_id, ''), 0 FROM events")
    op.create_index("ix_deliveries_line", "deliveries", ["webhook_id", "project_id", "sequence", "id"],
                    postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
    # The claim's per-webhook index gains `id`: deliveries due at the same moment are taken oldest first by the
    # index order itself, not by where an update happened to leave their rows.
    op.drop_index("ix_deliveries_webhook_due", table_name="deliveries")
    op.create_index("ix_deliveries_webhook_due", "deliveries", ["webhook_id", "status", "next_attempt_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_webhook_due", table_name="deliveries")
    op.create_index("ix_deliveries_webhook_due", "deliveries", ["webhook_id", "status", "next_attempt_at"])
    op.drop_index("ix_deliveries_line", table_name="deliveries")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("ordered")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sequence")
        batch.drop_column("project_id")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sequence")
    op.drop_table("project_sequences")
