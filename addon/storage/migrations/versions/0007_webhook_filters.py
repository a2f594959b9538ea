"""webhook filters (CONTRACT §10.1): webhooks.filter_projects/filter_fields, tenants.filters_version, a delivery's own
body (deliveries.body), and the fields seen by a tenant's intake (seen_fields)

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from addon.storage.online_schema import lock_tables

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    lock_tables("deliveries", "webhooks", "tenants")  # all at once: see addon.storage.online_schema
    op.add_column("webhooks", sa.Column("filter_projects", sa.Text(), nullable=True))
    op.add_column("webhooks", sa.Column("filter_fields", sa.Text(), nullable=True))
    op.add_column("tenants", sa.Column("filters_version", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("deliveries", sa.Column("body", sa.Text(), nullable=True))
    op.create_table(
        "seen_fields",
        sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("field_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_seen_fields_last_seen_at", "seen_fields", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_fields_last_seen_at", table_name="seen_fields")
    op.drop_table("seen_fields")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("body")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("filters_version")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("filter_fields")
        batch.drop_column("filter_projects")
