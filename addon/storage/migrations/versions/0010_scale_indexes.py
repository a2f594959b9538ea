"""indexes for scale: one webhook's deliveries and attempts by id (the delivery log's and the attempts list's keyset pages), and finished deliveries and events by
time (housekeeping's batched pruning); (webhook_id, id) replaces (webhook_id, at) on attempts, whose `at` no
query used.

On PostgreSQL the indexes of a table of 64 MB or more are built concurrently, writes going on meanwhile
(`addon.storage.online_schema`; docs/benchmarks.md, Scale, says how long it took on the largest database measured).

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

from addon.storage.online_schema import IndexSpec, change_indexes

revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

INDEXES = (
    IndexSpec("ix_deliveries_webhook_id", "deliveries", ["webhook_id", "id"]),
    IndexSpec("ix_deliveries_finished", "deliveries", ["finished_at"], "finished_at IS NOT NULL"),
    IndexSpec("ix_events_created_at", "events", ["created_at"]),
    IndexSpec("ix_attempts_webhook_id", "attempts", ["webhook_id", "id"]),
)
REPLACED = IndexSpec("ix_attempts_webhook_at", "attempts", ["webhook_id", "at"])


def upgrade() -> None:
    change_indexes(create=INDEXES, drop=[REPLACED])


def downgrade() -> None:
    change_indexes(create=[REPLACED], drop=INDEXES)
