"""The rule engine's tables: alert states and API-defined rule groups.

Revision ID: rules_0001
Revises: base_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rules_0001"
down_revision = "base_0001"
branch_labels = ("rules",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_alert_state",
        sa.Column("group_key", sa.String(1024), nullable=False),
        sa.Column("rule_name", sa.String(512), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float),
        sa.Column("resolved_at", sa.Float),
        sa.Column("keep_firing_since", sa.Float),
        sa.Column("last_sent_at", sa.Float),
        sa.Column("flapping_since", sa.Float),
        sa.Column("flap_started_at", sa.Float),
        sa.Column("value", sa.Float),
        sa.Column("changes", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint(
            "group_key", "rule_name", "fingerprint", name="pk_rule_alert_state"
        ),
    )
    op.create_table(
        "rule_api_group",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", name="pk_rule_api_group"),
    )


def downgrade() -> None:
    op.drop_table("rule_api_group")
    op.drop_table("rule_alert_state")
