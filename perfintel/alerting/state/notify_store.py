"""SQL state of the notification pipeline: load it at start, save what each tick changed.

``save`` writes the changed alerts, incidents, silences, learned dependencies,
resolved episodes and the tick's notifications (one outbox row per integration)
in ONE transaction, so after a crash either the decision and its notifications
are both there, or neither is and the next tick makes the same decision again
with the same idempotency keys. Outbox rows are unique on their key: inserting
one twice is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from perfintel.alerting.dispatcher import INCIDENT_RETENTION, AlertRecord, NotifyCore
from perfintel.alerting.incidents import Incident
from perfintel.alerting.matchers import LabelMatcher
from perfintel.alerting.model import Alert
from perfintel.alerting.notification import Notification
from perfintel.alerting.notify_config import Integration
from perfintel.alerting.silences import Silence
from perfintel.alerting.state import notify_tables as t
from perfintel.alerting.state.database import dialect_insert
from perfintel.alerting.state.leases import Lease, fence
from perfintel.errors import StorageError
from perfintel.model import label_set


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    receiver: str
    integration: str
    incident_id: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    sent_at: float | None
    last_error: str | None
    payload: Mapping[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotencyKey": self.key,
            "receiver": self.receiver,
            "integration": self.integration,
            "incident": self.incident_id,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "sentAt": self.sent_at,
            "nextAttemptAt": self.next_attempt_at if self.status == "pending" else None,
            "lastError": self.last_error,
        }


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"alerting state database: {exc}") from exc

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


class NotifyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: when set, every state write checks this lease is still current (``leases.fence``)
        self.lease: Lease | None = None

    def _fence(self, conn: Connection) -> None:
        if self.lease is not None:
            fence(conn, self.lease)

    # -- loading ---------------------------------------------------------------------

    @_guard
    def load(self, core: NotifyCore, now: float) -> None:
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(t.alerts.c.data)):
                rec = _record(row.data)
                core.alerts[rec.fingerprint] = rec
            recent = sa.or_(
                t.incidents.c.state != "resolved",
                t.incidents.c.resolved_at >= now - INCIDENT_RETENTION,
            )
            for row in conn.execute(sa.select(t.incidents.c.data).where(recent)):
                inc = Incident.from_dict(row.data)
                core.incidents[inc.id] = inc
            for row in conn.execute(sa.select(t.silences.c.data)):
                s = _silence(row.data)
                core.silences[s.id] = s
            graph = conn.execute(
                sa.select(t.objects.c.data).where(
                    t.objects.c.kind == "meta", t.objects.c.name == "graph"
                )
            ).scalar()
            if graph:
                core.graph.load(graph)

    # -- saving ----------------------------------------------------------------------

    @_guard
    def save(
        self,
        core: NotifyCore,
        notifications: Sequence[Notification],
        integrations: Callable[[str], Sequence[Integration]],
        now: float,
    ) -> int:
        """Persist ``core.changes`` and the notifications; returns the outbox rows added."""
        ch = core.changes
        added = 0
        with self.engine.begin() as conn:
            self._fence(conn)
            rows = [
                {
                    "fingerprint": fp,
                    "updated_at": core.alerts[fp].updated_at,
                    "data": _record_dict(core.alerts[fp]),
                }
                for fp in ch.alerts
                if fp in core.alerts
            ]
            _upsert(conn, t.alerts, rows, ["fingerprint"])
            if ch.forgotten_alerts:
                conn.execute(
                    t.alerts.delete().where(t.alerts.c.fingerprint.in_(list(ch.forgotten_alerts)))
                )
            rows = [_incident_row(core.incidents[i]) for i in ch.incidents if i in core.incidents]
            _upsert(conn, t.incidents, rows, ["id"])
            rows = [
                {
                    "id": s,
                    "ends_at": core.silences[s].ends_at,
                    "data": _silence_dict(core.silences[s]),
                }
                for s in ch.silences
                if s in core.silences
            ]
            _upsert(conn, t.silences, rows, ["id"])
            if ch.graph:
                self._put_object(conn, "meta", "graph", core.graph.to_dict(), now)
            episodes = [
                {
                    "fingerprint": rec.fingerprint,
                    "alertname": rec.alert.name,
                    "starts_at": rec.alert.starts_at or rec.received_at,
                    "ends_at": rec.alert.ends_at if rec.alert.ends_at is not None else at,
                    "incident_id": rec.incident,
                    "labels": dict(rec.alert.labels),
                }
                for rec, at in ch.episodes
            ]
            _insert_new(conn, t.episodes, episodes, ["fingerprint", "starts_at"])
            outbox = []
            for n in notifications:
                payload = n.to_dict()
                for integ in integrations(n.receiver):
                    if n.kind == "resolved" and not integ.send_resolved:
                        continue
                    outbox.append(
                        {
                            "key": f"{n.key}:{integ.name}",
                            "notification_key": n.key,
                            "receiver": n.receiver,
                            "integration": integ.name,
                            "incident_id": n.incident_id,
                            "kind": n.kind,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                            "payload": payload,
                        }
                    )
            added = _insert_new(conn, t.outbox, outbox, ["key"])
        ch.clear()
        return added

    # -- outbox ----------------------------------------------------------------------

    @_guard
    def due(self, now: float, limit: int = 32) -> list[OutboxRow]:
        q = (
            sa.select(t.outbox)
            .where(t.outbox.c.status == "pending", t.outbox.c.next_attempt_at <= now)
            .order_by(t.outbox.c.next_attempt_at, t.outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_outbox(r) for r in conn.execute(q)]

    @_guard
    def next_attempt(self) -> float | None:
        q = sa.select(sa.func.min(t.outbox.c.next_attempt_at)).where(t.outbox.c.status == "pending")
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar()
        return None if value is None else float(value)

    @_guard
    def mark(
        self,
        row_id: int,
        *,
        status: str,
        attempts: int,
        next_attempt_at: float,
        error: str | None = None,
        sent_at: float | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            self._fence(conn)
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.id == row_id)
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt_at=next_attempt_at,
                    last_error=error,
                    sent_at=sent_at,
                )
            )

    @_guard
    def log(
        self,
        *,
        receiver: str | None = None,
        incident: str | None = None,
        status: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        q = sa.select(t.outbox)
        if receiver:
            q = q.where(t.outbox.c.receiver == receiver)
        if incident:
            q = q.where(t.outbox.c.incident_id == incident)
        if status:
            q = q.where(t.outbox.c.status == status)
        if since is not None:
            q = q.where(t.outbox.c.created_at >= since)
        q = q.order_by(t.outbox.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_outbox(r) for r in conn.execute(q)]

    # -- history ---------------------------------------------------------------------

    @_guard
    def incidents(
        self, *, state: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        q = sa.select(t.incidents.c.data)
        if state:
            q = q.where(t.incidents.c.state == state)
        if since is not None:
            q = q.where(t.incidents.c.opened_at >= since)
        q = q.order_by(t.incidents.c.opened_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r.data) for r in conn.execute(q)]

    @_guard
    def incident(self, incident_id: str) -> Incident | None:
        with self.engine.connect() as conn:
            data = conn.execute(
                sa.select(t.incidents.c.data).where(t.incidents.c.id == incident_id)
            ).scalar()
        return None if data is None else Incident.from_dict(data)

    @_guard
    def analytics(self, since: float, until: float | None = None, top: int = 10) -> dict[str, Any]:
        """Noisiest rules, flap counts, time to acknowledge, notifications per incident."""
        until = time.time() if until is None else until
        e, o, i = t.episodes, t.outbox, t.incidents
        with self.engine.connect() as conn:
            noisy = conn.execute(
                sa.select(e.c.alertname, sa.func.count().label("n"))
                .where(e.c.starts_at >= since, e.c.starts_at < until)
                .group_by(e.c.alertname)
                .order_by(sa.text("n DESC"))
                .limit(top)
            ).all()
            incs = [
                Incident.from_dict(r.data)
                for r in conn.execute(
                    sa.select(i.c.data).where(i.c.opened_at >= since, i.c.opened_at < until)
                )
            ]
            per_incident: dict[str, int] = dict(
                conn.execute(
                    sa.select(o.c.incident_id, sa.func.count())
                    .where(o.c.created_at >= since, o.c.created_at < until)
                    .group_by(o.c.incident_id)
                ).all()
            )
        acks = sorted(
            x.acked_at - x.opened_at
            for x in incs
            if x.acked_at is not None and not x.acked_by.startswith("manual:")
        )
        counts = [per_incident.get(x.id, 0) for x in incs]
        flaps: dict[str, int] = {}
        for x in incs:
            if x.reopened:
                name = x.title.split(" ", 1)[0]
                flaps[name] = flaps.get(name, 0) + x.reopened
        return {
            "since": since,
            "until": until,
            "incidents": len(incs),
            "noisiestRules": [{"alertname": a, "episodes": n} for a, n in noisy],
            "flapCounts": [
                {"alertname": a, "reopened": n}
                for a, n in sorted(flaps.items(), key=lambda kv: -kv[1])[:top]
            ],
            "timeToAcknowledge": {
                "count": len(acks),
                "median": acks[len(acks) // 2] if acks else None,
                "max": acks[-1] if acks else None,
            },
            "notificationsPerIncident": {
                "total": sum(per_incident.values()),
                "mean": sum(counts) / len(counts) if counts else None,
                "max": max(counts) if counts else None,
            },
        }

    # -- API objects -----------------------------------------------------------------

    @_guard
    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.objects.c.name, t.objects.c.data).where(t.objects.c.kind == kind)
            )
            return {r.name: dict(r.data) for r in rows}

    @_guard
    def put_object(self, kind: str, name: str, data: Mapping[str, Any], now: float) -> None:
        with self.engine.begin() as conn:
            self._put_object(conn, kind, name, data, now)

    @_guard
    def load_object(self, kind: str, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            data = conn.execute(
                sa.select(t.objects.c.data).where(
                    t.objects.c.kind == kind, t.objects.c.name == name
                )
            ).scalar()
        return None if data is None else dict(data)

    @_guard
    def save_summary(self, data: Mapping[str, Any], now: float) -> None:
        """The notifier's active summary, for the processes that do not notify (fenced)."""
        with self.engine.begin() as conn:
            self._fence(conn)
            self._put_object(conn, "meta", "summary", data, now)

    @_guard
    def delete_object(self, kind: str, name: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                t.objects.delete().where(t.objects.c.kind == kind, t.objects.c.name == name)
            )
            return bool(res.rowcount)

    def _put_object(
        self, conn: Connection, kind: str, name: str, data: Mapping[str, Any], now: float
    ) -> None:
        _upsert(
            conn,
            t.objects,
            [{"kind": kind, "name": name, "updated_at": now, "data": dict(data)}],
            ["kind", "name"],
        )


