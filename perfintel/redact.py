"""Keeping secrets out of messages: tokens, passwords, and passwords inside URLs.

A setting is secret when its name says so (``token``, ``password``,
``secret``, ``api_key``, ...: :func:`is_secret_key`) or when it is a URL with
a password (``postgresql://user:pw@host/db``: the password is). Error
messages about the settings must not echo them: :func:`secret_values` collects
every secret string of a raw configuration mapping, :func:`scrub` replaces
each in a text, and :func:`redact` gives a printable copy of a value.

>>> cfg = {"auth": {"tokens": [{"token": "s3cr3t-token"}]}, "db": "postgresql://u:pw@h/d"}
>>> sorted(secret_values(cfg))
['pw', 's3cr3t-token']
>>> scrub("got 's3cr3t-token' and postgresql://u:pw@h/d", secret_values(cfg))
"got '***' and postgresql://u:***@h/d"
>>> redact({"token": "abc", "name": "ci"})
{'token': '***', 'name': 'ci'}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

MASK = "***"
_SECRET_KEY_RE = re.compile(
    r"token|passw|secret|api_?key|credential|private_?key|auth_?key|bearer|webhook|routing_?key",
    re.IGNORECASE,
)
_URL_PASSWORD_RE = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)([^/@\s]+)(@)")


def is_secret_key(name: object) -> bool:
    """Whether a setting (or any of its path parts) names a secret."""
    return isinstance(name, str) and _SECRET_KEY_RE.search(name) is not None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _strings(v)


def secret_values(data: Any) -> set[str]:
    """Every secret string in a raw configuration value (nested mappings and lists)."""
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            if is_secret_key(k):
                out.update(s for s in _strings(v) if s)
            else:
                out.update(secret_values(v))
    elif isinstance(data, list | tuple | set):
        for v in data:
            out.update(secret_values(v))
    elif isinstance(data, str):
        out.update(m.group(2) for m in _URL_PASSWORD_RE.finditer(data))
    return out


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with URL passwords and each of ``secrets`` masked (longest first)."""
    text = _URL_PASSWORD_RE.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return text


def redact(value: Any, key: object = None) -> Any:
    """A copy of ``value`` fit to print: values of secret keys and URL passwords masked
    (an unset secret — ``None`` or empty — is shown as it is: there is nothing to hide)."""
    if is_secret_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return scrub(value, ())
    return value
