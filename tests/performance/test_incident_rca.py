"""An incident's scope and time from its alerts; what moved with each cause."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError
from perfintel.model import label_set, parse_selector
from perfintel.performance.incident_rca import IncidentAnalyzer, incident_scope
from perfintel.storage.duckdb import DuckDBStore, StoreOptions


def test_scope_is_the_services_of_the_alerts_and_what_they_depend_on() -> None:
    alerts = [
        ({"alertname": "Slow", "service": "checkout", "instance": "api-1"}, 1000.0),
        ({"alertname": "Errors", "service": "cart", "instance": "cart-1"}, 990.5),
    ]
    scope = incident_scope(alerts, {"checkout": ["postgres"], "postgres": ["disk"], "x": ["y"]})
    assert scope.time_ms == 990_500  # when the first alert started
    assert scope.selector == '{service=~"cart|checkout|disk|postgres"}'
    parse_selector(scope.selector)
    assert scope.graph is not None and scope.graph.reachable_from("postgres") >= {"checkout"}


def test_scope_falls_back_to_hosts_and_escapes_values() -> None:
    scope = incident_scope([({"alertname": "Load", "host": "db.1+a"}, 5.0)])
    assert scope.selector == '{host=~"db\\\\.1\\\\+a"}' and scope.graph is None
    sel = parse_selector(scope.selector)
    assert sel.matches((("host", "db.1+a"),)) and not sel.matches((("host", "dbx1+a"),))


def test_no_scope_labels_or_no_alerts_is_bad_input() -> None:
    with pytest.raises(BadInputError):
        incident_scope([({"alertname": "Watchdog"}, 5.0)])
    with pytest.raises(BadInputError):
        incident_scope([])


def test_the_analyzer_over_a_real_store_gives_causes_root_and_co_movement(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "db", StoreOptions(background=False, wal_fsync=False))
    try:
        step = 60_000
        start = (int(time.time() * 1000) - 300 * step) // step * step  # inside the raw retention
        ts = np.arange(0, 240 * step, step, dtype=np.int64) + start
        rng = np.random.default_rng(3)
        pool = 10 + rng.normal(0, 0.5, ts.size)
        pool[200:] = 40
        api = 0.1 + rng.normal(0, 0.002, ts.size)
        api[202:] += 0.08
        for name, labels, v in (
            ("db_pool_in_use", {"service": "db", "instance": "db-1"}, pool),
            ("request_latency_seconds", {"service": "api", "instance": "api-1"}, api),
        ):
            store.append(SampleBatch.from_arrays(label_set({"__name__": name, **labels}), ts, v))
        analyzer = IncidentAnalyzer(store, dependencies={"api": ["db"]})
        t = float(ts[210]) / 1000
        alert = ({"alertname": "ApiSlow", "service": "api", "instance": "api-1"}, t)
        causes = analyzer.causes([alert])
        assert causes[0]["labels"]["__name__"] == "db_pool_in_use"
        assert causes[0]["moved_with"] == [
            'request_latency_seconds{instance="api-1",service="api"}'
        ]
        assert "db_pool_in_use on db-1" in causes[0]["explanation"]
        assert analyzer.causes([alert]) is causes  # remembered
        # a database alert arriving later moved with the incident; an unrelated one did not
        db_alert = ({"alertname": "PoolFull", "service": "db", "instance": "db-1"}, t + 60)
        other = ({"alertname": "Disk", "service": "mail", "instance": "mx-1"}, t + 60)
        assert analyzer.related(db_alert, [alert])
        assert not analyzer.related(other, [alert])
        # the alert on the top cause's entity is the incident's root
        root = analyzer.root_alert([("fp-api", alert[0], alert[1]), ("fp-db", *db_alert)])
        assert root == "fp-db"
        # nothing to analyse: no guess, no error
        assert analyzer.causes([({"alertname": "Watchdog"}, t)]) == []
    finally:
        store.close()
