"""Leases with fencing tokens: the single notifier, one rule evaluator and one
bus worker per shard (``perfintel.alerting.state.leases``); the bus workers'
per-shard detector checkpoints, written under those leases
(``perfintel.bus.checkpoint``).

Its own branch from ``base``: the notification pipeline, the rule engine and
the bus all hold leases, and none of them orders itself against the others.

Revision ID: leases_0001
Revises: base_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "leases_0001"
down_revision = "base_0001"
branch_labels = ("leases",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
    )
    op.create_table(
        "bus_checkpoints",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("last_entry", sa.String(40), nullable=False),
        sa.Column("applied", sa.JSON, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("saved_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bus_checkpoints")
    op.drop_table("leases")
