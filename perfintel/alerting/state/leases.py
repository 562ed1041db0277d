"""Leases with fencing tokens in the shared alerting database.

A lease is one row of ``leases``: ``name`` (``notifier``, ``rules:<shard>``,
``bus:<group>:<shard>``), the ``holder`` (a process id of the caller's
choosing), a ``token`` and ``expires_at``. At most one holder has an
unexpired lease; a holder renews it before ``ttl`` runs out, and anyone may
take an expired lease over, which increments the token. Every write made
under a lease checks, in its own transaction, that the token is still the
current one (``fence``): a holder that stalled past its TTL (GC pause,
partition) and was replaced gets ``LeaseLostError`` instead of writing over
its successor. On PostgreSQL the check locks the row (``FOR SHARE``), so a
takeover waits for a fenced write in flight to commit; on SQLite the
database's single writer serialises them.

Expiry compares the callers' clocks (``clock``, wall time by default): hosts
need clocks in step to well within the TTL (NTP).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from perfintel.alerting.state.database import dialect_insert, metadata
from perfintel.errors import LeaseLostError, StorageError

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    token: int
    expires_at: float


class LeaseManager:
    """Acquire, renew, release and fence leases held by ``holder``."""

    def __init__(
        self, engine: Engine, holder: str, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = ttl
        self.clock = clock

    def acquire(self, name: str) -> Lease | None:
        """The lease when this holder has it now (new, taken over, or renewed), else ``None``."""
        now = self.clock()
        exp = now + self.ttl
        try:
            with self.engine.begin() as conn:
                row = dict(name=name, holder=self.holder, token=1, expires_at=exp, acquired_at=now)
                ins = (
                    dialect_insert(conn, leases)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(leases.c.token)
                )
                if conn.execute(ins).first() is not None:
                    return Lease(name, self.holder, 1, exp)
                c = leases.c
                # ours and unexpired: renew (same token); expired (anyone's): take over (new token)
                renewed = conn.execute(
                    leases.update()
                    .where(c.name == name, c.holder == self.holder, c.expires_at >= now)
                    .values(expires_at=exp)
                ).rowcount
                if not renewed:
                    taken = conn.execute(
                        leases.update()
                        .where(c.name == name, c.expires_at < now)
                        .values(
                            holder=self.holder, token=c.token + 1, expires_at=exp, acquired_at=now
                        )
                    ).rowcount
                    if not taken:
                        return None
                token = conn.execute(sa.select(c.token).where(c.name == name)).scalar_one()
                return Lease(name, self.holder, int(token), exp)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"lease {name!r}: {exc}") from exc

    def renew(self, lease: Lease) -> Lease | None:
        """``lease`` extended by the TTL, or ``None`` when it was lost (expired and taken)."""
        now = self.clock()
        c = leases.c
        try:
            with self.engine.begin() as conn:
                n = conn.execute(
                    leases.update()
                    .where(c.name == lease.name, c.holder == self.holder, c.token == lease.token)
                    .values(expires_at=now + self.ttl)
                ).rowcount
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"lease {lease.name!r}: {exc}") from exc
        return Lease(lease.name, self.holder, lease.token, now + self.ttl) if n else None

    def release(self, lease: Lease) -> None:
        """Let the lease go at once (on shutdown), so a successor need not wait for the TTL."""
        c = leases.c
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    leases.update()
                    .where(c.name == lease.name, c.holder == self.holder, c.token == lease.token)
                    .values(expires_at=0.0)
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"lease {lease.name!r}: {exc}") from exc

    def holder_of(self, name: str) -> Lease | None:
        """The current unexpired lease on ``name`` (anyone's), for status pages."""
        c = leases.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leases).where(c.name == name)).first()
        if row is None or row.expires_at < self.clock():
            return None
        return Lease(row.name, row.holder, int(row.token), float(row.expires_at))

    def live(self, prefix: str) -> dict[str, Lease]:
        """The unexpired leases (anyone's) whose name starts with ``prefix``, by name: who
        holds which shard (``bus:<group>:``, ``rules:``), for status pages and tests. The
        prefix is literal (``_`` and ``%`` match themselves)."""
        c = leases.c
        now = self.clock()
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(leases).where(
                        c.name.startswith(prefix, autoescape=True), c.expires_at >= now
                    )
                ).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"leases {prefix!r}*: {exc}") from exc
        return {
            r.name: Lease(r.name, r.holder, int(r.token), float(r.expires_at))
            for r in sorted(rows, key=lambda r: r.name)
        }

    def count_live(self, prefix: str) -> int:
        """How many unexpired leases have a name starting with ``prefix``."""
        c = leases.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(leases)
                    .where(c.name.startswith(prefix, autoescape=True), c.expires_at >= self.clock())
                ).scalar_one()
            )


def fence(conn: Connection, lease: Lease) -> None:
    """Inside a write transaction: raise ``LeaseLostError`` unless ``lease`` is still current.

    The row stays locked (PostgreSQL) until the transaction ends, so no
    takeover commits between this check and the caller's writes."""
    q = sa.select(leases.c.token, leases.c.holder).where(leases.c.name == lease.name)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(read=True)
    row = conn.execute(q).first()
    if row is None or int(row.token) != lease.token or row.holder != lease.holder:
        raise LeaseLostError(
            f"lease {lease.name!r} token {lease.token} of {lease.holder!r} is stale "
            f"(now {None if row is None else (row.holder, int(row.token))})"
        )
