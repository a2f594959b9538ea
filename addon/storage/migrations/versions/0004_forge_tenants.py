"""tenants of either door: Forge installations beside Connect sites

`door` says which front door a tenant came in by; a Connect tenant has its `client_key` and `shared_secret`, a Forge
tenant its `installation_id` (no shared secret). Forge tenants keep where their Jira calls go (`api_base_url`), the
newest app system token (sealed) and when it came, and what the uninstall inference reads (`last_request_at`,
`jira_refused_since`).

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("door", sa.String(16), nullable=False, server_default="connect"))
        batch.add_column(sa.Column("installation_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("api_base_url", sa.String(255), nullable=True))
        batch.add_column(sa.Column("forge_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("forge_token_received_at", _UTC, nullable=True))
        batch.add_column(sa.Column("last_request_at", _UTC, nullable=True))
        batch.add_column(sa.Column("jira_refused_since", _UTC, nullable=True))
        batch.alter_column("client_key", existing_type=sa.String(255), nullable=True)
        batch.alter_column("shared_secret", existing_type=sa.Text(), nullable=True)
        batch.create_unique_constraint("uq_tenants_installation_id", ["installation_id"])
        batch.create_check_constraint(
            "ck_tenants_door_key",
            "(door = 'connect' AND client_key IS NOT NULL AND shared_secret IS NOT NULL)"
            " OR (door = 'forge' AND installation_id IS NOT NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM tenants WHERE door = 'forge'")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("ck_tenants_door_key", type_="check")
        batch.drop_constraint("uq_tenants_installation_id", type_="unique")
        batch.alter_column("shared_secret", existing_type=sa.Text(), nullable=False)
        batch.alter_column("client_key", existing_type=sa.String(255), nullable=False)
        for column in ("jira_refused_since", "last_request_at", "forge_token_received_at", "forge_token",
                       "api_base_url", "installation_id", "door"):
            batch.drop_column(column)
