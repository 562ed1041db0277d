"""Alerts handed from rule evaluators to the notifier through the shared database.

With several processes on one alerting database, each evaluates the rule
groups of its rule shards (``perfintel.alerting.rules.shards``) but only the
holder of the ``notifier`` lease notifies. A process that does not hold it
puts the alerts its groups send into ``alert_inbox`` (one row per send, the
alerts as JSON); the notifier takes the oldest rows every dispatcher round,
fenced by its lease token in the same transaction, and adds them to its core.

Bounded: rows older than ``max_age_s`` are dropped when new ones are put (the
rule engine resends firing alerts every ``resend_delay``, so an old row holds
nothing a newer one does not), and one round takes at most ``limit`` rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from perfintel.alerting.model import Alert
from perfintel.alerting.state.database import metadata
from perfintel.alerting.state.leases import Lease, fence
from perfintel.errors import StorageError

alert_inbox = sa.Table(
    "alert_inbox",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("alerts", sa.Text, nullable=False),
    sa.Index("alert_inbox_received_at", "received_at"),
)


def _dumps(alerts: Sequence[Alert]) -> str:
    doc = [
        {
            "l": [list(p) for p in a.labels],
            "a": dict(a.annotations),
            "s": a.starts_at,
            "e": a.ends_at,
            "g": a.generator_url,
            "x": dict(a.explanation),
        }
        for a in alerts
    ]
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(doc, option=opts, default=str).decode()


def _loads(text: str) -> list[Alert]:
    out = []
    for d in orjson.loads(text):
        out.append(
            Alert(
                labels=tuple((str(k), str(v)) for k, v in d["l"]),
                annotations={str(k): str(v) for k, v in d["a"].items()},
                starts_at=float(d["s"]),
                ends_at=None if d["e"] is None else float(d["e"]),
                generator_url=str(d["g"]),
                explanation=d["x"],
            )
        )
    return out


class AlertInbox:
    def __init__(
        self,
        engine: Engine,
        *,
        max_age_s: float = 3600.0,
        limit: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.limit = limit
        self.clock = clock

    def put(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        t, now = alert_inbox, self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(t.delete().where(t.c.received_at < now - self.max_age_s))
                conn.execute(t.insert().values(received_at=now, alerts=_dumps(alerts)))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"alert inbox: {exc}") from exc

    def take(self, lease: Lease) -> list[Alert]:
        """The oldest alerts put (at most ``limit`` rows), removed; ``LeaseLostError`` when
        ``lease`` (the notifier's) is not current."""
        t = alert_inbox
        try:
            with self.engine.begin() as conn:
                fence(conn, lease)
                rows: list[Any] = list(
                    conn.execute(sa.select(t.c.id, t.c.alerts).order_by(t.c.id).limit(self.limit))
                )
                if rows:
                    conn.execute(t.delete().where(t.c.id.in_([r.id for r in rows])))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"alert inbox: {exc}") from exc
        return [a for r in rows for a in _loads(r.alerts)]
