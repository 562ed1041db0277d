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
app.add_typer(analyze_app, name="analyze")
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


Token = Annotated[str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token.")]
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
