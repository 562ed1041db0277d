"""The ``perfintel`` command line: serve, ingest, query, demo, bench and eval."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from perfintel.cli_alerts import alerts_app
from perfintel.cli_analyze import analyze_app
from perfintel.cli_common import DEFAULT_URL, Token, Url, auth_headers, console, fail
from perfintel.cli_rules import rules_app
from perfintel.config import load_settings
from perfintel.errors import PerfintelError

app = typer.Typer(
    help="perfintel: self-hosted performance intelligence.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the models on public benchmarks.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
app.add_typer(alerts_app, name="alerts")
app.add_typer(analyze_app, name="analyze")
app.add_typer(rules_app, name="rules")


def _print_version(value: bool) -> None:
    if value:
        from perfintel import __version__

        sys.stdout.write(f"perfintel {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """perfintel: self-hosted performance intelligence."""


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: ./perfintel-data).")
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML config file.")
]
#: Uploads and downloads of any size: no read/write deadline, a connect deadline only.
_LONG_TIMEOUT = httpx.Timeout(None, connect=10)
_BLOCK = 1 << 20


@contextlib.contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn a transport failure into one line naming the server (exit code 1)."""
    try:
        yield
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            reason += " (is `perfintel serve` running there?)"
        raise fail(RuntimeError(f"cannot reach {url}: {reason}"), code=1) from None


def _ensure_reachable(url: str) -> None:
    """Fail with one line before any progress bar when nothing answers at ``url``."""
    with _reaching(url):
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10)


def _fail_http(r: httpx.Response) -> typer.Exit:
    """One line with the server's error message (its JSON ``error``, else the text); exit
    code 2 when the server calls the request bad (4xx), 1 when it failed (5xx)."""
    try:
        r.read()
        message = str(r.json().get("error") or r.text)
    except (ValueError, AttributeError, httpx.HTTPError):
        message = r.text
    error = RuntimeError(f"HTTP {r.status_code}: {message[:500]}")
    return fail(error, code=2 if 400 <= r.status_code < 500 else 1)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 9470).")] = None,
    config: ConfigFile = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log", help="Log every request (setting access_log)."
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(help="all (default), ingest, worker or api (setting role)."),
    ] = None,
) -> None:
    """Run the service: ingest, storage, queries, and this host's metrics from the first second."""
    from perfintel.api.server import ServeError, configure_logging, run_server

    try:
        settings = load_settings(
            config,
            {
                "data_dir": data_dir,
                "host": host,
                "port": port,
                "access_log": access_log,
                "role": role,
            },
        )
    except PerfintelError as exc:
        raise fail(exc) from exc
    configure_logging(settings)
    try:
        code = run_server(settings, announce=lambda line: console.print(line, soft_wrap=True))
    except ServeError as exc:
        raise fail(exc, code=1) from exc
    raise typer.Exit(code)


_FORMATS = {
    ".prom": "prometheus",
    ".txt": "prometheus",
    ".om": "openmetrics",
    ".lp": "influx",
    ".influx": "influx",
    ".line": "influx",
    ".json": "json",
    ".jsonl": "vm",
    ".ndjson": "vm",
    ".pb": "remote_write",
}
_ENDPOINTS = {
    "prometheus": ("/api/v1/import/prometheus", "text/plain; version=0.0.4"),
    "openmetrics": ("/api/v1/import/prometheus", "application/openmetrics-text; version=1.0.0"),
    "influx": ("/write?precision=ns", "text/plain"),
    "json": ("/api/v1/ingest", "application/json"),
    "vm": ("/api/v1/import", "application/stream+json"),
    "remote_write": ("/api/v1/write", "application/x-protobuf"),
}


