"""``perfintel rules``: check, unit-test and backtest rule files (like ``promtool``)."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perfintel.cli_common import auth_headers
from perfintel.errors import PerfintelError

rules_app = typer.Typer(
    help="Alerting rules: check and unit-test rule files (as promtool), backtest them over history.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


@rules_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Rule files to check.")],
) -> None:
    """Check rule files for errors (file, line and reason), as `promtool check rules`."""
    from perfintel.alerting.rules.files import RuleFileError, load_rule_file

    failed = False
    for f in files:
        out.print(f"Checking {f}", highlight=False)
        try:
            groups = load_rule_file(f)
        except RuleFileError as exc:
            failed = True
            out.print("  FAILED:", highlight=False)
            out.print(f"{exc}", highlight=False, markup=False)
            out.print()
            continue
        n = sum(len(g.rules) for g in groups)
        out.print(f"  SUCCESS: {n} rules found", highlight=False)
        out.print()
    if failed:
        raise typer.Exit(1)


@rules_app.command("test")
def test(
    files: Annotated[list[Path], typer.Argument(help="Unit-test files (promtool's format).")],
) -> None:
    """Run rule unit tests written for `promtool test rules`."""
    from perfintel.alerting.rules.promtest import run_test_file

    failed = False
    for f in files:
        out.print(f"Unit Testing:  {f}", highlight=False)
        result = run_test_file(f)
        if result.ok:
            out.print("  SUCCESS", highlight=False)
        else:
            failed = True
            out.print("  FAILED:", highlight=False)
            for e in result.errors:
                out.print(e, highlight=False, markup=False)
        for w in result.warnings:
            out.print(w, highlight=False, markup=False)
        out.print()
    if failed:
        raise typer.Exit(1)


def _parse_time(value: str, name: str) -> float:
    from perfintel.api.params import parse_time_ms

    try:
        return parse_time_ms(value, name) / 1000.0
    except PerfintelError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{name}") from None


def _load_sink(ref: str | None) -> Any:
    if not ref:
        return None
    module, _, attr = ref.partition(":")
    if not attr:
        raise typer.BadParameter("use module:callable", param_hint="--sink")
    factory = getattr(importlib.import_module(module), attr)
    return factory()


@rules_app.command("backtest")
def backtest_cmd(
    files: Annotated[list[Path], typer.Argument(help="Rule files to replay.")],
    start: Annotated[str, typer.Option("--from", help="Start: Unix seconds or RFC 3339.")],
    end: Annotated[str, typer.Option("--to", help="End: Unix seconds or RFC 3339.")],
    url: Annotated[
        str | None, typer.Option("--url", help="Read history from a running perfintel.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Read history from a data directory (server stopped)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="PERFINTEL_TOKEN", help="Bearer token for --url.")
    ] = None,
    sink: Annotated[
        str | None,
        typer.Option(
            help="module:callable returning an AlertSink (with tick(now) it runs on the "
            "simulated clock; with summary() its counts are printed), e.g. a notification pipeline."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings (alerting.*) to use.")
    ] = None,
) -> None:
    """Replay rules over stored history and print how many alerts they would have produced."""
    from perfintel.alerting.rules.backtest import (
        OverlayStore,
        backtest,
        history_margin,
        selectors_of,
        summary_lines,
    )
    from perfintel.alerting.rules.files import RuleFileError, load_rule_file
    from perfintel.alerting.rules.service import eval_options
    from perfintel.config import load_settings

    if (url is None) == (data_dir is None):
        raise typer.BadParameter("give exactly one of --url and --data-dir")
    t0, t1 = _parse_time(start, "from"), _parse_time(end, "to")
    if t1 <= t0:
        raise typer.BadParameter("--to must be after --from")
    try:
        settings = load_settings(config, {"data_dir": data_dir})
        specs = [g for f in files for g in load_rule_file(f)]
    except (RuleFileError, PerfintelError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    margin = history_margin(specs, settings.query.lookback_delta)
    opened = None
    if data_dir is not None:
        from perfintel.api.app import open_store

        try:
            opened = open_store(settings)
        except PerfintelError as exc:
            err.print(
                f"[red]error:[/red] cannot open {data_dir}: {exc} (is a server running on it? use --url)"
            )
            raise typer.Exit(2) from None
        store: Any = OverlayStore(opened)
    else:
        store = _fetch(url or "", token, selectors_of(specs), t0 - margin, t1)
    began = time.perf_counter()
    try:
        report = backtest(
            specs,
            store,
            t0,
            t1,
            options=eval_options(settings.alerting),
            sink=_load_sink(sink),
        )
    finally:
        if opened is not None:
            opened.close()
    table = Table(title=f"backtest {start} .. {end}")
    # in 80 columns the rule's name must stay whole: its group goes under it (when there is
    # more than one; a group's key is "file;name") and a kind is its first word
    groups = {r.group for r in report.rules}
    table.add_column("rule", no_wrap=True)
    for c in ("kind", "alerts", "series", "firing h", "errors"):
        table.add_column(c)
    for r in report.rules:
        where = f"\n[dim]{escape(r.group.rpartition(';')[2])}[/dim]" if len(groups) > 1 else ""
        table.add_row(
            r.rule + where,
            r.kind.split("_")[0],
            str(r.alerts),
            str(r.series),
            f"{r.firing_seconds / 3600:.1f}",
            str(r.errors) + (f" ({r.last_error[:60]})" if r.errors else ""),
        )
    out.print(table)
    for line in summary_lines(report):
        out.print(line, highlight=False)
    err.print(f"replayed in {time.perf_counter() - began:.1f} s")


def _fetch(url: str, token: str | None, selectors: list[str], start: float, end: float) -> Any:
    """The history of ``selectors`` from a running perfintel, into an in-memory store."""
    import httpx

    from perfintel.ingest.vm_export import parse_vm_jsonl
    from perfintel.storage.memory import MemoryStore

    store = MemoryStore()
    headers = auth_headers(token)
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        for sel in selectors:
            try:
                r = client.get(
                    "/api/v1/export",
                    params={"match[]": sel, "start": f"{start:.3f}", "end": f"{end:.3f}"},
                )
            except httpx.HTTPError as exc:
                err.print(f"[red]error:[/red] cannot reach {url}: {exc}")
                raise typer.Exit(2) from None
            if r.status_code != 200:
                err.print(f"[red]error:[/red] {sel}: HTTP {r.status_code}: {r.text[:300]}")
                raise typer.Exit(2)
            parsed = parse_vm_jsonl(r.content)
            if len(parsed.batch):
                store.append(parsed.batch)
    return store
