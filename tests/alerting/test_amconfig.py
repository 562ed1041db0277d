"""alertmanager.yml as Alertmanager reads it: stock files load, errors name file, line, reason.

Each bad file is also checked with the real ``amtool check-config``, so perfintel refuses
what Alertmanager refuses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perfintel.alerting.amconfig import load_config, parse_config
from perfintel.alerting.matchers import parse_matcher, parse_matchers
from perfintel.alerting.time_intervals import parse_interval
from perfintel.errors import BadInputError, ConfigFileError

FIXTURES = Path(__file__).with_name("fixtures")
STOCK = FIXTURES / "alertmanager.yml"

BASE = """\
route:
  receiver: a
  group_by: [alertname]
receivers:
  - name: a
    webhook_configs:
      - url: http://127.0.0.1:1/x
"""


def amtool_ok(path: Path) -> bool:
    out = subprocess.run(
        ["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    return out.returncode == 0


def test_stock_file_loads_and_amtool_agrees() -> None:
    assert amtool_ok(STOCK)
    cfg = load_config(STOCK)
    routes = cfg.route.walk()
    assert [r.receiver for r in routes] == ["team-default", "team-pager", "team-db", "team-web"]
    assert routes[2].group_by_all and routes[1].continue_
    assert routes[2].key == '{}/{team="db"}'
    # continue: a critical db alert goes to the pager AND the db team
    got = cfg.route.match({"alertname": "X", "severity": "critical", "team": "db"})
    assert [r.receiver for r in got] == ["team-pager", "team-db"]
    assert [r.receiver for r in cfg.route.match({"service": "web"})] == ["team-web"]
    assert [r.receiver for r in cfg.route.match({"service": "webx"})] == ["team-default"]
    pager = cfg.receivers["team-pager"]
    assert [(i.kind, i.send_resolved) for i in pager.integrations] == [
        ("pagerduty", True),
        ("webhook", False),
    ]
    assert cfg.route.routes[0].group_wait == 30 and cfg.route.repeat_interval == 4 * 3600
    assert len(cfg.inhibit_rules) == 1 and cfg.inhibit_rules[0].equal == ("service",)


BAD = [
    ("unknown key", BASE + "bogus: 1\n", 8, "unknown field 'bogus'"),
    (
        "undefined receiver",
        BASE.replace("receiver: a", "receiver: nope"),
        2,
        "undefined receiver 'nope'",
    ),
    (
        "bad duration",
        BASE.replace("group_by: [alertname]", "group_by: [alertname]\n  group_wait: 5 minutes"),
        4,
        "group_wait",
    ),
    (
        "bad matcher",
        BASE.replace(
            "group_by: [alertname]",
            "group_by: [alertname]\n  routes:\n    - matchers: ['severity=~\"(\"']\n      receiver: a",
        ),
        5,
        "regular expression",
    ),
    ("wildcard mixed", BASE.replace("[alertname]", "['...', alertname]"), 3, "wildcard"),
    (
        "undefined interval",
        BASE.replace(
            "group_by: [alertname]",
            "group_by: [alertname]\n  routes:\n    - receiver: a\n      mute_time_intervals: [nights]",
        ),
        6,
        "undefined time interval 'nights'",
    ),
    ("duplicate receiver", BASE + "  - name: a\n", 8, "not unique"),
    ("yaml syntax", BASE + "route: [\n", 9, "YAML syntax"),
    (
        "webhook without url",
        BASE.replace("      - url: http://127.0.0.1:1/x", "      - send_resolved: true"),
        7,
        "url",
    ),
    (
        "webhook url without a scheme",
        BASE.replace("http://127.0.0.1:1/x", "127.0.0.1:1/x"),
        7,
        "unsupported scheme '' for URL in url",
    ),
    (
        "slack api_url not a url",
        BASE
        + "  - name: s\n    slack_configs:\n      - api_url: not a url\n        channel: '#ops'\n",
        10,
        "unsupported scheme '' for URL in api_url",
    ),
    (
        "teams webhook_url of another scheme",
        BASE + "  - name: t\n    msteams_configs:\n      - webhook_url: ftp://example.com/hook\n",
        10,
        "unsupported scheme 'ftp' for URL in webhook_url",
    ),
    (
        "global slack_api_url without a host",
        "global:\n  slack_api_url: 'https://'\n" + BASE,
        2,
        "missing host for URL in slack_api_url",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_name_line_and_reason_and_amtool_refuses_them_too(
    tmp_path: Path, name: str, text: str, line: int, reason: str
) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert reason in err.reason, str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert not amtool_ok(path), f"amtool accepts the {name} file"


def test_root_route_rules() -> None:
    with pytest.raises(ConfigFileError, match="root route must not have any matchers"):
        parse_config(BASE.replace("group_by: [alertname]", "matchers: ['a=b']"))
    with pytest.raises(ConfigFileError, match="no route provided"):
        parse_config("receivers: [{name: a}]\n")


def test_receivers_perfintel_does_not_deliver_are_accepted_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "am.yml"
    path.write_text(
        BASE + "  - name: tg\n    telegram_configs:\n      - bot_token: x\n        chat_id: 1\n"
    )
    cfg = load_config(path)
    assert "tg" in cfg.receivers and any("telegram_configs" in w for w in cfg.warnings)


def test_extensions_in_their_own_file_keep_alertmanager_yml_stock(tmp_path: Path) -> None:
    am = tmp_path / "am.yml"
    am.write_text(BASE)
    ext = tmp_path / "perfintel.yml"
    ext.write_text(
        "incidents:\n  window: 15m\n  dependencies: {api: [db]}\n"
        "flapping: {threshold: 4}\n"
        "receivers:\n  - name: oncall-sms\n    sms_configs:\n      - {url: 'http://127.0.0.1:1', account_sid: AC1, auth_token: t, from: '+1', to: ['+2']}\n"
        "escalation_policies:\n  - name: crit\n    matchers: ['severity=\"critical\"']\n    levels:\n      - {delay: 0s, receivers: [a]}\n      - {delay: 15m, receivers: [oncall-sms]}\n"
    )
    assert amtool_ok(am)
    cfg = load_config(am, ext)
    assert cfg.incident_window == 900 and cfg.extensions.incidents.dependencies == {"api": ("db",)}
    assert cfg.extensions.flapping.threshold == 4
    pol = cfg.extensions.escalation_policies[0]
    assert [lv.delay for lv in pol.levels] == [0, 900] and pol.levels[1].receivers == (
        "oncall-sms",
    )
    assert cfg.receivers["oncall-sms"].integrations[0].kind == "sms"
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "escalation_policies:\n  - name: x\n    levels: [{delay: 0s, receivers: [ghost]}]\n"
    )
    with pytest.raises(ConfigFileError, match="undefined receiver 'ghost'"):
        load_config(am, bad)
    six = tmp_path / "six.yml"
    six.write_text(
        "escalation_policies:\n  - name: x\n    levels: ["
        + ", ".join(["{delay: 1m, receivers: [a]}"] * 6)
        + "]\n"
    )
    with pytest.raises(ConfigFileError, match="1 to 5 levels"):
        load_config(am, six)


def test_matchers_follow_alertmanager() -> None:
    m = parse_matcher('severity=~"crit|warn"')
    assert m.matches({"severity": "crit"}) and not m.matches({"severity": "critical"})  # anchored
    assert parse_matcher("team=ops").matches({"team": "ops"})
    assert parse_matcher('foo=""').matches({})  # a missing label matches the empty string
    ms = parse_matchers('{a="x,y", b!="z", c!~"q.*"}')
    assert [(x.name, x.op, x.value) for x in ms] == [
        ("a", "=", "x,y"),
        ("b", "!=", "z"),
        ("c", "!~", "q.*"),
    ]
    assert parse_matcher(r'a="say \"hi\""').value == 'say "hi"'
    for bad in ("=x", "a~b", 'a="unterminated', 'a=~"("'):
        with pytest.raises(BadInputError):
            parse_matcher(bad)


def test_time_intervals() -> None:
    # 2023-11-14 is a Tuesday; 22:13 UTC is 23:13 in Berlin
    ti = parse_interval(
        {
            "weekdays": ["monday:friday"],
            "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "location": "Europe/Berlin",
        }
    )
    assert not ti.contains(1_700_000_000)
    assert ti.contains(1_700_000_000 - 10 * 3600)  # 13:13 Berlin
    assert parse_interval({"days_of_month": ["-17"]}).contains(1_700_000_000)  # the 14th of 30
    assert parse_interval({"months": ["november"], "years": ["2023:2024"]}).contains(1_700_000_000)
    assert not parse_interval({"weekdays": ["saturday", "sunday"]}).contains(1_700_000_000)


def test_cli_check_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from perfintel.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["alerts", "check-config", str(STOCK)])
    assert ok.exit_code == 0 and "SUCCESS" in ok.stdout and "4 receivers" in ok.stdout
    bad = tmp_path / "am.yml"
    bad.write_text(BASE.replace("receiver: a", "receiver: ghost"))
    res = runner.invoke(app, ["alerts", "check-config", str(bad)])
    assert res.exit_code == 1 and "undefined receiver 'ghost'" in res.output and ":2:" in res.output