@app.command()
def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(help="Files to ingest (.prom .om .lp .json .jsonl .pb; .gz allowed)."),
    ],
    url: Url = "http://127.0.0.1:9470",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="Override: prometheus, openmetrics, influx, json, vm, remote_write."
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="Influx timestamp precision.")] = "ns",
    token: Annotated[
        str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")
    ] = None,
) -> None:
    """Send metric files of any supported format to a running perfintel."""
    _ensure_reachable(url)
    total_bytes = sum(f.stat().st_size for f in files)
    accepted = rejected = 0
    problems: list[str] = []
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with (
        Progress(*cols, console=console) as progress,
        httpx.Client(base_url=url, timeout=_LONG_TIMEOUT) as client,
    ):
        task = progress.add_task("ingesting", total=total_bytes)
        for f in files:
            name = f.name[:-3] if f.name.endswith(".gz") else f.name
            kind = fmt or _FORMATS.get(Path(name).suffix.lower())
            if kind not in _ENDPOINTS:
                raise fail(
                    ValueError(f"{f}: cannot tell the format from the extension; pass --format")
                )
            path, ctype = _ENDPOINTS[kind]
            if kind == "influx":
                path = f"/write?precision={precision}"
            headers = {"Content-Type": ctype, **auth_headers(token)}
            if f.name.endswith(".gz"):
                headers["Content-Encoding"] = "gzip"
            elif kind == "remote_write":
                headers["Content-Encoding"] = "snappy"
            progress.update(task, description=f.name)
            # JSON lines go to the streaming import: read and sent a block at a time, any size.
            content = _file_blocks(f) if kind == "vm" else f.read_bytes()
            with _reaching(url):
                r = client.post(path, content=content, headers=headers)
            took = int(r.headers.get("X-Perfintel-Samples-Accepted", 0))
            refused = int(r.headers.get("X-Perfintel-Samples-Rejected", 0))
            accepted, rejected = accepted + took, rejected + refused
            if r.status_code >= 400:
                problems.append(_ingest_problem(f, r, took, refused))
            progress.advance(task, f.stat().st_size)
    console.print(f"accepted {accepted} samples, rejected {rejected}")
    for p in problems:
        console.print(p, style="yellow", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


#: the errors of one file printed in full; the rest counted
_SHOWN_ERRORS = 10


def _ingest_problem(f: Path, r: httpx.Response, took: int, refused: int) -> str:
    """What went wrong with one file, read from the server's answer: the samples kept and
    refused, then each error on its own line (the body as text when it is no JSON)."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"{f}: HTTP {r.status_code}: {r.text[:500]}"
    errors = [str(e) for e in body.get("errors") or []]
    if not errors:
        errors = [str(body.get("error") or body.get("message") or r.text[:500])]
    head = f"{f}: HTTP {r.status_code}"
    if took or refused:
        head += f" ({took} samples accepted, {refused} rejected)"
    lines = [head, *(f"  {e}" for e in errors[:_SHOWN_ERRORS])]
    if len(errors) > _SHOWN_ERRORS:
        lines.append(f"  ... and {len(errors) - _SHOWN_ERRORS} more")
    return "\n".join(lines)


@app.command()
def query(
    selector: Annotated[
        str,
        typer.Argument(
            help='Series selector, e.g. node_load1{job="node"}, or a PromQL expression, e.g. '
            "'rate(node_cpu_seconds_total[5m])' (evaluated by the query_range API; --step "
            "defaults to 1/250 of the range, --fn/--agg/--by apply to selectors only)"
        ),
    ],
    url: Url = "http://127.0.0.1:9470",
    start: Annotated[
        str | None,
        typer.Option(help="Unix seconds, RFC 3339 or relative: now-2h (default: end - 1h)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Unix seconds, RFC 3339 or relative: now-5m (default: now).")
    ] = None,
    step: Annotated[str | None, typer.Option(help="Bucket width, e.g. 5m.")] = None,
    fn: Annotated[str, typer.Option(help="Per-bucket function.")] = "avg",
    agg: Annotated[str | None, typer.Option(help="Cross-series aggregation.")] = None,
    by: Annotated[str | None, typer.Option(help="Group labels, comma-separated.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    token: Annotated[
        str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")
    ] = None,
) -> None:
    """Query a running perfintel and print the series."""
    from perfintel.timeparse import parse_duration_ms, parse_time_ms

    try:  # the server's syntax (perfintel.timeparse), checked here: now-2h is this clock's
        start_s = parse_time_ms(start, "--start") / 1000 if start else None
        end_s = parse_time_ms(end, "--end") / 1000 if end else None
        if step:
            parse_duration_ms(step, "--step")
    except PerfintelError as exc:
        raise fail(exc) from exc
    if not _is_selector(selector):
        _query_promql(url, selector, start_s, end_s, step, as_json, token)
        return
    params: dict[str, Any] = {
        "match": selector,
        "start": start_s,
        "end": end_s,
        "step": step,
        "fn": fn,
        "agg": agg,
        "by": by,
    }
    data = _get_data(url, "/api/v1/series/query", params, token, as_json)
    if data is not None:
        _print_series(data["series"], f"{len(data['series'])} series ({data['source']})")


def _get_data(
    url: str, path: str, params: dict[str, Any], token: str | None, as_json: bool
) -> dict[str, Any] | None:
    """GET ``path`` (parameters that are None left out): its ``data``, or None once the raw
    answer is printed (``--json``); an error answer exits with the server's message."""
    with _reaching(url):
        r = httpx.get(
            f"{url}{path}",
            params={k: v for k, v in params.items() if v is not None},
            headers=auth_headers(token),
            timeout=60,
        )
    if r.status_code != 200:
        raise _fail_http(r)
    if as_json:
        sys.stdout.write(r.text + "\n")
        return None
    data: dict[str, Any] = r.json()["data"]
    return data


def _is_selector(text: str) -> bool:
    from perfintel.model import parse_selector

    try:
        parse_selector(text)
    except PerfintelError:
        return False
    return True


def _query_promql(
    url: str,
    expr: str,
    start_s: float | None,
    end_s: float | None,
    step: str | None,
    as_json: bool,
    token: str | None,
) -> None:
    """``expr`` over the range through the Prometheus query_range API, printed as the series
    query's table (a user who types rate(...) meant PromQL, not a selector)."""
    end = end_s if end_s is not None else time.time()
    start = start_s if start_s is not None else end - 3600
    # Grafana's default: about 250 points over the range, never finer than 1 s
    every = step or f"{max(1.0, (end - start) / 250):.0f}s"
    params = {"query": expr, "start": start, "end": end, "step": every}
    data = _get_data(url, "/api/v1/query_range", params, token, as_json)
    if data is None:
        return
    series = [
        {
            "labels": s["metric"],
            "timestamps": [round(float(t) * 1000) for t, _ in s["values"]],
            "values": [float(v) for _, v in s["values"]],
        }
        for s in data["result"]
    ]
    _print_series(series, f"{len(series)} series (PromQL, step {every})")


_STAT_COLUMNS = ("points", "first", "last value", "min", "max")


def _print_series(series: list[dict[str, Any]], title: str) -> None:
    """A table of series when it fits the terminal; otherwise each label set on its
    own lines with its figures below. Label sets are never cut."""
    rows = []
    for s in series:
        vals = [float(v) for v in s["values"]]
        first = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["timestamps"][0] / 1000))
            if vals
            else "-"
        )
        labels = ", ".join(f'{k}="{v}"' for k, v in s["labels"].items())
        stats = (str(len(vals)), first) + (
            tuple(f"{x:g}" for x in (vals[-1], min(vals), max(vals))) if vals else ("-",) * 3
        )
        rows.append((labels, stats))
    out = Console(soft_wrap=False)
    widths = [max([len(c), *(len(st[i]) for _, st in rows)]) for i, c in enumerate(_STAT_COLUMNS)]
    longest = max([len("series"), *(len(labels) for labels, _ in rows)])
    if longest + sum(widths) + 3 * (len(widths) + 1) + 1 <= out.width:
        table = Table(title=escape(title))
        table.add_column("series", no_wrap=True)
        for c in _STAT_COLUMNS:
            table.add_column(c, no_wrap=True)
        for labels, stats in rows:
            table.add_row(escape(labels), *stats)
        out.print(table)
        return
    out.print(escape(title))
    for labels, stats in rows:
        out.print(Text(labels, overflow="fold", style="bold"))
        figures = "   ".join(f"{c} {v}" for c, v in zip(_STAT_COLUMNS, stats, strict=True))
        out.print(Text("    " + figures, overflow="fold"))


