"""Notification pipeline: alerts, incidents, silences, outbox, episodes, objects.

Revision ID: notify_0001
Revises: base_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "notify_0001"
down_revision = "base_0001"
branch_labels = ("notify",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_alerts",
        sa.Column("fingerprint", sa.String(32), primary_key=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "notify_incidents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("acked_at", sa.Float),
        sa.Column("resolved_at", sa.Float),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_notify_incidents_state", "notify_incidents", ["state"])
    op.create_index("ix_notify_incidents_opened_at", "notify_incidents", ["opened_at"])
    op.create_table(
        "notify_silences",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("notification_key", sa.String(40), nullable=False),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("integration", sa.String(80), nullable=False),
        sa.Column("incident_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.UniqueConstraint("key", name="uq_notify_outbox_key"),
    )
    op.create_index("ix_notify_outbox_receiver", "notify_outbox", ["receiver"])
    op.create_index("ix_notify_outbox_incident_id", "notify_outbox", ["incident_id"])
    op.create_index("ix_notify_outbox_created_at", "notify_outbox", ["created_at"])
    op.create_index("ix_notify_outbox_due", "notify_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "notify_episodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("alertname", sa.String(200), nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("incident_id", sa.String(40)),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.UniqueConstraint("fingerprint", "starts_at", name="uq_notify_episodes_fp_start"),
    )
    op.create_index("ix_notify_episodes_alertname", "notify_episodes", ["alertname"])
    op.create_index("ix_notify_episodes_starts_at", "notify_episodes", ["starts_at"])
    op.create_table(
        "notify_objects",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "notify_objects",
        "notify_episodes",
        "notify_outbox",
        "notify_silences",
        "notify_incidents",
        "notify_alerts",
    ):
        op.drop_table(table)
