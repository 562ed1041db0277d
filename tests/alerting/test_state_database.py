"""The alerting database opens, migrates to every branch head, and does so again harmlessly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from perfintel.alerting.model import Alert, fingerprint
from perfintel.alerting.state.database import MIGRATIONS, default_url, open_database


def _heads() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def test_open_migrates_to_every_head_and_reopens(database_url: str) -> None:
    engine = open_database(database_url)
    with engine.connect() as conn:
        versions = {r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    engine.dispose()
    assert versions == _heads()
    again = open_database(database_url)  # already current: nothing to do, no error
    again.dispose()


def test_a_migration_is_one_log_line_and_a_current_schema_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newcomer's first start says what the schema became in one line, not Alembic's line
    and docstring per revision; later starts say nothing."""
    url = default_url(tmp_path)
    with caplog.at_level(logging.INFO):
        open_database(url).dispose()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("perfintel")]
    assert ours == [f"alerting database {url}: schema empty -> {', '.join(sorted(_heads()))}"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        open_database(url).dispose()
    assert not [r for r in caplog.records if r.name.startswith("perfintel")]


def test_the_default_database_makes_its_data_directory(tmp_path: Path) -> None:
    """A data directory nothing else created yet (the samples in another store, such as
    VictoriaMetrics) still gets its alerting database."""
    data_dir = tmp_path / "not" / "there"
    open_database(default_url(data_dir)).dispose()
    assert (data_dir / "alerting.db").is_file()


def test_fingerprint_is_alertmanagers() -> None:
    # Values from prometheus/common's model.LabelSet.Fingerprint() (FNV-1a 64).
    assert fingerprint({}) == "cbf29ce484222325"
    assert Alert.of({"alertname": "X", "a": "b"}).fingerprint == fingerprint(
        (("a", "b"), ("alertname", "X"))
    )
