"""The rule engine's tables: alert states (restored after a restart) and API-defined rule groups.

Schema (Alembic branch ``rules``, migrations ``rules_000N_*``)::

    rule_alert_state(group_key, rule_name, fingerprint)   -- primary key
        labels TEXT (JSON [[name, value], ...]), annotations TEXT (JSON),
        explanation TEXT (JSON), state ('pending'|'firing'|'inactive'),
        active_at, fired_at, resolved_at, keep_firing_since, last_sent_at,
        flapping_since, flap_started_at (Unix seconds, NULL = none),
        value, changes TEXT (JSON list of Unix seconds), updated_at

    rule_api_group(namespace, name)                        -- primary key
        source TEXT (the group as YAML), updated_at

Only alerts whose state changed are written after an evaluation (the
``dirty`` flag of ``ActiveAlert``), so a steady firing alert costs nothing.
Every method is one transaction; SQLAlchemy errors become ``StorageError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from perfintel.alerting.model import fingerprint
from perfintel.alerting.rules.lifecycle import ActiveAlert
from perfintel.alerting.state.database import metadata
from perfintel.alerting.state.leases import Lease, fence
from perfintel.errors import LeaseLostError, StorageError
from perfintel.model import LabelSet

rule_alert_state = sa.Table(
    "rule_alert_state",
    metadata,
    sa.Column("group_key", sa.String(1024), primary_key=True),
    sa.Column("rule_name", sa.String(512), primary_key=True),
    sa.Column("fingerprint", sa.String(16), primary_key=True),
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
)

rule_api_group = sa.Table(
    "rule_api_group",
    metadata,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def _dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def _row(group_key: str, rule_name: str, a: ActiveAlert, now: float) -> dict[str, Any]:
    return {
        "group_key": group_key,
        "rule_name": rule_name,
        "fingerprint": fingerprint(a.labels),
        "labels": _dumps([list(p) for p in a.labels]),
        "annotations": _dumps(dict(a.annotations)),
        "explanation": _dumps(dict(a.explanation)),
        "state": a.state,
        "active_at": a.active_at,
        "fired_at": a.fired_at,
        "resolved_at": a.resolved_at,
        "keep_firing_since": a.keep_firing_since,
        "last_sent_at": a.last_sent_at,
        "flapping_since": a.flapping_since,
        "flap_started_at": a.flap_started_at,
        "value": a.value if a.value == a.value else None,
        "changes": _dumps(list(a.changes)),
        "updated_at": now,
    }


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


class SqlRuleState:
    """Alert states and API rule groups in the alerting database (an ``AlertStateStore``)."""

    def __init__(
        self, engine: Engine, lease_of: Callable[[str], Lease | None] | None = None
    ) -> None:
        self.engine = engine
        #: with rule shards: the lease a group's states are written under (fenced by its
        #: token in the same transaction; ``None``: the group is not this process's now)
        self.lease_of = lease_of

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"alerting database: {exc}") from exc

    # -- alert states --

    def load(self, group_key: str) -> dict[str, list[ActiveAlert]]:
        t = rule_alert_state
        with self._tx() as conn:
            rows = conn.execute(sa.select(t).where(t.c.group_key == group_key)).mappings().all()
        out: dict[str, list[ActiveAlert]] = {}
        for r in rows:
            labels: LabelSet = tuple((str(k), str(v)) for k, v in orjson.loads(r["labels"]))
            out.setdefault(r["rule_name"], []).append(
                ActiveAlert(
                    labels=labels,
                    annotations=orjson.loads(r["annotations"]),
                    state=r["state"],
                    active_at=float(r["active_at"]),
                    value=float(r["value"]) if r["value"] is not None else float("nan"),
                    fired_at=_float(r["fired_at"]),
                    resolved_at=_float(r["resolved_at"]),
                    last_sent_at=_float(r["last_sent_at"]),
                    keep_firing_since=_float(r["keep_firing_since"]),
                    explanation=orjson.loads(r["explanation"]),
                    changes=[float(x) for x in orjson.loads(r["changes"])],
                    flapping_since=_float(r["flapping_since"]),
                    flap_started_at=_float(r["flap_started_at"]),
                    dirty=False,
                )
            )
        return out

    def save(
        self,
        group_key: str,
        updates: Mapping[str, tuple[Sequence[ActiveAlert], Sequence[LabelSet]]],
    ) -> None:
        """Per rule: write (replace) the changed alerts, delete the others; one transaction."""
        t = rule_alert_state
        now = time.time()
        keys: list[tuple[str, str]] = []
        rows: list[dict[str, Any]] = []
        for rule_name, (changed, deleted) in updates.items():
            keys.extend((rule_name, fingerprint(k)) for k in deleted)
            for a in changed:
                row = _row(group_key, rule_name, a, now)
                keys.append((rule_name, row["fingerprint"]))
                rows.append(row)
        lease = None
        if self.lease_of is not None:
            lease = self.lease_of(group_key)
            if lease is None:
                raise LeaseLostError(f"rule group {group_key}: its shard is not held here")
        with self._tx() as conn:
            if lease is not None:
                fence(conn, lease)
            for i in range(0, len(keys), 400):  # a few statements, however many rules changed
                conn.execute(
                    t.delete().where(
                        t.c.group_key == group_key,
                        sa.tuple_(t.c.rule_name, t.c.fingerprint).in_(keys[i : i + 400]),
                    )
                )
            if rows:
                conn.execute(t.insert(), rows)

    def drop_group(self, group_key: str) -> None:
        t = rule_alert_state
        with self._tx() as conn:
            conn.execute(t.delete().where(t.c.group_key == group_key))

    def group_keys(self) -> list[str]:
        t = rule_alert_state
        with self._tx() as conn:
            return [r[0] for r in conn.execute(sa.select(t.c.group_key).distinct())]

    # -- API-defined rule groups --

    def api_groups(self, namespace: str | None = None) -> list[tuple[str, str, str]]:
        """``(namespace, name, YAML source)`` of stored groups, by namespace then name."""
        t = rule_api_group
        q = sa.select(t.c.namespace, t.c.name, t.c.source).order_by(t.c.namespace, t.c.name)
        if namespace is not None:
            q = q.where(t.c.namespace == namespace)
        with self._tx() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(q)]

    def put_api_group(self, namespace: str, name: str, source: str) -> None:
        t = rule_api_group
        with self._tx() as conn:
            conn.execute(t.delete().where(t.c.namespace == namespace, t.c.name == name))
            conn.execute(
                t.insert().values(
                    namespace=namespace, name=name, source=source, updated_at=time.time()
                )
            )

    def delete_api_group(self, namespace: str, name: str | None = None) -> int:
        t = rule_api_group
        q = t.delete().where(t.c.namespace == namespace)
        if name is not None:
            q = q.where(t.c.name == name)
        with self._tx() as conn:
            return int(conn.execute(q).rowcount or 0)
