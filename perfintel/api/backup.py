"""Online snapshots of the data directory: ``POST /api/v1/admin/snapshot``.

Like Prometheus's ``/api/v1/admin/tsdb/snapshot``: the answer names a new
directory ``<data_dir>/snapshots/<name>/`` holding a consistent copy of the
sample store (``samples/``, see ``DuckDBStore.snapshot``), of the online
anomaly detector's saved state (``analysis/``) and of the alerting state
(``alerting.db``, when it is the default SQLite file: alerts, incidents,
silences, escalations and the outbox), written while ingest goes on.
The directory is a data directory: ``perfintel serve --data-dir`` opens it
(``docs/backup.md``).
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from perfintel.alerting.state.database import ALERTING_DB, copy_sqlite
from perfintel.api.auth import require
from perfintel.errors import BadInputError, StorageError
from perfintel.storage.base import SnapshotWriter

router = APIRouter(tags=["admin"])

SNAPSHOTS_DIR = "snapshots"


def _snapshot_name(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(8)


def _take_snapshot(store: SnapshotWriter, data_dir: Path, name: str) -> dict[str, object]:
    target = data_dir / SNAPSHOTS_DIR / name
    report = store.snapshot(target / "samples")
    analysis = data_dir / "analysis"
    if analysis.is_dir():  # files replaced atomically by the detector: a copy is never torn
        try:
            shutil.copytree(analysis, target / "analysis")
        except OSError as exc:
            raise StorageError(f"cannot copy {analysis} into the snapshot: {exc}") from exc
    alerting = data_dir / ALERTING_DB
    if alerting.is_file():  # a PostgreSQL alerting database is backed up with pg_dump instead
        copy_sqlite(alerting, target / ALERTING_DB)
    return {
        "name": name,
        "path": str(target.resolve()),
        "bytes": report.bytes,
        "series": report.series,
        "samplesInWal": report.samples_in_wal,
        "seconds": round(report.seconds, 3),
    }


@router.post(
    "/api/v1/admin/snapshot",
    dependencies=[Depends(require("admin"))],
    summary="Write a consistent snapshot of the data directory to <data_dir>/snapshots/<name>/",
)
async def snapshot(request: Request) -> dict[str, object]:
    store = request.app.state.store
    if not isinstance(store, SnapshotWriter):
        raise BadInputError(f"this store ({type(store).__name__}) cannot write snapshots")
    data_dir = Path(request.app.state.settings.data_dir)
    name = _snapshot_name(time.time())
    data = await run_in_threadpool(_take_snapshot, store, data_dir, name)
    return {"status": "success", "data": data}
