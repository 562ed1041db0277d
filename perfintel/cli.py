"""The ``perfintel`` command line: serve, ingest, query, demo, bench and eval."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

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
