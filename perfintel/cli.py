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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

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
app.add_typer(rules_app, name="rules")
console = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: ./perfintel-data).")
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML config file.")
]
Url = Annotated[str, typer.Option("--url", help="Base URL of a running perfintel.")]


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 9470).")] = None,
    config: ConfigFile = None,
) -> None:
    """Run the service: ingest, storage, queries, and this host's metrics from the first second."""
    import logging

    import uvicorn

    from perfintel.api.app import create_app

    try:
        settings = load_settings(config, {"data_dir": data_dir, "host": host, "port": port})
    except PerfintelError as exc:
        raise _fail(exc) from exc
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console.print(
        f"perfintel listening on http://{settings.host}:{settings.port}  (data: {Path(settings.data_dir).resolve()})"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning" if settings.log_level == "info" else settings.log_level,
        access_log=False,
    )


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
        httpx.Client(base_url=url, timeout=300) as client,
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
            try:
                r = client.post(path, content=f.read_bytes(), headers=headers)
            except httpx.HTTPError as exc:
                raise _fail(RuntimeError(f"cannot reach {url}: {exc}")) from exc
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
        str | None, typer.Option(help="Unix seconds or RFC3339 (default: end - 1h).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Unix seconds or RFC3339 (default: now).")] = None,
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
    params: dict[str, Any] = {
        "match": selector,
        "start": start,
        "end": end,
        "step": step,
        "fn": fn,
        "agg": agg,
        "by": by,
    }
    try:
        r = httpx.get(
            f"{url}/api/v1/series/query",
            params={k: v for k, v in params.items() if v is not None},
            headers=_auth_headers(token),
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise _fail(RuntimeError(f"cannot reach {url}: {exc}")) from exc
    if r.status_code != 200:
        raise _fail(RuntimeError(f"HTTP {r.status_code}: {r.json().get('error', r.text)}"))
    if as_json:
        sys.stdout.write(r.text + "\n")
        return
    data = r.json()["data"]
    table = Table(title=f"{len(data['series'])} series ({data['source']})")
    for c in ("series", "points", "first", "last value", "min", "max"):
        table.add_column(c)
    for s in data["series"]:
        vals = [float(v) for v in s["values"]]
        first = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["timestamps"][0] / 1000))
            if vals
            else "-"
        )
        labels = ",".join(f'{k}="{v}"' for k, v in s["labels"].items())
        table.add_row(
            labels,
            str(len(vals)),
            first,
            f"{vals[-1]:g}" if vals else "-",
            f"{min(vals):g}" if vals else "-",
            f"{max(vals):g}" if vals else "-",
        )
    Console().print(table)


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
    from perfintel.demo import generate_demo
    from perfintel.ingest.remote_write import encode_remote_write

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
        for batch in generate_demo(end_ms=end_ms, days=days, step_s=step, seed=seed):
            r = client.post(
                "/api/v1/write",
                content=encode_remote_write(batch),
                headers={
                    "Content-Type": "application/x-protobuf",
                    "Content-Encoding": "snappy",
                    **_auth_headers(token),
                },
            )
            if r.status_code >= 400:
                raise _fail(RuntimeError(f"HTTP {r.status_code}: {r.text[:500]}"))
            total += len(batch)
            if len(batch):
                newest = int(batch.timestamps.max())
                progress.advance(task, max(0, (newest - last_ts) // 3_600_000))
                last_ts = max(last_ts, newest - (newest - last_ts) % 3_600_000)
    console.print(f"loaded {total} demo samples into {url}")


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
    from perfintel.config import parse_duration
    from perfintel.evaluation.m4 import run_m4

    with _progress("series") as step:
        run_m4(
            train,
            out,
            horizon=horizon,
            freq_seconds=int(parse_duration(freq)),
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
