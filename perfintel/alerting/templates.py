"""Notification text: Jinja2 in a sandbox, overridable per receiver, HTML and text.

A template sees ``n`` (the notification: ``kind``, ``title``, ``alerts``,
``firing``, ``resolved``, ``group_labels``, ``common_labels``, ``level``,
``services``, ...), ``alerts`` (each with ``labels``, ``annotations``,
``status``, ``starts_at``, ``explanation``), ``explain(alert)`` (the evidence as
lines: value, expected band, anomaly score, forecast crossing with its interval
and confidence, series that moved with it), ``ack_url``, ``incident_url`` and
``external_url``. The sandbox refuses attribute tricks; a template that fails
(syntax, sandbox, undefined name) is logged and the default template is used,
so a notification is never dropped for a template's sake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from perfintel.alerting.notification import AlertSnapshot, Notification, rfc3339
from perfintel.alerting.notify_config import TemplateOverride

log = logging.getLogger(__name__)

DEFAULT_TITLE = (
    "{% if n.kind == 'resolved' %}[RESOLVED] {% elif n.kind == 'acknowledged' %}[ACK] "
    "{% elif n.level %}[L{{ n.level }}] {% elif n.kind == 'update' %}[UPDATE] {% else %}[FIRING:{{ n.firing|length }}] {% endif %}"
    "{{ n.title }}"
)
DEFAULT_TEXT = """\
{{ n.title }}
Incident {{ n.incident_id }} · {{ n.incident_state }}{% if n.flapping %} · flapping{% endif %}{% if n.level %} · escalation L{{ n.level }}{% endif %}{% if n.acked_by %} · acknowledged by {{ n.acked_by }}{% endif %}
{% if n.services %}Services: {{ n.services|join(', ') }}
{% endif %}{{ n.alert_count }} alert(s) in this incident; {{ n.firing|length }} firing, {{ n.resolved|length }} resolved in this message.
{% for a in alerts[:20] %}
- [{{ a.status }}] {{ a.labels.get('alertname', '') }} {{ label_text(a) }} since {{ time(a.starts_at) }}{% if a.fingerprint == n.root_fingerprint %} (likely root cause){% endif %}
{%- if a.annotations.get('summary') %}
  {{ a.annotations['summary'] }}{% endif %}
{%- for line in explain(a) %}
  {{ line }}{% endfor %}
{%- endfor %}
{% if alerts|length > 20 %}... and {{ alerts|length - 20 }} more
{% endif %}
{% if incident_url %}Incident: {{ incident_url }}
{% endif %}{% if ack_url and n.kind not in ('resolved', 'acknowledged') %}Acknowledge: {{ ack_url }}
{% endif %}"""
DEFAULT_HTML = """\
<html><body style="font-family: sans-serif">
<h2>{{ n.title }}</h2>
<p>Incident <b>{{ n.incident_id }}</b> &middot; {{ n.incident_state }}{% if n.flapping %} &middot; flapping{% endif %}{% if n.level %} &middot; escalation L{{ n.level }}{% endif %}{% if n.acked_by %} &middot; acknowledged by {{ n.acked_by }}{% endif %}</p>
{% if n.services %}<p>Services: {{ n.services|join(', ') }}</p>{% endif %}
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Status</th><th>Alert</th><th>Labels</th><th>Since</th><th>Evidence</th></tr>
{% for a in alerts[:50] %}<tr><td>{{ a.status }}</td><td>{{ a.labels.get('alertname', '') }}{% if a.fingerprint == n.root_fingerprint %} <b>(likely root cause)</b>{% endif %}</td>
<td>{{ label_text(a) }}</td><td>{{ time(a.starts_at) }}</td><td>{{ explain(a)|join('<br>'|safe) }}</td></tr>
{% endfor %}</table>
<p>{% if incident_url %}<a href="{{ incident_url }}">Open the incident</a>{% endif %}
{% if ack_url and n.kind not in ('resolved', 'acknowledged') %} &middot; <a href="{{ ack_url }}">Acknowledge</a>{% endif %}</p>
</body></html>"""


@dataclass(frozen=True)
class Rendered:
    title: str
    text: str
    html: str
    fell_back: bool = False


def explain(alert: AlertSnapshot) -> list[str]:
    """The evidence of an alert as short lines (from ``Alert.explanation``)."""
    e: Mapping[str, Any] = alert.explanation or {}
    lines: list[str] = []
    if "value" in e:
        lines.append(
            f"value: {_num(e['value'])}"
            + (f" (threshold {_num(e['threshold'])})" if "threshold" in e else "")
        )
    band = e.get("band") or e.get("expected")
    if isinstance(band, Mapping):
        lines.append(f"expected band: {_num(band.get('lower'))} .. {_num(band.get('upper'))}")
    elif isinstance(band, list | tuple) and len(band) == 2:
        lines.append(f"expected band: {_num(band[0])} .. {_num(band[1])}")
    score = e.get("anomaly_score", e.get("score"))
    if score is not None:
        lines.append(f"anomaly score: {_num(score)}")
    crossing = e.get("crossing") or e.get("crossing_at")
    if crossing is not None:
        if isinstance(crossing, Mapping):
            at = crossing.get("at")
            lo, hi = (
                crossing.get("lower", crossing.get("earliest")),
                crossing.get("upper", crossing.get("latest")),
            )
        else:
            at, lo, hi = crossing, None, None
        interval = e.get("crossing_interval")
        if isinstance(interval, list | tuple) and len(interval) == 2:
            lo, hi = interval
        text = f"forecast crossing: {_when(at)}"
        if lo is not None and hi is not None:
            text += f" (between {_when(lo)} and {_when(hi)})"
        lines.append(text)
    if "confidence" in e:
        lines.append(f"confidence: {_num(e['confidence'])}")
    moved = e.get("moved_with") or e.get("related_series")
    if moved:
        names = [
            m.get("series", str(m)) if isinstance(m, Mapping) else str(m) for m in list(moved)[:5]
        ]
        lines.append("moved with it: " + ", ".join(names))
    known = {
        "value",
        "threshold",
        "band",
        "expected",
        "anomaly_score",
        "score",
        "crossing",
        "crossing_at",
        "crossing_interval",
        "confidence",
        "moved_with",
        "related_series",
    }
    for k, v in e.items():
        if k not in known and isinstance(v, str | int | float):
            lines.append(f"{k}: {_num(v)}")
    return lines


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _when(v: Any) -> str:
    return rfc3339(float(v)) if isinstance(v, int | float) else str(v)


def _labels(alert: AlertSnapshot) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")


class Renderer:
    def __init__(
        self,
        default: TemplateOverride | None = None,
        per_receiver: Mapping[str, TemplateOverride] | None = None,
    ) -> None:
        self.env = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined)
        self.html_env = SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)
        for env in (self.env, self.html_env):
            env.globals.update(explain=explain, label_text=_labels, time=rfc3339)
        self._builtin = {
            "title": self.env.from_string(DEFAULT_TITLE),
            "text": self.env.from_string(DEFAULT_TEXT),
            "html": self.html_env.from_string(DEFAULT_HTML),
        }
        self.default = default or TemplateOverride()
        self.per_receiver = dict(per_receiver or {})
        self.errors = 0

    def render(
        self, n: Notification, *, ack_url: str = "", incident_url: str = "", external_url: str = ""
    ) -> Rendered:
        ctx = {
            "n": n,
            "alerts": list(n.alerts),
            "ack_url": ack_url,
            "incident_url": incident_url,
            "external_url": external_url,
        }
        override = self.per_receiver.get(n.receiver, TemplateOverride())
        fell_back = False
        parts: dict[str, str] = {}
        for part in ("title", "text", "html"):
            source = getattr(override, part) or getattr(self.default, part)
            if source:
                env = self.html_env if part == "html" else self.env
                try:
                    parts[part] = env.from_string(source).render(ctx)
                    continue
                except jinja2.TemplateError as exc:
                    self.errors += 1
                    fell_back = True
                    log.warning(
                        "template %s for receiver %s failed (%s: %s); using the default template",
                        part,
                        n.receiver,
                        type(exc).__name__,
                        exc,
                    )
            parts[part] = self._builtin[part].render(ctx)
        return Rendered(parts["title"].strip()[:500], parts["text"], parts["html"], fell_back)
