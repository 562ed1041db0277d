"""An incident's scope and time from its alerts; what moved with each cause."""

from __future__ import annotations

import pytest

from perfintel.errors import BadInputError
from perfintel.model import parse_selector
from perfintel.performance.incident_rca import incident_scope


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
