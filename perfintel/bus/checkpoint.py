"""Per-shard checkpoints of a bus worker, in the shared state database.

One row of ``bus_checkpoints`` per (group, shard): the id of the last stream
entry applied, the recent batch ids applied (so a batch published twice is
applied once) and the last *full* detector state
(``OnlineAnomalyDetection.dump_state`` bytes). Between full states a worker
writes *parts*: rows of ``bus_checkpoint_parts`` holding only the series whose
state changed since the previous checkpoint (``dump_state(rows)``); the shard's
state is the full state with its parts applied in order. A full state deletes
the parts before it.

States are stored zlib-compressed (level 1; a packed detector state shrinks to a
third or less, and writing it is most of a checkpoint's cost): workers dump them
compressed (``dump_state(compress=True)``), other states are compressed here. A
stored state is returned as stored; ``restore_state`` reads both forms, so rows
saved before compression still load.

Every save — a part or a full state — updates the shard's row (entry id, batch
ids) in the same transaction, fenced by the shard lease's token: the stream
position and the state it belongs to are committed together, and a worker that
lost the shard cannot overwrite its successor's state. Checkpoints written
before parts existed are a row without parts and load as before.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from perfintel.alerting.state.database import metadata
from perfintel.alerting.state.leases import Lease, fence
from perfintel.errors import StorageError
from perfintel.performance.online import COMPRESSED


def _pack(state: bytes) -> bytes:
    return state if state.startswith(COMPRESSED) else COMPRESSED + zlib.compress(state, 1)


def unpacked(state: bytes) -> bytes:
    """A loaded state as it was given to ``save`` (for states other than a detector's,
    whose ``restore_state`` reads the compressed form itself)."""
    if not state.startswith(COMPRESSED):
        return state  # saved before states were compressed
    try:
        return zlib.decompress(memoryview(state)[len(COMPRESSED) :])
    except zlib.error as exc:
        raise StorageError(f"checkpoint state: {exc}") from exc


checkpoints = sa.Table(
    "bus_checkpoints",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("last_entry", sa.String(40), nullable=False),
    sa.Column("applied", sa.JSON, nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
    sa.Column("saved_at", sa.Float, nullable=False),
)

checkpoint_parts = sa.Table(
    "bus_checkpoint_parts",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("state", sa.LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class Checkpoint:
    last_entry: str
    applied: list[str]
    #: a full state; with ``partial`` on save, the changed series only (a part)
    state: bytes
    #: on load: the parts written after ``state``, oldest first
    parts: list[bytes] = field(default_factory=list)
    partial: bool = False


class CheckpointStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, name: str) -> Checkpoint | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name)).first()
                parts = conn.execute(
                    sa.select(checkpoint_parts.c.state)
                    .where(checkpoint_parts.c.name == name)
                    .order_by(checkpoint_parts.c.seq)
                ).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"checkpoint {name!r}: {exc}") from exc
        if row is None:
            return None
        return Checkpoint(
            row.last_entry,
            list(row.applied),
            bytes(row.state),
            [bytes(p.state) for p in parts],
        )

    def save(self, name: str, lease: Lease, cp: Checkpoint) -> int:
        """Write ``cp`` (a full state, or a part when ``cp.partial``) with its stream
        position, atomically; ``LeaseLostError`` when ``lease`` is no longer current.
        Returns the bytes stored (compressed)."""
        state = _pack(cp.state)
        row: dict[str, object] = {
            "token": lease.token,
            "last_entry": cp.last_entry,
            "applied": cp.applied,
            "saved_at": time.time(),
        }
        if not cp.partial:
            row["state"] = state
        try:
            with self.engine.begin() as conn:
                fence(conn, lease)
                n = conn.execute(
                    checkpoints.update().where(checkpoints.c.name == name).values(**row)
                ).rowcount
                if not n:
                    if cp.partial:
                        raise StorageError(f"checkpoint {name!r}: a part needs a full state first")
                    conn.execute(checkpoints.insert().values(name=name, **row))
                parts = checkpoint_parts.c
                if cp.partial:
                    last = conn.execute(
                        sa.select(sa.func.max(parts.seq)).where(parts.name == name)
                    ).scalar()
                    conn.execute(
                        checkpoint_parts.insert().values(
                            name=name, seq=(last or 0) + 1, state=state
                        )
                    )
                else:
                    conn.execute(checkpoint_parts.delete().where(parts.name == name))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"checkpoint {name!r}: {exc}") from exc
        return len(state)
