"""Per-shard checkpoints of a bus worker, in the shared state database.

One row of ``bus_checkpoints`` per (group, shard): the online detector's
state (``OnlineAnomalyDetection.dump_state`` bytes), the id of the last
stream entry applied to it and the recent batch ids applied (so a batch
published twice is applied once). A checkpoint is written under the shard's
lease, fenced by its token in the same transaction: a worker that lost the
shard cannot overwrite its successor's state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from perfintel.alerting.state.database import metadata
from perfintel.alerting.state.leases import Lease, fence
from perfintel.errors import StorageError

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


@dataclass(frozen=True)
class Checkpoint:
    last_entry: str
    applied: list[str]
    state: bytes


class CheckpointStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, name: str) -> Checkpoint | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name)).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"checkpoint {name!r}: {exc}") from exc
        if row is None:
            return None
        return Checkpoint(row.last_entry, list(row.applied), bytes(row.state))

    def save(self, name: str, lease: Lease, cp: Checkpoint) -> None:
        """Write ``cp``; ``LeaseLostError`` when ``lease`` is no longer current."""
        row = {
            "token": lease.token,
            "last_entry": cp.last_entry,
            "applied": cp.applied,
            "state": cp.state,
            "saved_at": time.time(),
        }
        try:
            with self.engine.begin() as conn:
                fence(conn, lease)
                n = conn.execute(
                    checkpoints.update().where(checkpoints.c.name == name).values(**row)
                ).rowcount
                if not n:
                    conn.execute(checkpoints.insert().values(name=name, **row))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"checkpoint {name!r}: {exc}") from exc
