"""The life of an alert: inactive → pending → firing → resolved, flap control, what to send.

Pure: no clock, no I/O. :func:`advance` applies one evaluation's results to a
rule's active alerts exactly as Prometheus's ``AlertingRule.Eval`` does
(``for``, ``keep_firing_for``, resolved alerts kept ``RESOLVED_RETENTION``
and re-sent meanwhile), plus perfintel's two additions:

* **hysteresis** — results marked ``held`` (from ``keep_firing_while`` or a
  kind's ``resolve_threshold``) keep an already active alert active but never
  start one;
* **flapping** — every change between firing and not firing is recorded; an
  alert with ``flap_threshold`` changes within ``flap_window`` is *flapping*:
  it is reported as firing (annotation ``flapping="true"``) whatever it does,
  so it notifies once instead of on every flip, and it leaves flapping when
  fewer than half that many changes remain in the window — then it is
  reported as what it is (resolved, if it stopped).

:func:`to_send` is Prometheus's ``sendAlerts``/``needsSending``: firing
alerts go out on every evaluation once ``resend_delay`` passed since the last
send, with ``ends_at`` = ``valid_until`` (``4 × max(interval, resend_delay)``
ahead, so the receiver resolves them by itself if perfintel stops); a
resolved alert goes out at once with ``ends_at`` = the time it resolved, and
again every ``resend_delay`` while it is retained. Pending alerts are never
sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from perfintel.alerting.model import Alert
from perfintel.model import LabelSet

State = Literal["inactive", "pending", "firing"]

#: how long a resolved alert is kept (and re-sent) after it resolved, as Prometheus
RESOLVED_RETENTION = 15 * 60.0


@dataclass
class Result:
    """One series of one evaluation, already turned into the alert's labels and annotations."""

    labels: LabelSet
    annotations: Mapping[str, str]
    value: float
    held: bool = False
    explanation: Mapping[str, object] = field(default_factory=dict)


@dataclass
class FlapSettings:
    window_s: float = 3600.0
    threshold: int = 4  # state changes within the window that make an alert flapping; 0: off


@dataclass
class ActiveAlert:
    """An alert of one rule, keyed by its label set (Prometheus's ``rules.Alert``)."""

    labels: LabelSet
    annotations: Mapping[str, str]
    state: State
    active_at: float
    value: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    last_sent_at: float | None = None
    valid_until: float | None = None
    keep_firing_since: float | None = None
    explanation: Mapping[str, object] = field(default_factory=dict)
    #: times the alert started or stopped firing, within the flap window
    changes: list[float] = field(default_factory=list)
    flapping_since: float | None = None
    #: ``starts_at`` reported while flapping (the first firing of the flapping spell)
    flap_started_at: float | None = None
    #: set whenever something worth persisting changed (the state store clears it)
    dirty: bool = True

    @property
    def flapping(self) -> bool:
        return self.flapping_since is not None

    @property
    def reported_state(self) -> State:
        """What the outside sees: a flapping alert is firing."""
        return "firing" if self.flapping else self.state

    @property
    def reported_starts_at(self) -> float:
        if self.flapping and self.flap_started_at is not None:
            return self.flap_started_at
        return self.fired_at if self.fired_at is not None else self.active_at

    def is_retained_resolved(self, now: float) -> bool:
        return (
            self.state == "inactive"
            and not self.flapping
            and self.resolved_at is not None
            and now - self.resolved_at <= RESOLVED_RETENTION
        )