# -- helpers --------------------------------------------------------------------------


def _upsert(
    conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: list[str]
) -> None:
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    cols = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=cols), list(rows))


def _insert_new(
    conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], keys: list[str]
) -> int:
    if not rows:
        return 0
    stmt = dialect_insert(conn, table).on_conflict_do_nothing(index_elements=keys)
    added = 0
    for row in rows:  # rowcount per row: executemany does not report it on every driver
        added += conn.execute(stmt, row).rowcount or 0
    return added


def _alert_dict(a: Alert) -> dict[str, Any]:
    return {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "generator_url": a.generator_url,
        "explanation": dict(a.explanation),
    }


def _record_dict(rec: AlertRecord) -> dict[str, Any]:
    return {
        "alert": _alert_dict(rec.alert),
        "received_at": rec.received_at,
        "updated_at": rec.updated_at,
        "incident": rec.incident,
        "closed_start": rec.closed_start,
    }


def _record(d: Mapping[str, Any]) -> AlertRecord:
    a = d["alert"]
    alert = Alert(
        label_set(a["labels"]),
        annotations=dict(a["annotations"]),
        starts_at=a["starts_at"],
        ends_at=a["ends_at"],
        generator_url=a["generator_url"],
        explanation=dict(a["explanation"]),
    )
    return AlertRecord(
        alert, d["received_at"], d["updated_at"], d["incident"], d.get("closed_start")
    )


def _incident_row(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "state": inc.state,
        "opened_at": inc.opened_at,
        "acked_at": inc.acked_at,
        "resolved_at": inc.resolved_at,
        "data": inc.to_dict(),
    }


def _silence_dict(s: Silence) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [[m.name, m.op, m.value] for m in s.matchers],
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "created_by": s.created_by,
        "comment": s.comment,
        "updated_at": s.updated_at,
    }


def _silence(d: Mapping[str, Any]) -> Silence:
    return Silence(
        id=d["id"],
        matchers=tuple(LabelMatcher(n, op, v) for n, op, v in d["matchers"]),
        starts_at=d["starts_at"],
        ends_at=d["ends_at"],
        created_by=d["created_by"],
        comment=d["comment"],
        updated_at=d["updated_at"],
    )


def _outbox(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        key=r.key,
        receiver=r.receiver,
        integration=r.integration,
        incident_id=r.incident_id,
        kind=r.kind,
        status=r.status,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        created_at=r.created_at,
        sent_at=r.sent_at,
        last_error=r.last_error,
        payload=r.payload,
    )