@app.command()
def demo(
    url: Url = "http://127.0.0.1:9470",
    days: Annotated[float, typer.Option(help="Days of history to generate, ending now.")] = 7.0,
    step: Annotated[int, typer.Option(help="Seconds between samples.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    token: Annotated[
        str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")
    ] = None,
) -> None:
    """Load a realistic multi-service data set (seasonality, deploys, incidents, a filling disk)."""
    from perfintel.demo import demo_metadata, generate_demo
    from perfintel.ingest.remote_write import encode_remote_write

    _ensure_reachable(url)
    end_ms = int(time.time() * 1000)
    total = 0
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        Progress(*cols, console=console) as progress,
        httpx.Client(base_url=url, timeout=300) as client,
    ):
        task = progress.add_task("demo data (hours)", total=int(days * 24))
        last_ts = end_ms - int(days * 86_400_000)
        described: set[str] = set()
        for batch in generate_demo(end_ms=end_ms, days=days, step_s=step, seed=seed):
            # metadata of families not described yet rides along, as Prometheus sends it
            metadata = {k: v for k, v in demo_metadata(batch).items() if k not in described}
            described.update(metadata)
            with _reaching(url):
                r = client.post(
                    "/api/v1/write",
                    content=encode_remote_write(batch, metadata=metadata),
                    headers={
                        "Content-Type": "application/x-protobuf",
                        "Content-Encoding": "snappy",
                        **auth_headers(token),
                    },
                )
            if r.status_code >= 400:
                raise _fail_http(r)
            total += len(batch)
            if len(batch):
                newest = int(batch.timestamps.max())
                progress.advance(task, max(0, (newest - last_ts) // 3_600_000))
                last_ts = max(last_ts, newest - (newest - last_ts) % 3_600_000)
        progress.update(task, completed=int(days * 24))  # the last, partial hour is sent too
    console.print(f"loaded {total} demo samples into {url}")
    _print_tour(url, end_ms, days, step)


def _print_tour(url: str, end_ms: int, days: float, step: int) -> None:
    """What the demo planted, and the commands that find it (a newcomer's first questions)."""
    import shlex

    from perfintel.demo import demo_events, demo_tour

    at = [] if url == DEFAULT_URL else ["--url", url]
    console.print(f"dashboard: {url}/  — try:")
    for what, args in demo_tour(demo_events(end_ms=end_ms, days=days, step_s=step)):
        console.print(f"  {what}:", highlight=False)
        # one line however narrow the terminal: it is meant to be copied
        line = f"    perfintel {shlex.join([*args, *at])}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _file_blocks(path: Path, advance: Callable[[int], object] | None = None) -> Iterator[bytes]:
    """A file's bytes a block at a time (uploads of any size in constant memory)."""
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            if advance is not None:
                advance(len(block))
            yield block


def _byte_columns() -> tuple[ProgressColumn, ...]:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )


@app.command()
def backup(
    file: Annotated[
        Path, typer.Argument(help="File to write (VictoriaMetrics JSON lines; .gz: gzip).")
    ],
    url: Url = DEFAULT_URL,
    match: Annotated[
        list[str] | None,
        typer.Option(
            "--match", help='Series to back up (repeatable; default: all, {__name__=~".+"}).'
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Unix seconds or RFC3339 (default: the oldest sample).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Unix seconds or RFC3339 (default: now).")] = None,
    token: Token = None,
) -> None:
    """Back up a running perfintel's samples to FILE, streamed (any size, constant memory).

    The file is VictoriaMetrics' export format; `perfintel restore FILE` (or
    VictoriaMetrics' /api/v1/import) loads it back. It appears only once complete.
    """
    import gzip

    _ensure_reachable(url)
    params = httpx.QueryParams({"match[]": match or ['{__name__=~".+"}']})
    for key, value in (("start", start), ("end", end)):
        if value is not None:
            params = params.add(key, value)
    partial = file.with_name(file.name + ".partial")
    counter = _JsonLinesCounter()
    began = time.monotonic()
    with (
        Progress(
            *_byte_columns(), TextColumn("{task.fields[samples]:,} samples"), console=console
        ) as progress,
        httpx.Client(base_url=url, timeout=_LONG_TIMEOUT, headers=auth_headers(token)) as client,
        _reaching(url),
        client.stream("GET", "/api/v1/export", params=params) as r,
    ):
        if r.status_code != 200:
            raise _fail_http(r)
        task = progress.add_task(f"backup to {file.name}", total=None, samples=0)
        try:
            with (
                gzip.open(partial, "wb", compresslevel=3)
                if file.name.endswith(".gz")
                else open(partial, "wb") as out
            ):
                for chunk in r.iter_bytes(_BLOCK):
                    out.write(chunk)
                    counter.feed(chunk)
                    progress.update(task, advance=len(chunk), samples=counter.samples)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    counter.finish()
    if not counter.complete:
        partial.unlink(missing_ok=True)
        raise fail(
            RuntimeError("the export ended in the middle of a line (server stopped?)"), code=1
        )
    if counter.series == 0:
        # an empty file looks like a backup and restores nothing: say so instead
        partial.unlink(missing_ok=True)
        what = " ".join(match) if match else "any series"
        span = f" between {start or 'the oldest sample'} and {end or 'now'}"
        raise fail(
            LookupError(f"nothing to back up: no samples of {what}{span}; no file written"), code=1
        )
    partial.replace(file)
    took = time.monotonic() - began
    console.print(
        f"backed up {counter.samples:,} samples of {counter.series:,} series "
        f"({counter.lines:,} lines) to {file} ({_size(file.stat().st_size)}) in {took:.1f}s"
    )


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup: VictoriaMetrics JSON lines (.gz: gzip).")],
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Load a backup (from `perfintel backup` or VictoriaMetrics' export) into a running perfintel.

    Streamed: the file is sent a block at a time and the server imports it as
    it arrives, so backups of any size restore in constant memory on both sides.
    """
    if not file.is_file():
        raise fail(FileNotFoundError(f"no such file: {file}"))
    _ensure_reachable(url)
    headers = {"Content-Type": "application/stream+json", **auth_headers(token)}
    if file.name.endswith(".gz"):
        headers["Content-Encoding"] = "gzip"  # the server inflates it as a stream
    began = time.monotonic()
    with (
        Progress(*_byte_columns(), console=console) as progress,
        httpx.Client(base_url=url, timeout=_LONG_TIMEOUT) as client,
        _reaching(url),
    ):
        task = progress.add_task(f"restore {file.name}", total=file.stat().st_size)
        r = client.post(
            "/api/v1/import",
            content=_file_blocks(file, lambda n: progress.advance(task, n)),
            headers=headers,
        )
    if r.status_code >= 400 and "accepted" not in r.text:
        raise _fail_http(r)
    answer = r.json()
    took = time.monotonic() - began
    console.print(
        f"restored {answer.get('accepted', 0):,} samples from {file} into {url} in {took:.1f}s; "
        f"{answer.get('rejected', 0):,} line(s) rejected"
    )
    for problem in answer.get("errors", [])[:20]:
        console.print(f"[yellow]{escape(str(problem))}[/yellow]")
    if r.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def snapshot(url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Ask a running perfintel for a consistent copy of its data directory (while it keeps ingesting).

    Prints the snapshot's directory (on the server's machine); `docs/backup.md`
    tells how to start a server from it.
    """
    with _reaching(url):
        r = httpx.post(
            f"{url}/api/v1/admin/snapshot", headers=auth_headers(token), timeout=_LONG_TIMEOUT
        )
    if r.status_code != 200:
        raise _fail_http(r)
    data = r.json()["data"]
    console.print(
        f"snapshot {data['name']}: {_size(data['bytes'])}, {data['series']:,} series, "
        f"written in {data['seconds']:.1f}s"
    )
    sys.stdout.write(f"{data['path']}\n")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class _JsonLinesCounter:
    """Counts lines, samples and series of an export as it streams past (for the summary)."""

    def __init__(self) -> None:
        self.lines = self.samples = 0
        self._series: set[int] = set()
        self._tail = b""
        self.complete = True

    @property
    def series(self) -> int:
        return len(self._series)

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        *whole, self._tail = data.split(b"\n")
        for line in whole:
            if line:
                self._line(line)

    def _line(self, line: bytes) -> None:
        self.lines += 1
        ts = line.rfind(b'"timestamps":[')
        if ts >= 0 and not line.endswith(b"[]}"):
            self.samples += line.count(b",", ts) + 1
        self._series.add(hash(line[: line.find(b',"values":')]))

    def finish(self) -> None:
        self.complete = not self._tail.strip()


@bench_app.command(
    "storage", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_storage(ctx: typer.Context) -> None:
    """Storage benchmark against VictoriaMetrics (options: see --help of benchmarks/storage.py)."""
    from perfintel.bench.storage import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)) or 0)


@eval_app.command("nab")
def eval_nab(
    data: Annotated[Path, typer.Option(help="NAB data directory (<category>/<name>.csv).")],
    out: Annotated[Path, typer.Option(help="Results directory.")],
    plots: Annotated[Path | None, typer.Option(help="Also write one PNG per file here.")] = None,
) -> None:
    """Run the anomaly detector over the NAB corpus in streaming order."""
    from perfintel.evaluation.nab import run_nab

    with _progress("NAB files") as step:
        summary = run_nab(data, out, plots_dir=plots, progress=step)
    console.print(summary)


@eval_app.command("nab-cv")
def eval_nab_cv(
    nab: Annotated[
        Path, typer.Option(help="NAB folder holding data/, labels/ and profiles.json.")
    ] = Path("../shared/data/nab"),
    scorer: Annotated[
        Path | None, typer.Option(help="NAB scorer (default: NAB/../../tools/nab_score.py).")
    ] = None,
    family: Annotated[str, typer.Option(help="Detector family to cross-validate.")] = "default",
    repeats: Annotated[int, typer.Option(help="Random halves to fit and test.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the first random half.")] = 0,
    search: Annotated[
        bool, typer.Option(help="Choose the constants in each fold (off: thresholds only).")
    ] = True,
    margin: Annotated[
        float,
        typer.Option(help="Points of in-fold NAB standard a changed constant must gain."),
    ] = 1.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Cross-validate the anomaly detector on NAB: constants chosen in-fold, scored out-of-fold."""
    import json

    from perfintel.evaluation.families import FAMILIES
    from perfintel.evaluation.nab_cv import cross_validate, format_report, load_corpus

    if family not in FAMILIES:
        raise fail(ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})"))
    try:
        corpus = load_corpus(nab, scorer)
    except PerfintelError as exc:
        raise fail(exc) from exc
    report = cross_validate(
        FAMILIES[family],
        corpus,
        repeats=repeats,
        seed=seed,
        search=search,
        margin=margin,
        progress=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    console.print(format_report(report), highlight=False, markup=False, soft_wrap=True)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1))


@eval_app.command("m4")
def eval_m4(
    train: Annotated[Path, typer.Option(help="M4-format training CSV.")],
    out: Annotated[Path, typer.Option(help="Forecast CSV to write (id,F1..F48).")],
    freq: Annotated[str, typer.Option(help="Sampling interval of the series.")] = "1h",
    horizon: Annotated[int, typer.Option(help="Forecast steps.")] = 48,
    intervals: Annotated[Path | None, typer.Option(help="Also write 80/95 % bounds here.")] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write PNGs for a sample of series here.")
    ] = None,
) -> None:
    """Forecast every series of an M4-format file."""
    from perfintel.evaluation.m4 import run_m4
    from perfintel.timeparse import parse_duration_seconds

    with _progress("series") as step:
        run_m4(
            train,
            out,
            horizon=horizon,
            freq_seconds=int(parse_duration_seconds(freq, "--freq")),
            intervals_csv=intervals,
            plots_dir=plots,
            progress=step,
        )
    console.print(f"wrote {out}")


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar, and the ``(done, total)`` callback the evaluation runners call."""
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=console) as progress:
        task = progress.add_task(label, total=None)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield step


def main() -> None:
    app()


if __name__ == "__main__":
    main()
