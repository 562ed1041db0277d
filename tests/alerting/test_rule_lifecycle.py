"""The alert lifecycle as Prometheus runs it, plus hysteresis and flap control; what gets sent."""

from __future__ import annotations

from perfintel.alerting.rules.lifecycle import (
    RESOLVED_RETENTION,
    ActiveAlert,
    FlapSettings,
    Result,
    advance,
    to_send,
)
from perfintel.model import LabelSet

KEY: LabelSet = (("alertname", "A"), ("instance", "x"))


def results(present: bool, held: bool = False, value: float = 1.0) -> dict[LabelSet, Result]:
    return {KEY: Result(KEY, {"s": f"v={value}"}, value, held=held)} if present else {}


def run(
    pattern: str,
    *,
    for_s: float = 0,
    keep_for: float = 0,
    flap: FlapSettings | None = None,
    step: float = 60,
) -> tuple[dict[LabelSet, ActiveAlert], list[str]]:
    """Evaluate a pattern ('1' present, 'h' held only, '0' absent) every ``step``; the states seen."""
    active: dict[LabelSet, ActiveAlert] = {}
    seen = []
    for i, c in enumerate(pattern):
        advance(
            active,
            results(c != "0", held=c == "h"),
            i * step,
            for_s=for_s,
            keep_firing_for_s=keep_for,
            flap=flap,
        )
        a = active.get(KEY)
        seen.append("-" if a is None else a.reported_state[0])
    return active, seen


def test_for_pending_then_firing_and_back() -> None:
    _, seen = run("1111110", for_s=180)
    assert "".join(seen) == "pppfffi"  # fires once active for 3 minutes; inactive when it stops


def test_pending_alert_that_stops_is_forgotten() -> None:
    active, seen = run("110", for_s=300)
    assert "".join(seen) == "pp-" and not active


def test_keep_firing_for() -> None:
    _, seen = run("11000000", keep_for=150)
    # fires at once (for 0); stays firing 150 s after the condition went away
    assert "".join(seen) == "ffffffii"[:2] + "fff" + "iii"


def test_hysteresis_holds_only_an_active_alert() -> None:
    _, seen = run("hh11hhh00", for_s=60)
    # a held result never starts an alert; once active it keeps it active until absent
    assert "".join(seen) == "--pffffii"


def test_resolved_alert_is_kept_for_the_retention_then_dropped() -> None:
    active: dict[LabelSet, ActiveAlert] = {}
    advance(active, results(True), 0, for_s=0)
    advance(active, {}, 60, for_s=0)
    assert active[KEY].state == "inactive" and active[KEY].resolved_at == 60
    advance(active, {}, 60 + RESOLVED_RETENTION, for_s=0)
    assert KEY in active
    advance(active, {}, 61 + RESOLVED_RETENTION, for_s=0)
    assert KEY not in active


def test_sends_like_prometheus() -> None:
    active: dict[LabelSet, ActiveAlert] = {}
    sent = []
    for t, present in [
        (0, True),
        (60, True),
        (120, True),
        (180, False),
        (240, False),
        (300, False),
    ]:
        advance(active, results(present), t, for_s=0)
        for a in to_send(active, t, interval_s=60, resend_delay_s=60):
            sent.append((t, a.starts_at, a.ends_at))
    # firing: at once, then when resend_delay has passed (strictly); ends_at 4 intervals ahead
    assert sent[0] == (0, 0, 240)
    assert sent[1] == (120, 0, 120 + 240)
    # resolved: at once with ends_at = when it resolved, then again after resend_delay
    assert sent[2] == (180, 0, 180)
    assert sent[3] == (300, 0, 180)
    assert len(sent) == 4


def test_pending_alerts_are_never_sent() -> None:
    active: dict[LabelSet, ActiveAlert] = {}
    advance(active, results(True), 0, for_s=300)
    assert to_send(active, 0, interval_s=60, resend_delay_s=0) == []


def test_flapping_notifies_once_instead_of_every_flip() -> None:
    flap = FlapSettings(window_s=3600, threshold=4)
    active: dict[LabelSet, ActiveAlert] = {}
    transitions = []  # what a receiver would see: firing/resolved changes per fingerprint
    last = None
    pattern = "10" * 20 + "0" * 90  # flips every minute for 40 minutes, then stays off
    for i, c in enumerate(pattern):
        t = i * 60.0
        advance(active, results(c == "1"), t, for_s=0, flap=flap)
        for a in to_send(active, t, interval_s=60, resend_delay_s=60):
            state = "resolved" if a.resolved(t) else "firing"
            if state != last:
                transitions.append((t, state, a.annotations.get("flapping")))
                last = state
    # without flap control: 40 changes. With it: fire, resolve, fire (flapping from the 4th
    # change on, reported firing), and one resolution once the window holds < 2 changes.
    assert [s for _, s, _ in transitions] == ["firing", "resolved", "firing", "resolved"]
    assert transitions[2][2] is None or transitions[2][2] == "true"
    assert transitions[-1][0] > 40 * 60  # only after it stopped flipping
    assert not any(a.flapping for a in active.values())


def test_flapping_alert_keeps_its_start() -> None:
    flap = FlapSettings(window_s=3600, threshold=4)
    active: dict[LabelSet, ActiveAlert] = {}
    starts = set()
    for i, c in enumerate("1010101010"):
        advance(active, results(c == "1"), i * 60.0, for_s=0, flap=flap)
        for a in to_send(active, i * 60.0, interval_s=60, resend_delay_s=0):
            if not a.resolved(i * 60.0):
                starts.add(a.starts_at)
    # before flapping: two spells (0 and 120); while flapping one start is reported
    assert len(starts) <= 3


def test_external_labels_are_added_unless_present() -> None:
    active: dict[LabelSet, ActiveAlert] = {}
    advance(active, results(True), 0, for_s=0)
    (a,) = to_send(
        active, 0, interval_s=60, resend_delay_s=60, external_labels={"dc": "x", "instance": "y"}
    )
    assert dict(a.labels) == {"alertname": "A", "instance": "x", "dc": "x"}
