"""schemathesis against the OpenAPI document of a running server: no 5xx, no schema violations.

Bounded: ``MAX_EXAMPLES`` generated requests per operation against a real
server process (real DuckDB file, the overview task running), with a few
series stored first so reads find data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from perfintel.api.app import create_app
from perfintel.config import load_settings
from tests.conftest import Server, start_server

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("fuzz") / "data",
        env={"PERFINTEL_HOST_COLLECTOR__ENABLED": "false"},
    )
    now = int(time.time() * 1000)
    body = {
        "series": [
            {
                "metric": "node_load1",
                "labels": {"instance": "a:9100", "service": "x"},
                "samples": [[now - 60_000 * k, 1.0 + (k % 7) / 10] for k in range(120)],
            }
        ]
    }
    assert httpx.post(server.url + "/api/v1/ingest", json=body).status_code == 200
    yield server
    server.stop()


def _document() -> dict[str, object]:
    """The OpenAPI document the service serves (built without starting it)."""
    app = create_app(load_settings(env={}), collectors=False)
    return app.openapi()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_no_schema_violations(
    fuzz_server: Server, case: schemathesis.Case
) -> None:
    response = case.call(base_url=fuzz_server.url, timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
        f"{case.as_curl_command()}"
    )
    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])


def test_the_fuzz_covers_the_dashboard_routes() -> None:
    paths = {op.ok().path for op in schema.get_all_operations()}
    assert {
        "/api/v1/performance/dashboard/realtime",
        "/api/v1/performance/health/comprehensive",
        "/api/v1/status/config",
        "/api/v1/status/diagnostics",
    } <= paths
