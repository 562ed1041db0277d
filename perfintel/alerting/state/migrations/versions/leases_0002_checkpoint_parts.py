"""Incremental bus checkpoints: the parts written between full detector states
(``perfintel.bus.checkpoint``: only the series that changed since the previous save).

Revision ID: leases_0002
Revises: leases_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "leases_0002"
down_revision = "leases_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bus_checkpoint_parts",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bus_checkpoint_parts")
