"""The README's shell examples (and docs' command lines and request bodies) run as written.

A new user copies them; one that fails (curl reading ``[1m]`` as a glob and exiting 3
with no output) is the first thing they see. Which lines are run, by rule:

* every line of every fenced ``sh`` block of README.md and of ``DOCS``, comments (``# …``)
  stripped;
* a line that starts with ``curl``, ``perfintel`` or ``.venv/bin/perfintel`` talks to a
  running perfintel: it is run, in order, with ``127.0.0.1:9470`` replaced by the test
  server's address (and ``PERFINTEL_URL`` set to it, as the CLI's other examples rely on
  its default), ``perfintel`` run as ``python -m perfintel``;
* a line that starts with one of ``SET_UP`` (installing, the server itself, the test
  suite) is skipped;
* any other line fails the test: a new kind of example needs a decision here.

The server is a real process (``start_server``) holding ``perfintel demo --days 0.25``.
Each run line must exit 0 and leave output: what it prints, or the files it writes in
its working directory (``curl -o FILE``), none of them empty; a JSON answer printed must
not be a Prometheus-style error (``"status":"error"``, which plain ``curl`` exits 0 on).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ROOT, Server, start_server

README_ADDRESS = "127.0.0.1:9470"
RUN = ("curl", "perfintel", ".venv/bin/perfintel")
# set-up, not examples against a server: the install-and-serve script, the test script
SET_UP = ("scripts/serve", "scripts/test")
# docs whose sh blocks all run against the demo's data; the others name hosts of a
# deployment (docs/backup.md's other-host, docs/scale-out.md) or set up a machine
DOCS = ("docs/analysis.md",)


def readme_sh_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) of each command line of the fenced ``sh`` blocks."""
    lines: list[tuple[int, str]] = []
    in_sh = False
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            in_sh = not in_sh and fence.group(1) == "sh"
            continue
        if not in_sh:
            continue
        command = strip_comment(line).strip()
        if command:
            lines.append((number, command))
    return lines


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside quotes stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def classify(command: str) -> str:
    word = command.split()[0]
    if word in RUN:
        return "run"
    if word.startswith(SET_UP):
        return "skip"
    return "unknown"


README_LINES = [
    (f"{name}:{n}", c)
    for name in ("README.md", *DOCS)
    for n, c in readme_sh_lines((ROOT / name).read_text())
]
EXAMPLES = [(where, c) for where, c in README_LINES if classify(c) == "run"]


def test_every_readme_sh_line_is_run_or_a_known_set_up_step() -> None:
    unknown = [f"{where}: {c}" for where, c in README_LINES if classify(c) == "unknown"]
    assert unknown == [], "classify these in tests/e2e/test_readme_examples.py"
    assert len(EXAMPLES) >= 11  # the examples this test was written for are still found


def test_the_line_rule_keeps_quoted_hashes_and_drops_comments() -> None:
    text = "```sh\nperfintel query 'x{a=\"#1\"}'   # a comment\n\n```\n```\nperfintel y\n```\n"
    assert readme_sh_lines(text) == [(2, "perfintel query 'x{a=\"#1\"}'")]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("readme") / "data")
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "perfintel", "demo", "--url", server.url, "--days", "0.25"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, demo.stderr
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one directory for all examples, run in their order: a restore reads the backup
    return tmp_path_factory.mktemp("readme-cwd")


def as_run(command: str, server: Server) -> str:
    command = command.replace(README_ADDRESS, server.url.removeprefix("http://"))
    perfintel = f"{shlex.quote(sys.executable)} -m perfintel"
    return re.sub(r"^(\.venv/bin/)?perfintel\b", lambda _: perfintel, command)


@pytest.mark.parametrize(("where", "command"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_readme_example_runs(where: str, command: str, demo_server: Server, workdir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in workdir.iterdir()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")}
    env["PERFINTEL_URL"] = demo_server.url
    res = subprocess.run(
        ["bash", "-c", as_run(command, demo_server)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, f"{where}: {command}\n{res.stdout}\n{res.stderr}"
    written = [p for p in workdir.iterdir() if before.get(p) != p.stat().st_mtime_ns]
    assert [p.name for p in written if p.is_file() and p.stat().st_size == 0] == []
    assert (res.stdout + res.stderr).strip() or written, f"{where}: no output"
    assert '"status":"error"' not in res.stdout.replace(" ", "")


# Request bodies: a fenced ``json`` block right after a line naming ``POST /api/...`` (only
# blank lines between) is that route's body, the whole block or, when it is not one JSON
# value, each line; answers shown further on follow prose and are not sent.
REQUEST_DOCS = ("docs/analysis.md", "docs/detection.md")


def doc_requests(text: str) -> list[tuple[int, str, str]]:
    """(line number, route, body) of each documented request body."""
    requests: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    route = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        posted = re.search(r"`POST (/api/[\w/.-]+)", line)
        if posted:
            route = posted.group(1)
        elif line.strip() == "```json" and route:
            end = lines.index("```", i + 1)
            block = lines[i + 1 : end]
            try:
                orjson.loads("\n".join(block))
                requests.append((i + 2, route, "\n".join(block)))
            except orjson.JSONDecodeError:
                requests += [(i + 2 + k, route, b) for k, b in enumerate(block) if b.strip()]
            route = ""
            i = end
        elif line.strip():
            route = ""
        i += 1
    return requests


REQUESTS = [
    (f"{name}:{n}", route, body)
    for name in REQUEST_DOCS
    for n, route, body in doc_requests((ROOT / name).read_text())
]


def test_the_request_rule_takes_bodies_after_a_route_only() -> None:
    text = (
        '`POST /api/v1/x`\n\n```json\n{"a": 1}\n{"b": 2}\n```\n'
        'Answer:\n\n```json\n{"status": "success"}\n```\n'
    )
    assert doc_requests(text) == [(4, "/api/v1/x", '{"a": 1}'), (5, "/api/v1/x", '{"b": 2}')]
    assert len(REQUESTS) >= 7  # the examples this test was written for are still found


@pytest.mark.parametrize(("where", "route", "body"), REQUESTS, ids=[w for w, _, _ in REQUESTS])
def test_doc_request_is_answered(where: str, route: str, body: str, demo_server: Server) -> None:
    r = httpx.post(
        demo_server.url + route,
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=300,
    )
    assert r.status_code == 200, f"{where}: POST {route} {body}\n{r.text}"
