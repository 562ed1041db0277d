"""The empty schema both alerting branches start from.

Revision ID: base_0001
Revises:
"""

from __future__ import annotations

revision = "base_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
