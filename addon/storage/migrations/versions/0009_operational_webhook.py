"""webhooks.kind and the alert columns: the tenant's operational webhook and what administrators are told
(CONTRACT §10.5)

`kind` is `webhook` (an administrator's webhook) or `operational` (the tenant's operational webhook, at most one
not deleted). `alert_state` (`disabled` | `failing`), `alert_reason` and `alert_since` are the last transition told
to the operational webhook, kept until the webhook succeeds again; `alert_shown` says the page still shows it (a
change of the webhook hides it).

Revision ID: 0009
Revises: 0008
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("kind", sa.String(16), nullable=False, server_default="webhook"))
    op.add_column("webhooks", sa.Column("alert_state", sa.String(16), nullable=True))
    op.add_column("webhooks", sa.Column("alert_reason", sa.String(16), nullable=True))
    op.add_column("webhooks", sa.Column("alert_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhooks", sa.Column("alert_shown", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        for column in ("alert_shown", "alert_since", "alert_reason", "alert_state", "kind"):
            batch.drop_column(column)
