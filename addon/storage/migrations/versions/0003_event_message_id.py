"""events.message_id: the event's `webhook-id`, which each of its deliveries' extends with `_<webhook id>`

Kept on the event so that, on SQLite, the intake's fan-out can run as a trigger of the event's INSERT
(`addon/delivery/outbox.py`). Events stored before it have none.

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("events", sa.Column("message_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("message_id")
