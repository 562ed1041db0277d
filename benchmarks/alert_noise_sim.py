"""Notification noise of perfintel's core alone, at simulated time (seconds, not minutes).

The same scenario generators and the same replay as ``alert_noise.py`` (a send every
``step x speed`` scenario seconds, firing alerts with ``endsAt`` four steps ahead,
resolved ones for 15 scenario minutes), but fed straight into ``NotifyCore`` with a
simulated clock and the timers unscaled (30 s / 5 m / 4 h): no Alertmanager, no HTTP,
no threads. It is for exploring many seeds and generators quickly; the figures of
record come from ``alert_noise.py`` against the real Alertmanager. The core's own
real-time constants (how long a resolved alert is remembered) are scaled by ``speed``
so the simulation sees what the compressed replay sees.

    python benchmarks/alert_noise_sim.py --generator benchmarks.alert_scenarios:zone_outage --seed 2
    python benchmarks/alert_noise_sim.py --generator benchmarks.alert_scenarios:regional_degradation --seeds 1-10
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.alert_noise import YML  # noqa: E402
from perfintel.alerting import dispatcher  # noqa: E402
from perfintel.alerting.amconfig import parse_config  # noqa: E402
from perfintel.alerting.dispatcher import NotifyCore  # noqa: E402
from perfintel.alerting.model import Alert, fingerprint  # noqa: E402
from perfintel.model import label_set  # noqa: E402

BASE = 1_000_000_000.0  # scenario second 0 (a start time of 0 would read as "unknown")
GROUP_WAIT = 30.0


def simulate(
    alerts: list[dict[str, Any]], speed: float = 240.0, step: float = 0.5
) -> dict[str, Any]:
    cfg = parse_config(
        YML.format(port=1, system="pi", group_wait="30s", group_interval="5m", repeat_interval="4h")
    )
    saved = dispatcher.RESOLVED_RETENTION, dispatcher.INCIDENT_RETENTION
    dispatcher.RESOLVED_RETENTION *= speed
    dispatcher.INCIDENT_RETENTION *= speed
    try:
        core = NotifyCore(cfg)
        sent: list[tuple[float, str, str, set[str]]] = []  # (t, receiver, status, firing fps)
        detail: list[tuple[float, str, str, str, str]] = []  # + incident, scenario groups
        label_sets = [label_set(a["labels"]) for a in alerts]
        fps = [fingerprint(a["labels"]) for a in alerts]
        group_of = {fp: a["group"] for fp, a in zip(fps, alerts, strict=True)}
        first_sent: dict[tuple[int, int], float] = {}
        every = step * speed
        resend_resolved = 15 * 60
        end = max(e[1] for a in alerts for e in a["episodes"]) + resend_resolved
        next_send = 0.0
        now = 0.0

        def tick(at: float) -> None:
            for note in core.tick(BASE + at):
                firing = {s.fingerprint for s in note.alerts if s.status == "firing"}
                sent.append((at, note.receiver, note.status, firing))
                where = sorted({group_of.get(s.fingerprint, "?") for s in note.alerts})
                detail.append(
                    (round(at), note.receiver, note.kind, note.incident_id[-6:], ",".join(where))
                )

        while next_send <= end:
            # ticks in between sends, whenever the core says something is due
            while True:
                due = core.next_due(BASE + now) - BASE
                if due >= next_send:
                    break
                now = due
                tick(now)
            now = next_send
            batch = []
            for n, a in enumerate(alerts):
                for i, (start, stop) in enumerate(a["episodes"]):
                    if start <= now < stop:
                        batch.append(Alert(label_sets[n], {}, BASE + start, BASE + now + 4 * every))
                        first_sent.setdefault((n, i), now)
                    elif stop <= now < stop + resend_resolved and (n, i) in first_sent:
                        batch.append(Alert(label_sets[n], {}, BASE + start, BASE + stop))
            if batch:
                core.receive(batch, BASE + now)
            tick(now)
            next_send += every
        for extra in range(1, 40):  # let the last resolutions through
            tick(end + extra * 30)
    finally:
        dispatcher.RESOLVED_RETENTION, dispatcher.INCIDENT_RETENTION = saved
    return {**score(alerts, fps, first_sent, sent), "detail": detail}


def score(
    alerts: list[dict[str, Any]],
    fps: list[str],
    first_sent: dict[tuple[int, int], float],
    sent: list[tuple[float, str, str, set[str]]],
) -> dict[str, Any]:
    groups: dict[str, list[int]] = defaultdict(list)
    for n, a in enumerate(alerts):
        groups[a["group"]].append(n)
    raw = len(first_sent)

    def first_notice(members: list[int], since: float) -> float | None:
        want = {fps[n] for n in members}
        return next((t for t, _, _, f in sent if t >= since and f & want), None)

    late = []
    for g, members in sorted(groups.items()):
        if g.startswith("incident:"):
            start = min(t for (n, _), t in first_sent.items() if n in set(members))
            t = first_notice(members, start)
            if t is None or t - start > GROUP_WAIT + 5 * 240:  # group_wait + 5 real s at 240x
                late.append(g)
    singles = [n for n in groups.get("single", []) if (n, 0) in first_sent]
    missed = [n for n in singles if first_notice([n], first_sent[(n, 0)]) is None]
    per_receiver: dict[str, int] = defaultdict(int)
    for _, r, _, _ in sent:
        per_receiver[r] += 1
    return {
        "raw": raw,
        "notifications": len(sent),
        "firing": sum(1 for s in sent if s[2] == "firing"),
        "per_receiver": dict(per_receiver),
        "reduction": round(1 - len(sent) / raw, 4) if raw else None,
        "incidents": sum(1 for g in groups if g.startswith("incident:")),
        "late_incidents": late,
        "singles": len(singles),
        "missed_singles": [alerts[n]["labels"].get("alertname") for n in missed],
        "sent": [(round(t), r, s, len(f)) for t, r, s, f in sent],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--generator", default="benchmarks.alert_scenarios:cascade")
    ap.add_argument("--seeds", default="1", help="a seed, or a range like 1-10")
    ap.add_argument("--speed", type=float, default=240.0)
    ap.add_argument("--json", action="store_true", help="also list every notification")
    args = ap.parse_args()
    module, _, fn = args.generator.partition(":")
    gen = getattr(importlib.import_module(module), fn)
    lo, _, hi = args.seeds.partition("-")
    worst = 1.0
    for seed in range(int(lo), int(hi or lo) + 1):
        try:
            alerts = gen(seed)
        except AssertionError as exc:  # the generator refuses a seed short of its own targets
            print(f"{fn} seed {seed}: the generator refused it ({exc!r})")
            continue
        r = simulate(alerts, args.speed)
        worst = min(worst, r["reduction"])
        ok = not r["late_incidents"] and not r["missed_singles"]
        print(
            f"{fn} seed {seed}: raw {r['raw']}, sent {r['notifications']} ({r['firing']} firing)"
            f" {r['per_receiver']} -> {r['reduction']:.1%} fewer;"
            f" incidents {r['incidents'] - len(r['late_incidents'])}/{r['incidents']} in time,"
            f" singles {r['singles'] - len(r['missed_singles'])}/{r['singles']}"
            f"{'' if ok else '  MISSED ' + str(r['late_incidents'] + r['missed_singles'])}"
        )
        if args.json:
            for d in r["detail"]:
                print("   ", *d)
    print(f"worst reduction: {worst:.1%}")


if __name__ == "__main__":
    main()
