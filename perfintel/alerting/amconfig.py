"""An ``alertmanager.yml`` read as it is, plus perfintel's extensions.

``load_config(path)`` / ``parse_config(text, path)`` return a ``NotifyConfig``
(plain data, in ``notify_config.py``) or raise ``ConfigFileError`` with the
file, the line and the reason — the checks Alertmanager itself makes (unknown
keys, receivers and time intervals that do not exist, a root route with
matchers, zero intervals, ``...`` mixed with other ``group_by`` labels, bad
matchers and durations).

Keys Alertmanager knows but perfintel does not deliver (``opsgenie_configs``,
``telegram_configs``, ...) are accepted and reported in ``warnings``: a stock
file must keep loading. ``templates`` (Go template files) are accepted and
listed; perfintel renders its own Jinja2 templates (see ``templates.py``).

perfintel's extensions live under the top-level key ``perfintel`` (the real
Alertmanager refuses unknown top-level keys, so a file with it is
perfintel-only) or in a separate file with the same content
(``alerting.notify_extensions``), which leaves ``alertmanager.yml`` valid for
both::

    perfintel:
      incidents: {window: 10m, correlate_labels: [service, host], dependencies: {api: [db]}}
      flapping: {window: 1h, threshold: 3}
      escalation_policies:
        - name: critical
          matchers: ['severity="critical"']
          levels: [{delay: 0s, receivers: [oncall]}, {delay: 15m, receivers: [lead]}]
      receivers: [{name: sms, sms_configs: [{url: ..., account_sid: ..., to: [...]}]}]
      templates: {text: ..., html: ..., receivers: {oncall: {text: ...}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from perfintel.alerting.matchers import LabelMatcher, from_legacy, parse_matcher
from perfintel.alerting.notify_config import (
    EscalationLevel,
    EscalationPolicy,
    Extensions,
    FlapSettings,
    IncidentSettings,
    InhibitRule,
    Integration,
    NotifyConfig,
    Receiver,
    Route,
    TemplateOverride,
)
from perfintel.alerting.time_intervals import IntervalError, TimeInterval, parse_interval
from perfintel.alerting.yaml_lines import LineDict, LineList, load_yaml
from perfintel.errors import BadInputError, ConfigFileError
from perfintel.timeparse import parse_duration_seconds

DELIVERED = {
    "webhook_configs": "webhook",
    "email_configs": "email",
    "slack_configs": "slack",
    "pagerduty_configs": "pagerduty",
    "msteams_configs": "msteams",
    "msteamsv2_configs": "msteamsv2",
    "sms_configs": "sms",  # perfintel's own (under perfintel.receivers)
}
# What Alertmanager knows and perfintel accepts without delivering.
NOT_DELIVERED = {
    "opsgenie_configs",
    "pushover_configs",
    "victorops_configs",
    "wechat_configs",
    "telegram_configs",
    "sns_configs",
    "webex_configs",
    "discord_configs",
    "jira_configs",
    "rocketchat_configs",
    "incidentio_configs",
}
_SEND_RESOLVED_DEFAULT = {
    "webhook": True,
    "email": False,
    "slack": False,
    "pagerduty": True,
    "msteams": True,
    "msteamsv2": True,
    "sms": False,
}
_GLOBAL_KEYS = {
    "resolve_timeout",
    "http_config",
    "smtp_from",
    "smtp_hello",
    "smtp_smarthost",
    "smtp_auth_username",
    "smtp_auth_password",
    "smtp_auth_password_file",
    "smtp_auth_secret",
    "smtp_auth_identity",
    "smtp_require_tls",
    "smtp_tls_config",
    "slack_api_url",
    "slack_api_url_file",
    "pagerduty_url",
    "opsgenie_api_url",
    "opsgenie_api_key",
    "opsgenie_api_key_file",
    "wechat_api_url",
    "wechat_api_secret",
    "wechat_api_corp_id",
    "victorops_api_url",
    "victorops_api_key",
    "victorops_api_key_file",
    "telegram_api_url",
    "webex_api_url",
    "jira_api_url",
    "rocketchat_api_url",
    "rocketchat_token",
    "rocketchat_token_id",
}
_ROUTE_KEYS = {
    "receiver",
    "group_by",
    "continue",
    "match",
    "match_re",
    "matchers",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "mute_time_intervals",
    "active_time_intervals",
    "routes",
}
_TOP_KEYS = {
    "global",
    "route",
    "receivers",
    "inhibit_rules",
    "time_intervals",
    "mute_time_intervals",
    "templates",
    "tracing",
    "perfintel",
}


def default_config() -> NotifyConfig:
    """No file configured: everything goes to a receiver with no integrations (API only)."""
    return NotifyConfig(route=Route(receiver="default"), receivers={"default": Receiver("default")})


def load_config(path: Path, extensions_path: Path | None = None) -> NotifyConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(str(path), None, f"cannot read: {exc.strerror}") from None
    ext_text = None
    if extensions_path is not None:
        try:
            ext_text = extensions_path.read_text()
        except OSError as exc:
            raise ConfigFileError(
                str(extensions_path), None, f"cannot read: {exc.strerror}"
            ) from None
    return parse_config(text, str(path), ext_text, str(extensions_path or ""))


def parse_config(
    text: str, path: str = "alertmanager.yml", ext_text: str | None = None, ext_path: str = ""
) -> NotifyConfig:
    doc = load_yaml(text, path)
    if doc is None:
        raise ConfigFileError(path, 1, "the file is empty")
    p = _Parser(path)
    if not isinstance(doc, LineDict):
        raise ConfigFileError(path, 1, "the top level must be a mapping")
    p.keys(doc, _TOP_KEYS, "the configuration")
    ext_doc: Any = doc.get("perfintel")
    ext_parser = p
    if ext_text is not None:
        if ext_doc is not None:
            raise ConfigFileError(
                path, doc.line_of("perfintel"), "extensions both here and in a separate file"
            )
        loaded = load_yaml(ext_text, ext_path)
        ext_doc = loaded.get("perfintel", loaded) if isinstance(loaded, LineDict) else loaded
        ext_parser = _Parser(ext_path)
    global_ = p.global_(doc.get("global") or LineDict(), doc)
    time_intervals: dict[str, list[TimeInterval]] = {}
    for key in ("time_intervals", "mute_time_intervals"):
        for name, entries in p.time_intervals(doc, key).items():
            if name in time_intervals:
                raise ConfigFileError(
                    path, doc.line_of(key), f"time interval {name!r} defined twice"
                )
            time_intervals[name] = entries
    receivers = p.receivers(doc.get("receivers"), doc.line_of("receivers"), global_)
    ext = ext_parser.extensions(ext_doc, receivers, global_) if ext_doc else Extensions()
    if "route" not in doc or not isinstance(doc["route"], LineDict):
        raise ConfigFileError(path, doc.line, "no route provided in config")
    route = p.route(doc["route"], None, receivers, time_intervals)
    for pol in ext.escalation_policies:
        for level in pol.levels:
            for r in level.receivers:
                if r not in receivers:
                    raise ConfigFileError(
                        ext_parser.path,
                        None,
                        f"escalation policy {pol.name!r}: undefined receiver {r!r}",
                    )
    inhibit = p.inhibit_rules(doc.get("inhibit_rules"))
    templates = [str(t) for t in (doc.get("templates") or [])]
    warnings = [
        f"receiver {r.name!r}: {kind} are accepted but not delivered by perfintel"
        for r in receivers.values()
        for kind in r.undelivered
    ]
    if templates:
        warnings.append("templates: Go template files are not used; perfintel renders Jinja2")
    return NotifyConfig(
        route=route,
        receivers=receivers,
        inhibit_rules=inhibit,
        time_intervals=time_intervals,
        global_=dict(global_),
        templates=templates,
        extensions=ext,
        resolve_timeout=global_["resolve_timeout"],
        source=text,
        path=path,
        warnings=warnings,
    )


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int | None, reason: str) -> ConfigFileError:
        return ConfigFileError(self.path, line, reason)

    def urls(self, node: LineDict, keys: tuple[str, ...]) -> None:
        """Refuse a URL field Alertmanager refuses: a scheme other than http(s) or no host
        (a receiver whose URL is "not a url" would fail every notification, silently)."""
        for key in keys:
            value = node.get(key)
            if not isinstance(value, str) or not value:
                continue
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https"):
                raise self.fail(
                    node.line_of(key), f"unsupported scheme {parts.scheme!r} for URL in {key}"
                )
            if not parts.netloc:
                raise self.fail(node.line_of(key), f"missing host for URL in {key}")

    def keys(self, node: LineDict, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                raise self.fail(node.line_of(key), f"unknown field {key!r} in {what}")

    def mapping(self, value: object, line: int, what: str) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(line, f"{what} must be a mapping")
        return value

    def seq(self, value: object, line: int, what: str) -> LineList:
        if value is None:
            empty = LineList()
            empty.line, empty.item_lines = line, []
            return empty
        if not isinstance(value, LineList):
            raise self.fail(line, f"{what} must be a list")
        return value

    def duration(
        self, node: LineDict, key: str, default: float, *, positive: bool = False
    ) -> float:
        if key not in node or node[key] is None:
            return default
        try:
            value = parse_duration_seconds(node[key])
        except ValueError as exc:
            raise self.fail(node.line_of(key), f"{key}: {exc}") from None
        if positive and value <= 0:
            raise self.fail(node.line_of(key), f"{key} cannot be zero")
        return value

    def matcher_list(self, node: LineDict, key: str) -> list[LabelMatcher]:
        out = []
        items = self.seq(node.get(key), node.line_of(key), key)
        for i, text in enumerate(items):
            try:
                out.append(parse_matcher(str(text)))
            except BadInputError as exc:
                raise self.fail(items.line_of(i), str(exc)) from None
        return out

    def legacy(self, node: LineDict, match_key: str, re_key: str) -> list[LabelMatcher]:
        match = node.get(match_key) or {}
        match_re = node.get(re_key) or {}
        for key, value in ((match_key, match), (re_key, match_re)):
            if not isinstance(value, Mapping):
                raise self.fail(node.line_of(key), f"{key} must be a mapping of label to value")
        try:
            return from_legacy(
                {str(k): str(v) for k, v in match.items()},
                {str(k): str(v) for k, v in match_re.items()},
            )
        except BadInputError as exc:
            raise self.fail(node.line_of(re_key), str(exc)) from None

    def global_(self, node: object, doc: LineDict) -> LineDict:
        g = self.mapping(node, doc.line_of("global"), "global")
        self.keys(g, _GLOBAL_KEYS, "global")
        out = LineDict(g)
        out.line, out.key_lines = g.line, dict(getattr(g, "key_lines", {}))
        out["resolve_timeout"] = self.duration(g, "resolve_timeout", 300.0, positive=True)
        out.setdefault("smtp_require_tls", True)
        out.setdefault("smtp_hello", "localhost")
        out.setdefault("pagerduty_url", "https://events.pagerduty.com/v2/enqueue")
        self.urls(out, tuple(k for k in out if str(k).endswith("_url")))
        return out

    def time_intervals(self, doc: LineDict, key: str) -> dict[str, list[TimeInterval]]:
        out: dict[str, list[TimeInterval]] = {}
        items = self.seq(doc.get(key), doc.line_of(key), key)
        for i, item in enumerate(items):
            entry = self.mapping(item, items.line_of(i), f"{key} entry")
            self.keys(entry, {"name", "time_intervals"}, f"{key} entry")
            name = entry.get("name")
            if not name:
                raise self.fail(entry.line, "time interval without a name")
            if name in out:
                raise self.fail(entry.line_of("name"), f"time interval {name!r} defined twice")
            parsed = []
            spans = self.seq(
                entry.get("time_intervals"), entry.line_of("time_intervals"), "time_intervals"
            )
            for j, span in enumerate(spans):
                data = self.mapping(span, spans.line_of(j), "a time interval")
                try:
                    parsed.append(parse_interval(data))
                except IntervalError as exc:
                    raise self.fail(spans.line_of(j), f"time interval {name!r}: {exc}") from None
            out[str(name)] = parsed
        return out

    def receivers(self, value: object, line: int, global_: LineDict) -> dict[str, Receiver]:
        out: dict[str, Receiver] = {}
        items = self.seq(value, line, "receivers")
        for i, item in enumerate(items):
            rec = self.receiver(self.mapping(item, items.line_of(i), "a receiver"), global_)
            if rec.name in out:
                raise self.fail(
                    items.line_of(i), f"notification config name {rec.name!r} is not unique"
                )
            out[rec.name] = rec
        return out

    def receiver(self, node: LineDict, global_: LineDict) -> Receiver:
        name = node.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(node.line, "missing name in receiver")
        integrations: list[Integration] = []
        undelivered: list[str] = []
        for key in node:
            if key == "name":
                continue
            if key in NOT_DELIVERED:
                undelivered.append(key)
                continue
            if key not in DELIVERED:
                raise self.fail(node.line_of(key), f"unknown field {key!r} in receiver {name!r}")
            kind = DELIVERED[key]
            entries = self.seq(node[key], node.line_of(key), key)
            for j, entry in enumerate(entries):
                cfg = self.mapping(entry, entries.line_of(j), f"{key} entry")
                self.integration(kind, cfg, name, global_)
                send_resolved = cfg.get("send_resolved", _SEND_RESOLVED_DEFAULT[kind])
                integrations.append(Integration(kind, j, dict(cfg), bool(send_resolved)))
        return Receiver(name, tuple(integrations), tuple(undelivered))

    def integration(self, kind: str, cfg: LineDict, receiver: str, g: LineDict) -> None:
        def need(*keys: str, what: str) -> None:
            if not any(cfg.get(k) for k in keys):
                raise self.fail(cfg.line, f"receiver {receiver!r}: {what}")

        self.urls(cfg, ("url", "api_url", "webhook_url"))
        if kind == "webhook":
            need("url", "url_file", what="one of url or url_file must be configured")
        elif kind == "email":
            need("to", what="missing to address in email config")
            if not (cfg.get("smarthost") or g.get("smtp_smarthost")):
                raise self.fail(cfg.line, "no global SMTP smarthost set")
            if not (cfg.get("from") or g.get("smtp_from")):
                raise self.fail(cfg.line, "no global SMTP from set")
        elif kind == "slack":
            if not (cfg.get("api_url") or cfg.get("api_url_file") or g.get("slack_api_url")):
                raise self.fail(cfg.line, "no global Slack API URL set")
        elif kind == "pagerduty":
            need(
                "routing_key",
                "routing_key_file",
                "service_key",
                "service_key_file",
                what="missing service or routing key in PagerDuty config",
            )
        elif kind in ("msteams", "msteamsv2"):
            need(
                "webhook_url",
                "webhook_url_file",
                what="one of webhook_url or webhook_url_file must be configured",
            )
        elif kind == "sms":
            need("url", what="sms_configs need url (the Twilio-compatible API base)")
            need("to", what="sms_configs need to (a list of numbers)")
            need("from", what="sms_configs need from")
        for key in ("timeout",):
            if key in cfg:
                self.duration(cfg, key, 0.0)

    def route(
        self,
        node: LineDict,
        parent: Route | None,
        receivers: Mapping[str, Receiver],
        intervals: Mapping[str, list[TimeInterval]],
        index: int = 0,
    ) -> Route:
        self.keys(node, _ROUTE_KEYS, "route")
        matchers = self.legacy(node, "match", "match_re") + self.matcher_list(node, "matchers")
        receiver = node.get("receiver") or (parent.receiver if parent else None)
        if parent is None:
            if not receiver:
                raise self.fail(node.line, "root route must specify a default receiver")
            if matchers:
                raise self.fail(node.line, "root route must not have any matchers")
            if node.get("continue"):
                raise self.fail(node.line_of("continue"), "cannot have continue in root route")
            for key in ("mute_time_intervals", "active_time_intervals"):
                if node.get(key):
                    raise self.fail(node.line_of(key), f"root route must not have any {key}")
        if receiver not in receivers:
            raise self.fail(
                node.line_of("receiver"), f"undefined receiver {receiver!r} used in route"
            )
        group_by = parent.group_by if parent else ()
        group_all = parent.group_by_all if parent else False
        if "group_by" in node:
            labels = [
                str(x) for x in self.seq(node["group_by"], node.line_of("group_by"), "group_by")
            ]
            if "..." in labels:
                if len(labels) > 1:
                    raise self.fail(
                        node.line_of("group_by"),
                        "cannot have wildcard group_by (`...`) and other labels at the same time",
                    )
                group_all, group_by = True, ()
            else:
                if len(set(labels)) != len(labels):
                    raise self.fail(node.line_of("group_by"), "duplicated label in group_by")
                group_all, group_by = False, tuple(labels)
        mute = tuple(
            str(x)
            for x in self.seq(
                node.get("mute_time_intervals"),
                node.line_of("mute_time_intervals"),
                "mute_time_intervals",
            )
        )
        active = tuple(
            str(x)
            for x in self.seq(
                node.get("active_time_intervals"),
                node.line_of("active_time_intervals"),
                "active_time_intervals",
            )
        )
        for key, names in (("mute_time_intervals", mute), ("active_time_intervals", active)):
            for n in names:
                if n not in intervals:
                    raise self.fail(
                        node.line_of(key), f"undefined time interval {n!r} used in route"
                    )
        route = Route(
            receiver=str(receiver),
            group_by=group_by,
            group_by_all=group_all,
            matchers=tuple(matchers),
            continue_=bool(node.get("continue", False)),
            group_wait=self.duration(node, "group_wait", parent.group_wait if parent else 30.0),
            group_interval=self.duration(
                node, "group_interval", parent.group_interval if parent else 300.0, positive=True
            ),
            repeat_interval=self.duration(
                node,
                "repeat_interval",
                parent.repeat_interval if parent else 14400.0,
                positive=True,
            ),
            mute_time_intervals=mute,
            active_time_intervals=active,
        )
        matcher_text = "{" + ",".join(str(m) for m in matchers) + "}"
        route.key = matcher_text if parent is None else f"{parent.key}/{matcher_text}"
        route.id = "0" if parent is None else f"{parent.id}.{index}"
        children = self.seq(node.get("routes"), node.line_of("routes"), "routes")
        for i, child in enumerate(children):
            route.routes.append(
                self.route(
                    self.mapping(child, children.line_of(i), "a route"),
                    route,
                    receivers,
                    intervals,
                    i,
                )
            )
        return route

    def inhibit_rules(self, value: object) -> list[InhibitRule]:
        out = []
        items = self.seq(value, 0, "inhibit_rules")
        allowed = {
            "source_match",
            "source_match_re",
            "source_matchers",
            "target_match",
            "target_match_re",
            "target_matchers",
            "equal",
        }
        for i, item in enumerate(items):
            node = self.mapping(item, items.line_of(i), "an inhibit rule")
            self.keys(node, allowed, "inhibit rule")
            source = self.legacy(node, "source_match", "source_match_re") + self.matcher_list(
                node, "source_matchers"
            )
            target = self.legacy(node, "target_match", "target_match_re") + self.matcher_list(
                node, "target_matchers"
            )
            equal = [str(x) for x in self.seq(node.get("equal"), node.line_of("equal"), "equal")]
            out.append(InhibitRule(tuple(source), tuple(target), tuple(equal)))
        return out

    def extensions(
        self, value: object, receivers: dict[str, Receiver], global_: LineDict
    ) -> Extensions:
        node = self.mapping(value, 0, "perfintel")
        self.keys(
            node,
            {
                "incidents",
                "flapping",
                "escalation_policies",
                "receivers",
                "templates",
                "ack_link_ttl",
            },
            "perfintel",
        )
        extra = self.seq(node.get("receivers"), node.line_of("receivers"), "perfintel.receivers")
        for i, item in enumerate(extra):
            rec = self.receiver(self.mapping(item, extra.line_of(i), "a receiver"), global_)
            if rec.name in receivers:
                raise self.fail(
                    extra.line_of(i), f"notification config name {rec.name!r} is not unique"
                )
            receivers[rec.name] = rec
        inc = IncidentSettings()
        if node.get("incidents") is not None:
            n = self.mapping(node["incidents"], node.line_of("incidents"), "perfintel.incidents")
            self.keys(
                n,
                {
                    "enabled",
                    "window",
                    "correlate_labels",
                    "service_label",
                    "dependencies",
                    "learn_dependencies",
                    "storm_alerts",
                    "resolve_hold",
                },
                "perfintel.incidents",
            )
            deps = n.get("dependencies") or {}
            if not isinstance(deps, Mapping):
                raise self.fail(
                    n.line_of("dependencies"),
                    "dependencies must map a service to the services it depends on",
                )
            inc = IncidentSettings(
                enabled=bool(n.get("enabled", True)),
                window=self.duration(n, "window", 0.0, positive=True) if "window" in n else None,
                correlate_labels=tuple(
                    str(x)
                    for x in self.seq(
                        n.get("correlate_labels"), n.line_of("correlate_labels"), "correlate_labels"
                    )
                )
                if "correlate_labels" in n
                else inc.correlate_labels,
                service_label=str(n.get("service_label", "service")),
                dependencies={str(k): tuple(str(x) for x in (v or [])) for k, v in deps.items()},
                learn_dependencies=bool(n.get("learn_dependencies", True)),
                storm_alerts=int(n.get("storm_alerts", inc.storm_alerts)),
                resolve_hold=self.duration(n, "resolve_hold", 0.0) if "resolve_hold" in n else None,
            )
        flap = FlapSettings()
        if node.get("flapping") is not None:
            n = self.mapping(node["flapping"], node.line_of("flapping"), "perfintel.flapping")
            self.keys(n, {"window", "threshold"}, "perfintel.flapping")
            flap = FlapSettings(
                window=self.duration(n, "window", 0.0, positive=True) if "window" in n else None,
                threshold=int(n.get("threshold", 3)),
            )
        policies = []
        items = self.seq(
            node.get("escalation_policies"),
            node.line_of("escalation_policies"),
            "escalation_policies",
        )
        for i, item in enumerate(items):
            policies.append(
                self.policy(self.mapping(item, items.line_of(i), "an escalation policy"))
            )
        names = [p.name for p in policies]
        if len(set(names)) != len(names):
            raise self.fail(items.line, "escalation policy names must be unique")
        default_t, per_receiver = TemplateOverride(), {}
        if node.get("templates") is not None:
            n = self.mapping(node["templates"], node.line_of("templates"), "perfintel.templates")
            self.keys(n, {"title", "text", "html", "receivers"}, "perfintel.templates")
            default_t = TemplateOverride(n.get("title"), n.get("text"), n.get("html"))
            recs = n.get("receivers") or {}
            for rname, t in recs.items():
                if rname not in receivers:
                    raise self.fail(
                        n.line_of("receivers"), f"templates for undefined receiver {rname!r}"
                    )
                tm = self.mapping(t, n.line_of("receivers"), "a receiver's templates")
                self.keys(tm, {"title", "text", "html"}, "a receiver's templates")
                per_receiver[rname] = TemplateOverride(
                    tm.get("title"), tm.get("text"), tm.get("html")
                )
        return Extensions(
            incidents=inc,
            flapping=flap,
            escalation_policies=tuple(policies),
            default_template=default_t,
            receiver_templates=per_receiver,
            ack_link_ttl=self.duration(node, "ack_link_ttl", 86400.0, positive=True),
        )

    def policy(self, node: LineDict) -> EscalationPolicy:
        self.keys(node, {"name", "matchers", "levels", "repeat"}, "escalation policy")
        return parse_policy(dict(node), self, node)


def _line_dict(data: Mapping[str, Any]) -> LineDict:
    """Plain data (an API body) in the loader's shape, without lines."""
    node = LineDict({str(k): _lined(v) for k, v in data.items()})
    node.line, node.key_lines = 0, {}
    return node


