"""Configuration errors never echo a secret (issue 10, item 4).

Before, a token shorter than 16 characters was printed in the validation
message (``auth.tokens.0.token: ... (got 'short-secret')``).
"""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from perfintel import redact
from perfintel.config import load_settings
from perfintel.errors import ConfigError

SECRET = "hunter2-sekrit"


def _error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(**kwargs)  # type: ignore[arg-type]
    text = str(exc.value)
    # nor anywhere in the chain a traceback would print
    cause = _shown_cause(exc.value)
    while cause is not None:
        text += "\n" + str(cause)
        cause = _shown_cause(cause)
    return text


def _shown_cause(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def test_doctests() -> None:
    assert doctest.testmod(redact).failed == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"auth": {"tokens": [{"token": SECRET, "scopes": ["read"]}]}},  # too short
        {"auth": {"tokens": [{"token": SECRET + "-long-enough", "scopes": ["bogus"]}]}},
        {"auth": {"tokens": [{"token": SECRET + "-long-enough", "scope": ["read"]}]}},  # typo
        {"auth": {"tokens": [{"tokn": SECRET}]}},
        {"auth": {"tokens": SECRET}},
        {"auth": {"tokens": [{"token": 12345678901234567890123, "scopes": ["read"]}]}},
        {"alerting": {"database_url": f"postgresql://me:{SECRET}@db/x", "enabled": "maybe"}},
        {"alerting": {"database_url": ["postgresql://me:" + SECRET + "@db/x"]}},
        {"scrape": [{"job_name": "a", "targets": [f"http://u:{SECRET}@h:1/"], "bogus": 1}]},
    ],
)
def test_validation_errors_do_not_echo_secrets(overrides: dict[str, object]) -> None:
    message = _error(overrides=overrides, env={})
    assert "invalid settings" in message
    assert SECRET not in message
    assert "12345678901234567890123" not in message


def test_the_setting_is_still_named() -> None:
    message = _error(
        overrides={"auth": {"tokens": [{"token": "short", "scopes": ["read"]}]}}, env={}
    )
    assert "auth.tokens.0.token" in message and "16 characters" in message
    assert "short" not in message.replace("shorter", "")


def test_environment_and_files_do_not_echo_secrets(tmp_path: Path) -> None:
    env = {"PERFINTEL_AUTH__TOKENS": f'[{{token: "{SECRET}", scopes: [read]]'}  # broken YAML
    message = _error(env=env)
    assert "PERFINTEL_AUTH__TOKENS" in message and SECRET not in message
    cfg = tmp_path / "perfintel.yaml"
    cfg.write_text(f'auth:\n  tokens:\n    - {{token: "{SECRET}", scopes: [read\n')
    message = _error(config_file=cfg, env={})
    assert "perfintel.yaml" in message and "line" in message and SECRET not in message
    cfg.write_text(f'auth:\n  tokens:\n    - {{token: "{SECRET}", scopes: [read]}}\n')
    message = _error(config_file=cfg, env={})
    assert "16 characters" in message and SECRET not in message


def test_settings_never_print_a_token() -> None:
    token = SECRET + "-long-enough"
    s = load_settings(
        overrides={"auth": {"tokens": [{"token": token, "scopes": ["read"]}]}}, env={}
    )
    assert (
        token not in repr(s)
        and token not in str(s.model_dump())
        and token not in s.model_dump_json()
    )
    assert s.auth.tokens[0].token.get_secret_value() == token


def test_serve_prints_one_line_without_the_token(tmp_path: Path) -> None:
    """As a user sees it: ``perfintel serve`` with a short token."""
    cfg = tmp_path / "perfintel.yaml"
    cfg.write_text(f'auth:\n  tokens:\n    - {{token: "{SECRET}", scopes: [read]}}\n')
    r = subprocess.run(
        [sys.executable, "-m", "perfintel", "serve", "--config", str(cfg), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode != 0
    assert "auth.tokens.0.token" in r.stderr
    assert SECRET not in r.stdout + r.stderr
