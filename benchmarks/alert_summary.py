"""What the active-alerts summary adds to a notification round, by number of firing alerts.

The pipeline recomputes ``perfintel.alerting.summary.summarise`` after every
dispatcher round (the overview, the health scores and the stream's ``alerts``
topic read it). This prints, for 1,000 / 10,000 / 30,000 firing alerts
spread over 200 services, every one its own incident, the median
seconds of a steady-state ``NotifyCore.tick`` and of one ``summarise``, on
one core, so the summary's share of a round is seen.

Run: ``.venv/bin/python benchmarks/alert_summary.py``.
"""

from __future__ import annotations

import os
import statistics
import time

from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.model import Alert
from perfintel.alerting.summary import summarise

CONFIG = """\
route:
  receiver: ops
  group_by: [alertname, service]
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: ops
perfintel:
  incidents: {enabled: false}
"""
SEVERITIES = ("critical", "warning", "info")


def median_seconds(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"{'alerts':>8} {'tick s':>10} {'summarise s':>12} {'share':>7}")
    for n in (1_000, 10_000, 30_000):
        core = NotifyCore(parse_config(CONFIG))
        t = 1_700_000_000.0
        core.receive(
            [
                Alert.of(
                    {
                        "alertname": f"Rule{i % 50}",
                        "service": f"svc-{i % 200}",
                        "instance": f"host-{i % 1000}:9100",
                        "severity": SEVERITIES[i % 3],
                        "n": str(i),  # every alert its own fingerprint
                    },
                    starts_at=t,
                    ends_at=t + 3600,
                )
                for i in range(n)
            ],
            t,
        )
        core.tick(t)  # the first round opens the incidents
        core.changes.clear()
        assert len(core.alerts) == n
        repeat = 3 if n >= 30_000 else 9
        tick = median_seconds(lambda core=core, t=t: core.tick(t + 1), repeat)
        summ = median_seconds(lambda core=core, t=t: summarise(core, t + 1), repeat)
        print(f"{n:>8} {tick:>10.4f} {summ:>12.4f} {summ / (tick + summ):>7.0%}")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    main()
