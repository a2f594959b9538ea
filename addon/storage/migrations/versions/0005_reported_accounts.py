"""reported_accounts and privacy_cycles: which accountIds were reported to Atlassian when, per tenant (CONTRACT §11)

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from addon.storage.models import UTCDateTime

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _tenant_id() -> sa.Column:
    return sa.Column("tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "reported_accounts",
        _tenant_id(),
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("reported_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "privacy_cycles",
        _tenant_id(),
        sa.Column("cycle_s", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("passed_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("privacy_cycles")
    op.drop_table("reported_accounts")
