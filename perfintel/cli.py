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
analyze_app = typer.Typer(
    help="Correlation, root cause, change impact and recommendations of a running perfintel.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
app.add_typer(alerts_app, name="alerts")
app.add_typer(analyze_app, name="analyze")
app.add_typer(rules_app, name="rules")
console = Console(stderr=True)


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
Url = Annotated[
    str,
    typer.Option("--url", envvar="PERFINTEL_URL", help="Base URL of a running perfintel."),
]
Token = Annotated[str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")]
DEFAULT_URL = "http://127.0.0.1:9470"
#: Uploads and downloads of any size: no read/write deadline, a connect deadline only.
_LONG_TIMEOUT = httpx.Timeout(None, connect=10)
_BLOCK = 1 << 20


def _fail(exc: Exception, *, code: int = 2) -> typer.Exit:
    """One line on stderr and the exit code: 2 for bad usage or settings, 1 for a failed operation."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn a transport failure into one line naming the server (exit code 1)."""
    try:
        yield
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            reason += " (is `perfintel serve` running there?)"
        raise _fail(RuntimeError(f"cannot reach {url}: {reason}"), code=1) from None


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
    return _fail(error, code=2 if 400 <= r.status_code < 500 else 1)


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
        raise _fail(exc) from exc
    configure_logging(settings)
    try:
        code = run_server(settings, announce=lambda line: console.print(line, soft_wrap=True))
    except ServeError as exc:
        raise _fail(exc, code=1) from exc
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


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


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
                raise _fail(
                    ValueError(f"{f}: cannot tell the format from the extension; pass --format")
                )
            path, ctype = _ENDPOINTS[kind]
            if kind == "influx":
                path = f"/write?precision={precision}"
            headers = {"Content-Type": ctype, **_auth_headers(token)}
            if f.name.endswith(".gz"):
                headers["Content-Encoding"] = "gzip"
            elif kind == "remote_write":
                headers["Content-Encoding"] = "snappy"
            progress.update(task, description=f.name)
            # JSON lines go to the streaming import: read and sent a block at a time, any size.
            content = _file_blocks(f) if kind == "vm" else f.read_bytes()
            with _reaching(url):
                r = client.post(path, content=content, headers=headers)
            accepted += int(r.headers.get("X-Perfintel-Samples-Accepted", 0))
            rejected += int(r.headers.get("X-Perfintel-Samples-Rejected", 0))
            if r.status_code >= 400:
                problems.append(f"{f}: HTTP {r.status_code}: {r.text[:500]}")
            progress.advance(task, f.stat().st_size)
    console.print(f"accepted {accepted} samples, rejected {rejected}")
    for p in problems:
        console.print(f"[yellow]{p}[/yellow]")
    if problems:
        raise typer.Exit(1)


@app.command()
def query(
    selector: Annotated[str, typer.Argument(help='Series selector, e.g. node_load1{job="node"}')],
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
        raise _fail(exc) from exc
    params: dict[str, Any] = {
        "match": selector,
        "start": start_s,
        "end": end_s,
        "step": step,
        "fn": fn,
        "agg": agg,
        "by": by,
    }
    with _reaching(url):
        r = httpx.get(
            f"{url}/api/v1/series/query",
            params={k: v for k, v in params.items() if v is not None},
            headers=_auth_headers(token),
            timeout=60,
        )
    if r.status_code != 200:
        raise _fail_http(r)
    if as_json:
        sys.stdout.write(r.text + "\n")
        return
    data = r.json()["data"]
    _print_series(data["series"], f"{len(data['series'])} series ({data['source']})")


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
                        **_auth_headers(token),
                    },
                )
            if r.status_code >= 400:
                raise _fail_http(r)
            total += len(batch)
            if len(batch):
                newest = int(batch.timestamps.max())
                progress.advance(task, max(0, (newest - last_ts) // 3_600_000))
                last_ts = max(last_ts, newest - (newest - last_ts) % 3_600_000)
    console.print(f"loaded {total} demo samples into {url}")


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
        httpx.Client(base_url=url, timeout=_LONG_TIMEOUT, headers=_auth_headers(token)) as client,
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
        raise _fail(
            RuntimeError("the export ended in the middle of a line (server stopped?)"), code=1
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
        raise _fail(FileNotFoundError(f"no such file: {file}"))
    _ensure_reachable(url)
    headers = {"Content-Type": "application/stream+json", **_auth_headers(token)}
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
            f"{url}/api/v1/admin/snapshot", headers=_auth_headers(token), timeout=_LONG_TIMEOUT
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
        raise _fail(ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})"))
    try:
        corpus = load_corpus(nab, scorer)
    except PerfintelError as exc:
        raise _fail(exc) from exc
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


AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
Plot = Annotated[Path | None, typer.Option("--plot", help="Also write a PNG chart here.")]


def _post(url: str, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
    """POST a JSON body to a running perfintel; the decoded answer, or exit 2 with its error."""
    try:
        r = httpx.post(
            url + path,
            json={k: v for k, v in body.items() if v is not None},
            headers=_auth_headers(token),
            timeout=300,
        )
    except httpx.HTTPError as exc:
        raise _fail(RuntimeError(f"cannot reach {url}: {exc}")) from exc
    try:
        data: dict[str, Any] = r.json()
    except ValueError:
        data = {"error": r.text[:500]}
    if r.status_code != 200:
        raise _fail(RuntimeError(f"HTTP {r.status_code}: {data.get('error', r.text[:500])}"))
    return data


def _labels(d: dict[str, str]) -> str:
    name = d.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in d.items() if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name


def _f(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


@analyze_app.command("correlations")
def analyze_correlations(
    selectors: Annotated[list[str], typer.Argument(help="Series selectors to correlate.")],
    url: Url = "http://127.0.0.1:9470",
    target: Annotated[str | None, typer.Option(help="One series against the others.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Unix seconds or RFC3339 (default end - 1d).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Unix seconds or RFC3339 (default now).")] = None,
    step: Annotated[str | None, typer.Option(help="Grid step (default by the range).")] = None,
    max_lag: Annotated[str, typer.Option(help="Largest lead or lag searched.")] = "30m",
    alpha: Annotated[float, typer.Option(help="False-discovery rate.")] = 0.05,
    limit: Annotated[int, typer.Option(help="Pairs shown.")] = 20,
    plot: Plot = None,
    as_json: AsJson = False,
    token: Token = None,
) -> None:
    """Pairwise correlation (de-seasonalised, best lag, BH-controlled) and who moved first."""
    body = {
        "selectors": selectors,
        "target": target,
        "start": start,
        "end": end,
        "step": step,
        "max_lag": max_lag,
        "alpha": alpha,
        "limit": limit,
        "matrix": plot is not None,
    }
    data = _post(url, "/api/v1/performance/analyze/correlations", body, token)["data"]
    if as_json:
        sys.stdout.write(orjson_dumps(data) + "\n")
    else:
        names = [_labels(s["labels"]) for s in data["series"]]
        out = Console()
        table = Table(
            title=f"{data['significant_pairs']} of {data['pairs_tested']} pairs significant "
            f"(FDR {data['alpha']:g}, step {data['step_seconds']:g} s)"
        )
        for c in ("a", "b", "lag", "xcorr", "pearson", "spearman", "q", ""):
            table.add_column(c)
        for p in data["pairs"]:
            table.add_row(
                names[p["a"]],
                names[p["b"]],
                f"{p['lag_seconds']:+g} s",
                _f(p["xcorr"], ".2f"),
                _f(p["pearson"], ".2f"),
                _f(p["spearman"], ".2f"),
                _f(p["q_value"], ".2g"),
                "significant" if p["significant"] else "",
            )
        out.print(table)
        leaders = Table(title="who moved first (lead score: leads minus follows, weighted)")
        for c in ("series", "score", "leads", "follows"):
            leaders.add_column(c)
        for ld in data["leaders"][:10]:
            leaders.add_row(
                names[ld["index"]], f"{ld['score']:.2f}", str(ld["leads"]), str(ld["follows"])
            )
        out.print(leaders)
    if plot is not None:
        import numpy as np

        from perfintel.performance.plot import correlation_heatmap_png

        if data["matrix"] is None:
            raise _fail(RuntimeError("too many series for a heat map"))
        m = np.array([[np.nan if v is None else v for v in row] for row in data["matrix"]["xcorr"]])
        names = [_labels(s["labels"]) for s in data["series"]]
        plot.write_bytes(correlation_heatmap_png(names, m, "cross-correlation at the best lag"))
        console.print(f"wrote {plot}")


@analyze_app.command("root-cause")
def analyze_root_cause(
    selector: Annotated[str, typer.Argument(help="The candidate series (a selector).")],
    at: Annotated[
        str, typer.Option("--time", help="The incident's time: Unix seconds or RFC3339.")
    ],
    url: Url = "http://127.0.0.1:9470",
    window: Annotated[
        str, typer.Option(help="How long before the time changes are sought.")
    ] = "30m",
    baseline: Annotated[str, typer.Option(help="The normal behaviour before the window.")] = "3h",
    step: Annotated[str, typer.Option(help="Grid step.")] = "1m",
    limit: Annotated[int, typer.Option(help="Causes shown.")] = 10,
    plot: Plot = None,
    as_json: AsJson = False,
    token: Token = None,
) -> None:
    """The series ranked as the root cause of an incident, with onsets and explanations."""
    body = {
        "selector": selector,
        "time": at,
        "window": window,
        "baseline": baseline,
        "step": step,
        "limit": limit,
    }
    data = _post(url, "/api/v1/performance/analyze/root-cause", body, token)["data"]
    if as_json:
        sys.stdout.write(orjson_dumps(data) + "\n")
    else:
        table = Table(
            title=f"root-cause candidates of the incident at {data['time']} "
            f"({data['candidates']} series examined)"
        )
        for c in ("#", "series", "score", "onset", "σ", "explanation"):
            table.add_column(c)
        for i, c in enumerate(data["causes"], start=1):
            table.add_row(
                str(i),
                _labels(c["labels"]),
                f"{c['score']:.2f}",
                c["onset"][11:19],
                f"{c['sigma']:+.1f}",
                c["explanation"],
            )
        Console().print(table)
    if plot is not None:
        import numpy as np

        from perfintel.performance.plot import root_cause_timeline_png

        rows = []
        for c in data["causes"][:6]:
            ev = c["evidence"]
            z = np.array([np.nan if v is None else v for v in ev["z"]])
            ts = ev["start"] + 1000 * ev["step_seconds"] * np.arange(z.size)
            rows.append((_labels(c["labels"]), ts, z, int(c["onset_unix"] * 1000)))
        t_ms = int(parse_time_ms_cli(data["time"]))
        plot.write_bytes(
            root_cause_timeline_png(rows, t_ms, f"root cause, incident at {data['time']}")
        )
        console.print(f"wrote {plot}")


@analyze_app.command("change-impact")
def analyze_change_impact(
    selector: Annotated[str, typer.Argument(help="The metrics to assess (a selector).")],
    url: Url = "http://127.0.0.1:9470",
    change_time: Annotated[str | None, typer.Option(help="When the change happened.")] = None,
    annotation: Annotated[
        str | None, typer.Option(help='Series recording changes, e.g. deploy_info{service="x"}.')
    ] = None,
    after: Annotated[str, typer.Option(help="Window after the change.")] = "1h",
    before: Annotated[str | None, typer.Option(help="History before the change.")] = None,
    level: Annotated[float, typer.Option(help="Interval coverage.")] = 0.9,
    as_json: AsJson = False,
    token: Token = None,
) -> None:
    """The effect of a change on metrics: counterfactual forecast, interval, significance."""
    body = {
        "selector": selector,
        "change_time": change_time,
        "annotation": annotation,
        "after": after,
        "before": before,
        "level": level,
    }
    data = _post(url, "/api/v1/performance/analyze/change-impact", body, token)["data"]
    if as_json:
        sys.stdout.write(orjson_dumps(data) + "\n")
        return
    table = Table(
        title=f"impact of the change at {data['change_time']} "
        f"({data['after_steps']} steps of {data['step_seconds']:g} s after it)"
    )
    for c in ("series", "expected", "observed", "effect", f"{level:.0%} interval", "relative", ""):
        table.add_column(c)
    for r in data["results"]:
        rel = f"{100 * r['relative']:+.1f} %" if r["relative"] is not None else "-"
        table.add_row(
            _labels(r["labels"]),
            _f(r["expected"], ".4g"),
            _f(r["observed"], ".4g"),
            _f(r["effect"], "+.3g"),
            f"[{_f(r['lower'], '.3g')}, {_f(r['upper'], '.3g')}]",
            rel,
            "significant" if r["significant"] else "",
        )
    Console().print(table)
    for s in data["skipped"]:
        console.print(f"[yellow]skipped {_labels(s['labels'])}: {s['reason']}[/yellow]")


@analyze_app.command("recommend")
def analyze_recommend(
    url: Url = "http://127.0.0.1:9470",
    window: Annotated[str | None, typer.Option(help="History looked at (default 14d).")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Recommendation kinds (repeat).")] = None,
    core_hour: Annotated[float | None, typer.Option(help="Price of a core-hour.")] = None,
    memory_gib_month: Annotated[
        float | None, typer.Option(help="Price of a GiB-month of memory.")
    ] = None,
    disk_gib_month: Annotated[
        float | None, typer.Option(help="Price of a GiB-month of disk.")
    ] = None,
    as_json: AsJson = False,
    token: Token = None,
) -> None:
    """Optimisation recommendations with evidence, confidence and costed monthly impact."""
    cost = {
        "core_hour": core_hour,
        "memory_gib_month": memory_gib_month,
        "disk_gib_month": disk_gib_month,
    }
    body = {
        "window": window,
        "kinds": kind,
        "cost": {k: v for k, v in cost.items() if v is not None} or None,
    }
    data = _post(url, "/api/v1/performance/optimize/recommendations", body, token)["data"]
    if as_json:
        sys.stdout.write(orjson_dumps(data) + "\n")
        return
    cur = data["cost_model"]["currency"]
    table = Table(
        title=f"{data['total']} recommendations over {data['resources']} resources: "
        f"saves {data['monthly_saving']:.2f} {cur}/month, adds {data['monthly_extra_cost']:.2f}"
    )
    for c in ("kind", "resource", "action", "confidence", f"{cur}/month"):
        table.add_column(c)
    for r in data["recommendations"]:
        res = r["resource"]
        who = ",".join(f"{k}={v}" for k, v in res["entity"].items() if k not in ("job",))
        cost_cell = f"{r['impact']['monthly_cost']:+.2f}" if r["impact"] else "-"
        table.add_row(
            r["kind"],
            f"{res['level']} {res['kind']} {who}",
            r["action"],
            f"{r['confidence']:.2f}",
            cost_cell,
        )
    Console().print(table)
    for f in data["failures"]:
        console.print(f"[yellow]rule {f['rule']} failed: {f['error']}[/yellow]")


def orjson_dumps(data: Any) -> str:
    import orjson

    return orjson.dumps(data).decode()


def parse_time_ms_cli(value: str) -> int:
    from perfintel.api.params import parse_time_ms

    return parse_time_ms(value, "time")


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
