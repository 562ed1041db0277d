"""``perfintel analyze``: correlation, root cause, change impact and recommendations, asked of
a running perfintel and printed as tables (``--json`` for the raw answer, ``--plot`` for a chart)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from perfintel.cli_common import Token, Url, auth_headers, console, fail
from perfintel.timeparse import TIME_HELP

analyze_app = typer.Typer(
    help="Correlation, root cause, change impact and recommendations of a running perfintel.",
    no_args_is_help=True,
)
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
Plot = Annotated[Path | None, typer.Option("--plot", help="Also write a PNG chart here.")]


def _post(url: str, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
    """POST a JSON body to a running perfintel; the decoded answer, or exit 2 with its error."""
    try:
        r = httpx.post(
            url + path,
            json={k: v for k, v in body.items() if v is not None},
            headers=auth_headers(token),
            timeout=300,
        )
    except httpx.HTTPError as exc:
        raise fail(RuntimeError(f"cannot reach {url}: {exc}")) from exc
    try:
        data: dict[str, Any] = r.json()
    except ValueError:
        data = {"error": r.text[:500]}
    if r.status_code != 200:
        raise fail(RuntimeError(f"HTTP {r.status_code}: {data.get('error', r.text[:500])}"))
    return data


def _labels(d: dict[str, str]) -> str:
    name = d.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in d.items() if k != "__name__")
    if not rest or not name:  # an expression's result has no name: its labels alone
        return f"{{{rest}}}" if rest else name
    if not name.replace(":", "_").isidentifier():
        # a result named by its expression: the labels that tell the results apart first
        # (after a long expression they were cut off in a narrow table)
        return f"{{{rest}}} of {name}"
    return f"{name}{{{rest}}}"


def _told_apart(labels: list[dict[str, str]]) -> tuple[str, list[str]]:
    """What every series shares (as a selector) and, per series, the labels that tell it
    from the others: a plot's ticks have room for those only."""
    shared = set.intersection(*(set(d.items()) for d in labels)) if len(labels) > 1 else set()
    names = [_labels({k: v for k, v in d.items() if (k, v) not in shared}) for d in labels]
    if not all(names) or len(set(names)) < len(names):
        return "", [_labels(d) for d in labels]
    return _labels(dict(sorted(shared))), names


