"""Alert scenarios for ``alert_noise.py``: 24 hours of cascading incidents, flapping and singles.

A generator is ``fn(seed: int) -> list[dict]``; each dict is one alert:
``{"labels": {...}, "episodes": [[start_s, end_s], ...], "group": "incident:N" | "flap" |
"single"}`` with times in scenario seconds from 0 to 86,400. Any function of that shape
can be passed to the benchmark (``--generator module:function``).

- ``cascade``: 72 services in six tiers, each depending on one to three services of the
  tier below; an incident starts at a low-tier service and spreads to its dependents
  minute by minute (several alert names and instances per service, >= 100 firings),
  plus slow and fast flappers and five unrelated single alerts at random times.
- ``zone_outage``: a different shape on purpose: 80 services in three zones; an
  incident takes a zone down within about two minutes (instance, latency and error
  alerts together), slower flappers, and singles placed inside incident windows too.
- ``regional_degradation``: a third shape, written to check that the noise rules are
  not tuned to the first two: slow regional degradations that start service by service
  over 15-35 minutes, errors turning critical, pods restarting more than once; bursty
  flappers with irregular periods; eight singles, some short, critical or inside incidents.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

DAY = 86_400.0
CASCADE_NAMES = [
    "HighLatency",
    "HighErrorRate",
    "PodCrashLooping",
    "QueueBacklog",
    "SaturationCPU",
    "UpstreamTimeouts",
]
SINGLE_NAMES = [
    "CertificateExpiringSoon",
    "BackupJobFailed",
    "NTPClockSkew",
    "RAIDDegraded",
    "LicenseExpiring",
    "DNSResolutionSlow",
]


def _flappers(
    rng: random.Random,
    services: list[str],
    n: int,
    on: tuple[float, float],
    off: tuple[float, float],
) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        svc = rng.choice(services)
        start = rng.uniform(0, DAY * 0.3)
        stop = min(DAY - 3600, start + rng.uniform(6 * 3600, DAY))
        episodes = []
        t = start
        while t < stop:
            length = rng.uniform(*on)
            episodes.append([t, t + length])
            t += length + rng.uniform(*off)
        out.append(
            {
                "labels": {
                    "alertname": "DiskLatencyHigh",
                    "service": svc,
                    "instance": f"{svc}-disk-{i}",
                    "severity": "warning",
                },
                "episodes": episodes,
                "group": "flap",
            }
        )
    return out


def _incident_times(rng: random.Random, n: int) -> list[float]:
    while True:
        times = sorted(rng.uniform(1800, DAY - 4 * 3600) for _ in range(n))
        if all(b - a > 2.5 * 3600 for a, b in itertools.pairwise(times)):
            return times


def cascade(seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tiers = [[f"svc-{t}{i}" for i in range(12)] for t in range(6)]
    services = [s for tier in tiers for s in tier]
    dependents: dict[str, list[str]] = {s: [] for s in services}
    for t in range(1, 6):
        for s in tiers[t]:
            for dep in rng.sample(tiers[t - 1], rng.randint(1, 3)):
                dependents[dep].append(s)
    alerts: list[dict[str, Any]] = []
    for k, t0 in enumerate(_incident_times(rng, 3)):
        root = rng.choice(tiers[0] + tiers[1])
        duration = rng.uniform(40, 100) * 60
        delay = {root: 0.0}
        queue = [root]
        while queue:
            s = queue.pop(0)
            for d in dependents[s]:
                if d not in delay and rng.random() < 0.95:
                    delay[d] = delay[s] + rng.uniform(30, 240)
                    queue.append(d)
        firings = 0
        extra = 0
        while firings < 110:
            firings = 0
            batch = []
            for s, lag in sorted(delay.items(), key=lambda kv: kv[1]):
                names = rng.sample(CASCADE_NAMES, 2 + (extra > 0) + (s == root))
                for name in names:
                    for inst in range(1 + rng.randint(0, 1 + extra)):
                        start = t0 + lag + rng.uniform(0, 90)
                        end = t0 + duration + rng.uniform(-300, 600)
                        episodes = [[start, end]]
                        if rng.random() < 0.1:  # re-fires once during the incident
                            mid = start + (end - start) / 2
                            episodes = [[start, mid], [mid + 240, end]]
                        sev = "critical" if s == root or rng.random() < 0.15 else "warning"
                        batch.append(
                            {
                                "labels": {
                                    "alertname": name,
                                    "service": s,
                                    "instance": f"{s}-{inst}",
                                    "severity": sev,
                                    "cluster": "prod-eu",
                                    "team": f"team-{s[4]}",
                                },
                                "episodes": episodes,
                                "group": f"incident:{k}",
                            }
                        )
                        firings += len(episodes)
            extra += 1
        alerts.extend(batch)
    alerts.extend(_flappers(rng, services, 3, (180, 480), (180, 900)))
    alerts.extend(_flappers(rng, services, 2, (300, 900), (600, 2400)))
    for i, name in enumerate(rng.sample(SINGLE_NAMES, 5)):
        start = rng.uniform(600, DAY - 3 * 3600)
        svc = rng.choice(services)
        alerts.append(
            {
                "labels": {
                    "alertname": name,
                    "service": svc,
                    "instance": f"{svc}-x{i}",
                    "severity": rng.choice(["warning", "critical"]),
                    "cluster": "prod-eu",
                    "team": "team-ops",
                },
                "episodes": [[start, start + rng.uniform(1200, 5400)]],
                "group": "single",
            }
        )
    return alerts


def zone_outage(seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    zones = ["z-a", "z-b", "z-c"]
    services = [f"app{i:02d}" for i in range(80)]
    placement = {s: rng.sample(zones, 2) for s in services}
    alerts: list[dict[str, Any]] = []
    windows = []
    for k, t0 in enumerate(_incident_times(rng, 4)):
        zone = zones[k % 3]
        duration = rng.uniform(20, 70) * 60
        windows.append((t0, t0 + duration))
        hit = [s for s in services if zone in placement[s]]
        count = 0
        for s in hit:
            for name in ("InstanceDown", "HighLatencyP99", "Http5xxRate"):
                if name != "InstanceDown" and rng.random() < 0.3:
                    continue
                start = t0 + rng.uniform(0, 150)
                alerts.append(
                    {
                        "labels": {
                            "alertname": name,
                            "job": s,
                            "instance": f"{s}.{zone}:9100",
                            "zone": zone,
                            "severity": "page" if name == "InstanceDown" else "ticket",
                        },
                        "episodes": [[start, t0 + duration + rng.uniform(0, 300)]],
                        "group": f"incident:{k}",
                    }
                )
                count += 1
        assert count >= 100, count
    alerts.extend(_flappers(rng, services, 6, (120, 600), (600, 3000)))
    for i, name in enumerate(rng.sample(SINGLE_NAMES, 5)):
        if i < 2:  # inside an incident window
            a, b = windows[i]
            start = rng.uniform(a, b)
        else:
            start = rng.uniform(600, DAY - 3 * 3600)
        s = rng.choice(services)
        alerts.append(
            {
                "labels": {
                    "alertname": name,
                    "job": s,
                    "instance": f"{s}.ops:9100",
                    "zone": "z-ops",
                    "severity": "ticket",
                },
                "episodes": [[start, start + rng.uniform(900, 3600)]],
                "group": "single",
            }
        )
    return alerts


APP_NAMES = ["checkout", "search", "catalog", "cart", "auth", "payments", "profile", "media"]
INFRA_SINGLES = [
    ("CertificateExpiringSoon", "cert-manager"),
    ("BackupJobFailed", "backup"),
    ("NTPClockSkew", "chrony"),
    ("RAIDDegraded", "storage-node"),
    ("CronJobFailed", "report-cron"),
    ("CronJobFailed", "billing-cron"),
    ("DNSResolutionSlow", "coredns"),
    ("LicenseExpiring", "license-server"),
]
NOISY_NAMES = ["MemoryPressure", "GCPauseLong", "ConnPoolSaturated", "DiskLatencyHigh"]


def regional_degradation(seed: int = 3) -> list[dict[str, Any]]:
    """A third shape, to check that what the noise reduction does is not tuned to the others.

    96 services in four regions (each service in two); an incident is a *slow*
    degradation of one region: SLO burn alerts appear service after service over
    15-35 minutes (so the first few look like singles), latency and error alerts
    follow per pod minutes later, errors turn critical, pods restart more than once;
    recovery is staggered too. Eight singles on infrastructure services, some short
    (8 minutes), some critical, some inside incident windows, two with the same
    alert name hours apart; eight noisy flappers with irregular bursts of fast flips
    separated by quiet hours.
    """
    rng = random.Random(seed)
    regions = ["eu-west", "eu-central", "us-east", "ap-south"]
    services = [f"{name}-{i}" for name in APP_NAMES for i in range(12)]
    placement = {s: rng.sample(regions, 2) for s in services}
    alerts: list[dict[str, Any]] = []
    windows = []
    for k, t0 in enumerate(_incident_times(rng, 4)):
        region = rng.choice(regions)
        span = rng.uniform(15, 35) * 60
        duration = rng.uniform(45, 120) * 60
        windows.append((t0, t0 + duration))
        hit = [s for s in services if region in placement[s]]
        rng.shuffle(hit)
        onsets = sorted(rng.uniform(0, span) for _ in hit)
        firings = 0
        for s, onset in zip(hit, onsets, strict=True):
            begin = t0 + onset
            stop = t0 + duration + rng.uniform(-600, 900)
            base = {"service": s, "region": region, "namespace": s.split("-")[0]}

            def add(labels: dict[str, str], episodes: list[list[float]], k: int = k) -> int:
                alerts.append({"labels": labels, "episodes": episodes, "group": f"incident:{k}"})
                return len(episodes)

            firings += add(
                {**base, "alertname": "SLOBurnRateHigh", "severity": "warning"},
                [[begin, stop]],
            )
            for pod in range(rng.randint(1, 3)):
                inst = {**base, "pod": f"{s}-{region}-{pod}"}
                if rng.random() < 0.6:
                    a = begin + rng.uniform(60, 300)
                    firings += add(
                        {**inst, "alertname": "HighLatencyP99", "severity": "warning"},
                        [[a, stop - rng.uniform(0, 300)]],
                    )
                if rng.random() < 0.4:
                    a = begin + rng.uniform(120, 600)
                    firings += add(
                        {**inst, "alertname": "Http5xxRate", "severity": "critical"},
                        [[a, stop - rng.uniform(0, 600)]],
                    )
                if rng.random() < 0.25:  # restarts: two or three episodes
                    a = begin + rng.uniform(180, 900)
                    eps = []
                    for _ in range(rng.randint(2, 3)):
                        b = a + rng.uniform(120, 600)
                        if b >= stop:
                            break
                        eps.append([a, b])
                        a = b + rng.uniform(180, 900)
                    if eps:
                        firings += add(
                            {**inst, "alertname": "PodRestarting", "severity": "warning"}, eps
                        )
        assert firings >= 100, firings
    for i in range(8):
        svc = rng.choice(services)
        region = rng.choice(placement[svc])
        t = rng.uniform(0, DAY * 0.2)
        episodes = []
        for _ in range(rng.randint(1, 4)):  # bursts of fast flips, hours apart
            for _ in range(rng.randint(3, 12)):
                length = rng.uniform(45, 400)
                episodes.append([t, t + length])
                t += length + rng.uniform(60, 900)
            t += rng.uniform(2, 6) * 3600
            if t > DAY - 3600:
                break
        alerts.append(
            {
                "labels": {
                    "alertname": rng.choice(NOISY_NAMES),
                    "service": svc,
                    "region": region,
                    "pod": f"{svc}-{region}-n{i}",
                    "severity": "warning",
                },
                "episodes": [e for e in episodes if e[1] < DAY],
                "group": "flap",
            }
        )
    for i, (name, svc) in enumerate(INFRA_SINGLES):
        if i < 3:  # inside an incident window
            a, b = windows[i]
            start = rng.uniform(a, b)
        else:
            start = rng.uniform(600, DAY - 3 * 3600)
        length = 8 * 60 if i % 3 == 0 else rng.uniform(10, 60) * 60
        alerts.append(
            {
                "labels": {
                    "alertname": name,
                    "service": svc,
                    "region": "global",
                    "instance": f"{svc}-{i}",
                    "severity": "critical" if i % 4 == 1 else "warning",
                },
                "episodes": [[start, start + length]],
                "group": "single",
            }
        )
    return alerts