def _lined(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _line_dict(value)
    if isinstance(value, list):
        out = LineList(_lined(v) for v in value)
        out.line, out.item_lines = 0, []
        return out
    return value


def parse_receiver(
    data: Mapping[str, Any], global_: Mapping[str, Any], source: str = "(request)"
) -> Receiver:
    """A receiver from a mapping in ``alertmanager.yml``'s shape (an API body)."""
    try:
        return _Parser(source).receiver(_line_dict(data), _line_dict(global_))
    except ConfigFileError as exc:
        raise BadInputError(exc.reason) from None


def parse_policy(
    data: Mapping[str, Any], parser: _Parser | None = None, node: LineDict | None = None
) -> EscalationPolicy:
    """An escalation policy from a mapping (a config entry or an API body)."""

    def fail(reason: str) -> Exception:
        if parser is not None and node is not None:
            return parser.fail(node.line, reason)
        return BadInputError(reason)

    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise fail("an escalation policy needs a name")
    levels = data.get("levels") or []
    if not isinstance(levels, list) or not 1 <= len(levels) <= 5:
        raise fail(f"escalation policy {name!r}: levels must be a list of 1 to 5 levels")
    parsed = []
    for i, level in enumerate(levels):
        if not isinstance(level, Mapping) or not level.get("receivers"):
            raise fail(f"escalation policy {name!r} level {i + 1}: needs receivers")
        try:
            delay = parse_duration_seconds(level.get("delay", 0))
        except ValueError as exc:
            raise fail(f"escalation policy {name!r} level {i + 1}: delay: {exc}") from None
        recs = level["receivers"]
        if isinstance(recs, str) or not isinstance(recs, list):
            raise fail(f"escalation policy {name!r} level {i + 1}: receivers must be a list")
        parsed.append(EscalationLevel(delay, tuple(str(r) for r in recs)))
    matchers = []
    for text in data.get("matchers") or []:
        try:
            matchers.append(parse_matcher(str(text)))
        except BadInputError as exc:
            raise fail(f"escalation policy {name!r}: {exc}") from None
    return EscalationPolicy(name, tuple(matchers), tuple(parsed), bool(data.get("repeat", False)))