def _f(v: float | None, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


@analyze_app.command("correlations")
def analyze_correlations(
    selectors: Annotated[
        list[str], typer.Argument(help="Series selectors or PromQL expressions to correlate.")
    ],
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
        # the series' labels tell the pairs apart: folded, never cut, in a narrow terminal
        for c in ("a", "b"):
            table.add_column(c, overflow="fold")
        for c in ("lag", "xcorr", "pearson", "spearman", "q", ""):
            table.add_column(c, no_wrap=True)
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
        leaders.add_column("series", overflow="fold")
        for c in ("score", "leads", "follows"):
            leaders.add_column(c)
        for ld in data["leaders"][:10]:
            leaders.add_row(
                names[ld["index"]], f"{ld['score']:.2f}", str(ld["leads"]), str(ld["follows"])
            )
        out.print(leaders)
        # an empty table says nothing: why no pair, and what was left out
        if data.get("why_no_pairs"):
            console.print(f"no pair tested: {data['why_no_pairs']}")
        left = [
            (n, s["reason"]) for n, s in zip(names, data["series"], strict=True) if not s["usable"]
        ]
        for name, reason in left[:20]:
            console.print(f"not analysed: {name}: {reason}")
        if len(left) > 20:
            console.print(f"not analysed: {len(left) - 20} more (--json lists them)")
    if plot is not None:
        import numpy as np

        from perfintel.performance.plot import correlation_heatmap_png

        if data["matrix"] is None:
            raise fail(RuntimeError("too many series for a heat map"))
        m = np.array([[np.nan if v is None else v for v in row] for row in data["matrix"]["xcorr"]])
        shared, names = _told_apart([s["labels"] for s in data["series"]])
        title = "cross-correlation at the best lag" + (f" of {shared}" if shared else "")
        plot.write_bytes(correlation_heatmap_png(names, m, title))
        console.print(f"wrote {plot}")


@analyze_app.command("root-cause")
def analyze_root_cause(
    selector: Annotated[
        str | None, typer.Argument(help="The candidate series (a selector).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--time", help=f"The incident's time: {TIME_HELP} (default: now)."),
    ] = None,
    incident: Annotated[
        str | None,
        typer.Option(help="An alerting incident's id, instead of the selector and --time."),
    ] = None,
    url: Url = "http://127.0.0.1:9470",
    window: Annotated[
        str,
        typer.Option(
            help="How long before the time changes are sought (a cause may also begin after "
            "the time, up to the first symptom after it, at most 10 minutes later; when the "
            "largest symptom had begun as the window opens, it opens back half its length more)."
        ),
    ] = "30m",
    baseline: Annotated[str, typer.Option(help="The normal behaviour before the window.")] = "3h",
    step: Annotated[
        str, typer.Option(help="Grid step; auto: the interval the series are sampled at.")
    ] = "auto",
    limit: Annotated[int, typer.Option(help="Causes shown.")] = 10,
    plot: Plot = None,
    as_json: AsJson = False,
    token: Token = None,
) -> None:
    """The series ranked as the root cause of an incident, with onsets and explanations."""
    body = {
        "selector": selector,
        # without an incident, what is happening now
        "time": at if at is not None or incident is not None else "now",
        "incident": incident,
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
        # the explanation, a sentence, goes under the table: as a sixth column it was folded
        # to a word a line in an 80-column terminal
        for c in ("#", "series", "score", "onset", "σ"):
            table.add_column(c, overflow="fold")
        for i, c in enumerate(data["causes"], start=1):
            series = _labels(c["labels"])
            if c.get("parts"):  # other cores, buckets or quantiles of the same measurement
                values = [p["labels"].get(c["part_label"], "") for p in c["parts"]]
                series += f" (and {c['part_label']} {', '.join(values)})"
            table.add_row(
                str(i),
                series,
                f"{c['score']:.2f}",
                c["onset"][11:19],
                # a series constant before moved by no spread at all: its σ is only an order
                "from constant" if c.get("constant_before") else f"{c['sigma']:+.1f}",
            )
        console = Console()
        console.print(table)
        for i, c in enumerate(data["causes"], start=1):
            console.print(f"{i}. {c['explanation']}", markup=False, highlight=False, soft_wrap=True)
        if data.get("note"):
            console.print(f"note: {data['note']}", markup=False, highlight=False)
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
    selector: Annotated[
        str,
        typer.Argument(
            help="The metrics to assess: a selector or a PromQL expression (rate(x_sum[5m]) / rate(x_count[5m]))."
        ),
    ],
    url: Url = "http://127.0.0.1:9470",
    change_time: Annotated[
        str | None, typer.Option(help=f"When the change happened: {TIME_HELP}.")
    ] = None,
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
    table.add_column("series", overflow="fold")  # labels tell the results apart: never cut
    for c in ("expected", "observed", "effect", f"{level:.0%} interval", "relative", ""):
        table.add_column(c)
    for r in data["results"]:
        rel = f"{100 * r['relative']:+.1f} %" if r["relative"] is not None else "-"
        table.add_row(
            _labels(r["labels"]) or selector,  # one result of an expression: what was asked
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
        f"saves {data['monthly_saving']:.2f} {cur}/month, adds "
        f"{data['monthly_extra_cost']:.2f} {cur}/month"
    )
    # the resource names which host or container: folded, never cut, in a narrow terminal
    for c in ("kind", "resource", "action", "confidence", f"{cur}/month"):
        table.add_column(c, overflow="fold")
    for r in data["recommendations"]:
        res = r["resource"]
        who = " ".join(f"{k}={v}" for k, v in res["entity"].items() if k not in ("job",))
        cost_cell = f"{r['impact']['monthly_cost']:+.2f}" if r["impact"] else "-"
        table.add_row(
            r["kind"],
            f"{res['level']} {res['kind']} {who}",
            r["action"],
            f"{r['confidence']:.2f}",
            cost_cell,
        )
    Console().print(table)
    if data.get("note"):
        console.print(f"note: {data['note']}")
    for f in data["failures"]:
        console.print(f"[yellow]rule {f['rule']} failed: {f['error']}[/yellow]")


def orjson_dumps(data: Any) -> str:
    import orjson

    return orjson.dumps(data).decode()


def parse_time_ms_cli(value: str) -> int:
    from perfintel.api.params import parse_time_ms

    return parse_time_ms(value, "time")
