"""the claim reads each webhook's oldest due deliveries: index (webhook_id, status, next_attempt_at)

Replaces the due index (status, next_attempt_at), which made a claim walk over every due delivery of a webhook
at its in-flight bound (a hanging receiver's pile-up), and the plain webhook_id index, which the new one's
prefix serves.

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_deliveries_webhook_due", "deliveries", ["webhook_id", "status", "next_attempt_at"])
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_index("ix_deliveries_webhook_id", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_webhook_id", "deliveries", ["webhook_id"])
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.drop_index("ix_deliveries_webhook_due", table_name="deliveries")
