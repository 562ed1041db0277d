"""``perfintel alerts``: check an alertmanager.yml, list incidents, acknowledge, silence."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from perfintel.cli_common import Token, Url, auth_headers, console
from perfintel.errors import PerfintelError

if TYPE_CHECKING:
    from perfintel.alerting.matchers import LabelMatcher

alerts_app = typer.Typer(
    help="Notifications: configuration, incidents, silences.", no_args_is_help=True
)


def _client(url: str, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, headers=auth_headers(token), timeout=30)


def _check(r: httpx.Response) -> dict[str, Any]:
    if r.status_code >= 400:
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        console.print(f"[red]error:[/red] HTTP {r.status_code}: {message}")
        raise typer.Exit(1)
    data: dict[str, Any] = r.json() if r.content else {}
    return data


@alerts_app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="The alertmanager.yml to check.")],
    extensions: Annotated[
        Path | None, typer.Option(help="perfintel's extensions file, if separate.")
    ] = None,
) -> None:
    """Check an alertmanager.yml like `amtool check-config` (errors give file:line: reason)."""
    from perfintel.alerting.amconfig import load_config

    try:
        cfg = load_config(file, extensions)
    except PerfintelError as exc:
        typer.echo(f"Checking '{file}'  FAILED: {exc}", err=True)  # one line: file:line: reason
        raise typer.Exit(1) from None
    ext = cfg.extensions
    print(f"Checking '{file}'  SUCCESS")
    print("Found:")
    print(f" - {len(cfg.route.walk())} routes")
    print(f" - {len(cfg.inhibit_rules)} inhibit rules")
    print(f" - {len(cfg.receivers)} receivers")
    print(f" - {len(cfg.time_intervals)} time intervals")
    print(f" - {len(ext.escalation_policies)} escalation policies")
    for w in cfg.warnings:
        print(f"warning: {w}")


@alerts_app.command("list")
def list_incidents(
    url: Url = "http://127.0.0.1:9470", token: Token = None, state: str | None = None
) -> None:
    """List incidents (open, acknowledged and recently resolved)."""
    with _client(url, token) as c:
        data = _check(c.get("/api/v1/incidents", params={"state": state} if state else {}))["data"]
    if not data:
        # an empty table reads like a failure; say what was looked for
        looked = f"in state {state!r}" if state else "(open, acknowledged or recently resolved)"
        console.print(f"no incidents {looked}")
        return
    table = Table("id", "state", "opened", "alerts", "title")
    for inc in data:
        alerts = inc["alerts"] if isinstance(inc["alerts"], int) else len(inc["alerts"])
        opened = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inc["openedAt"]))
        table.add_row(inc["id"], inc["state"], opened, str(alerts), inc["title"])
    Console().print(table)


@alerts_app.command("ack")
def ack(
    incident: str, url: Url = "http://127.0.0.1:9470", token: Token = None, by: str = "cli"
) -> None:
    """Acknowledge an incident (stops its escalation)."""
    with _client(url, token) as c:
        data = _check(c.post(f"/api/v1/incidents/{incident}/acknowledge", json={"by": by}))["data"]
    print(f"incident {data['id']} is {data['state']}")


@alerts_app.command("silence")
def silence(
    matchers: Annotated[
        list[str], typer.Argument(help='Matchers, e.g. alertname=DiskFull instance=~"db.*".')
    ],
    duration: Annotated[str, typer.Option(help="How long, e.g. 2h.")] = "1h",
    comment: str = "",
    by: str = "cli",
    url: Url = "http://127.0.0.1:9470",
    token: Token = None,
) -> None:
    """Add a silence (like `amtool silence add`)."""
    from perfintel.alerting.matchers import parse_matcher
    from perfintel.alerting.notification import rfc3339
    from perfintel.timeparse import parse_duration_seconds

    try:
        parsed = [parse_matcher(m) for m in matchers]
        seconds = parse_duration_seconds(duration)
    except (PerfintelError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    now = time.time()
    body = {
        "matchers": [m.to_api() for m in parsed],
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(now + seconds),
        "createdBy": by,
        "comment": comment,
    }
    with _client(url, token) as c:
        print(_check(c.post("/api/v2/silences", json=body))["silenceID"])  # alone, as amtool
        _say_what_it_silences(c, parsed)


def _say_what_it_silences(c: httpx.Client, matchers: list[LabelMatcher]) -> None:
    """On stderr: how many active alerts the silence matches now, and a warning when its
    alertname matcher names no alerting rule and no active alert (a typo silences nothing)."""
    alerts = c.get("/api/v2/alerts", params={"silenced": "true", "inhibited": "true"})
    rules = c.get("/api/v1/rules", params={"type": "alert"})
    if alerts.status_code != 200 or rules.status_code != 200:
        return  # the silence is made; what it matches is only a courtesy
    active = [a.get("labels", {}) for a in alerts.json()]
    hits = sum(all(m.matches(labels) for m in matchers) for labels in active)
    console.print(f"it silences {hits} of {len(active)} active alerts now")
    groups = rules.json()["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"] if r.get("type") == "alerting"}
    names |= {labels.get("alertname", "") for labels in active}
    for m in matchers:
        if m.name == "alertname" and not any(m.matches_value(n) for n in names):
            known = ", ".join(sorted(n for n in names if n)[:10]) or "none"
            console.print(
                f"[yellow]warning:[/yellow] no alerting rule or active alert is named {m}"
                f" (rules here: {known})"
            )
