"""The notification pipeline's tables (Alembic branch ``notify``).

- ``notify_alerts``: the current record of each alert by fingerprint (JSON).
- ``notify_incidents``: every incident (JSON body plus columns to filter on).
- ``notify_silences``: silences, kept five days past their end like Alertmanager.
- ``notify_outbox``: one row per notification and integration, unique on its
  idempotency key; ``pending`` rows are delivered (and retried) by the outbox
  worker, ``sent``/``failed``/``skipped`` rows are the notification log.
- ``notify_episodes``: alert history, one row per resolved firing episode.
- ``notify_objects``: receivers and escalation policies created through the
  API, and small state (``meta``: the learned dependency graph, the signing key).
"""

from __future__ import annotations

import sqlalchemy as sa

from perfintel.alerting.state.database import metadata

alerts = sa.Table(
    "notify_alerts",
    metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

incidents = sa.Table(
    "notify_incidents",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("opened_at", sa.Float, nullable=False, index=True),
    sa.Column("acked_at", sa.Float),
    sa.Column("resolved_at", sa.Float),
    sa.Column("data", sa.JSON, nullable=False),
)

silences = sa.Table(
    "notify_silences",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

outbox = sa.Table(
    "notify_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(80), nullable=False, unique=True),
    sa.Column("notification_key", sa.String(40), nullable=False),
    sa.Column("receiver", sa.String(200), nullable=False, index=True),
    sa.Column("integration", sa.String(80), nullable=False),
    sa.Column("incident_id", sa.String(40), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("sent_at", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_notify_outbox_due", "status", "next_attempt_at"),
)

episodes = sa.Table(
    "notify_episodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("alertname", sa.String(200), nullable=False, index=True),
    sa.Column("starts_at", sa.Float, nullable=False, index=True),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("incident_id", sa.String(40)),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.UniqueConstraint("fingerprint", "starts_at", name="uq_notify_episodes_fp_start"),
)

objects = sa.Table(
    "notify_objects",
    metadata,
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)
