"""The alert inbox: alerts that a rule evaluator which does not hold the
``notifier`` lease hands to the process that does
(``perfintel.alerting.state.inbox``). Rule groups are spread over processes
by rule-shard leases, so the notifier no longer evaluates every group itself.

Revision ID: leases_0003
Revises: leases_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "leases_0003"
down_revision = "leases_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("alerts", sa.Text, nullable=False),
    )
    op.create_index("alert_inbox_received_at", "alert_inbox", ["received_at"])


def downgrade() -> None:
    op.drop_index("alert_inbox_received_at", "alert_inbox")
    op.drop_table("alert_inbox")