def advance(
    active: dict[LabelSet, ActiveAlert],
    results: Mapping[LabelSet, Result],
    now: float,
    *,
    for_s: float,
    keep_firing_for_s: float = 0.0,
    flap: FlapSettings | None = None,
) -> None:
    """Apply one evaluation at ``now`` to ``active`` (mutated in place).

    ``results`` are this evaluation's series by alert labels; ``held`` ones
    only keep an active alert active (hysteresis).
    """
    for key, res in results.items():
        a = active.get(key)
        if a is not None and a.state != "inactive":
            a.value, a.annotations, a.explanation = res.value, res.annotations, res.explanation
            continue
        if res.held:
            continue
        if a is None:
            active[key] = ActiveAlert(
                res.labels, res.annotations, "pending", now, res.value, explanation=res.explanation
            )
        else:  # resolved and back: a new pending spell; the flap history stays
            a.state, a.active_at, a.value = "pending", now, res.value
            a.annotations, a.explanation = res.annotations, res.explanation
            a.fired_at = a.resolved_at = a.keep_firing_since = a.valid_until = None
            a.dirty = True
    for key in list(active):
        a = active[key]
        was_firing = a.state == "firing"
        r = results.get(key)
        if r is None or (r.held and a.state == "inactive"):
            keep = False
            if a.state == "firing" and keep_firing_for_s > 0:
                if a.keep_firing_since is None:
                    a.keep_firing_since = now
                    a.dirty = True
                keep = now - a.keep_firing_since < keep_firing_for_s
            if not keep:
                if a.state == "pending":
                    if not a.changes and not a.flapping:
                        del active[key]  # Prometheus forgets pending alerts that stop
                        continue
                    # keep the flap history; nothing to report (it never fired this spell)
                    a.state = "inactive"
                    a.dirty = True
                elif a.state == "firing":
                    a.state, a.resolved_at = "inactive", now
                    a.dirty = True
                elif _expired(a, now, flap):
                    del active[key]
                    continue
        else:
            if a.keep_firing_since is not None:
                a.keep_firing_since = None
                a.dirty = True
        if a.state == "pending" and now - a.active_at >= for_s:
            a.state, a.fired_at = "firing", now
            a.dirty = True
        if flap is not None and flap.threshold > 0:
            _track_flapping(a, was_firing, now, flap)


def _expired(a: ActiveAlert, now: float, flap: FlapSettings | None) -> bool:
    if a.flapping:
        return False
    if a.resolved_at is not None and now - a.resolved_at <= RESOLVED_RETENTION:
        return False
    # keep the flap history of an alert that may come back
    return not (flap is not None and a.changes and now - a.changes[-1] <= flap.window_s)


def _track_flapping(a: ActiveAlert, was_firing: bool, now: float, flap: FlapSettings) -> None:
    firing = a.state == "firing"
    if firing != was_firing:
        a.changes.append(now)
        a.dirty = True
    cut = now - flap.window_s
    if a.changes and a.changes[0] < cut:
        a.changes = [t for t in a.changes if t >= cut]
        a.dirty = True
    n = len(a.changes)
    if not a.flapping and n >= flap.threshold:
        a.flapping_since = now
        # changes only happen at a firing start or end, so fired_at is the spell's start
        a.flap_started_at = a.fired_at if a.fired_at is not None else now
        a.dirty = True
    elif a.flapping and a.state != "pending" and n < max(1, (flap.threshold + 1) // 2):
        a.flapping_since = None
        a.fired_at = a.flap_started_at if a.flap_started_at is not None else a.fired_at
        a.flap_started_at = None
        if not firing:
            a.resolved_at = now  # reported as resolved from now on, once
        a.dirty = True


def to_send(
    active: Mapping[LabelSet, ActiveAlert],
    now: float,
    *,
    interval_s: float,
    resend_delay_s: float,
    generator_url: str = "",
    external_labels: Mapping[str, str] | None = None,
) -> list[Alert]:
    """The alerts one evaluation sends (marks them sent), as Prometheus's ``sendAlerts``."""
    out: list[Alert] = []
    valid = now + 4 * max(interval_s, resend_delay_s)
    for a in active.values():
        state = a.reported_state
        if state == "pending":
            continue
        if state == "inactive":
            if a.resolved_at is None or now - a.resolved_at > RESOLVED_RETENTION:
                continue
            due = a.last_sent_at is None or a.resolved_at > a.last_sent_at
        else:
            due = False
        if not due and a.last_sent_at is not None and a.last_sent_at + resend_delay_s >= now:
            continue  # Prometheus: re-sent once resend_delay has passed, strictly
        if state == "firing":
            a.valid_until = valid
            ends_at = valid
        else:
            ends_at = a.resolved_at if a.resolved_at is not None else now
        annotations = dict(a.annotations)
        explanation = dict(a.explanation)
        if a.flapping:
            annotations["flapping"] = "true"
            explanation["flapping"] = {"since": a.flapping_since, "changes": len(a.changes)}
        labels = a.labels
        if external_labels:
            have = {k for k, _ in labels}
            extra = tuple((k, v) for k, v in external_labels.items() if k not in have and v)
            labels = tuple(sorted(labels + extra)) if extra else labels
        out.append(
            Alert(
                labels,
                annotations,
                starts_at=a.reported_starts_at,
                ends_at=ends_at,
                generator_url=generator_url,
                explanation=explanation,
            )
        )
        a.last_sent_at = now
    return out
