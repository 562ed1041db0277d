"""The alerting database: one SQLAlchemy engine, schema kept by Alembic migrations.

SQLite (a file in the data directory) by default; PostgreSQL when
``alerting.database_url`` names one (``postgresql+psycopg://...``). Opening the
database brings its schema up to date (``alembic upgrade heads``); on
PostgreSQL an advisory lock makes concurrent starters migrate one at a time.

Migrations live in ``state/migrations/versions``. The rule engine and the
notification pipeline keep their tables on two Alembic branches (``rules`` and
``notify``) that both start from the empty ``base`` revision, so each half
adds migrations without ordering itself against the other. Every table is
declared on ``metadata`` below.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from perfintel.errors import StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger(__name__)

# Stable constraint names, so migrations can name what they alter on both dialects.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_MIGRATION_LOCK = 947_001  # PostgreSQL advisory lock key held while migrating


#: The default alerting database's file name in the data directory.
ALERTING_DB = "alerting.db"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir) / ALERTING_DB}"


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's online backup: the writer goes on)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot copy the alerting database {source}: {exc}") from exc
    finally:
        src.close()


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated to the newest revision."""
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            db = engine.url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                # a data directory nothing else created yet (samples in another store)
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        migrate(engine)
        return engine
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"alerting database {_redacted(url)}: {exc}") from exc


def migrate(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        before = _revisions(conn)
        command.upgrade(cfg, "heads")
        after = _revisions(conn)
    # one line for what changed, instead of Alembic's line (and docstring) per revision
    if after != before:
        log.info(
            "alerting database %s: schema %s -> %s",
            engine.url.render_as_string(hide_password=True),
            ", ".join(before) or "empty",
            ", ".join(after),
        )


def _revisions(conn: Connection) -> list[str]:
    return sorted(MigrationContext.configure(conn).get_current_heads())


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # WAL: readers never block the writer; synchronous=FULL: a commit survives power loss.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _redacted(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """``INSERT`` of the connection's dialect (both have ``ON CONFLICT`` clauses)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
