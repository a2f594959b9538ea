"""tenants.door may be 'demo': `addon demo`'s local site, keyed and signed as a Connect tenant

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0011"
down_revision: Union[str, Sequence[str], None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("ck_tenants_door_key", type_="check")
        batch.create_check_constraint(
            "ck_tenants_door_key",
            "(door IN ('connect', 'demo') AND client_key IS NOT NULL AND shared_secret IS NOT NULL)"
            " OR (door = 'forge' AND installation_id IS NOT NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM tenants WHERE door = 'demo'")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("ck_tenants_door_key", type_="check")
        batch.create_check_constraint(
            "ck_tenants_door_key",
            "(door = 'connect' AND client_key IS NOT NULL AND shared_secret IS NOT NULL)"
            " OR (door = 'forge' AND installation_id IS NOT NULL)")
