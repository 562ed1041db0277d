"""Notification noise: perfintel against the real Alertmanager, same alerts, same alertmanager.yml.

A scenario generator (``benchmarks/alert_scenarios.py``, or any ``module:function``
of the same shape) gives 24 hours of alerts. They are replayed at a compressed
time scale into both servers at once, the way Prometheus sends them (every
evaluation step: each firing alert with ``endsAt`` a few steps ahead, resolved
alerts with their end time for a while after), through ``POST /api/v2/alerts``.
Both servers read the same ``alertmanager.yml`` (its timers scaled by the same
factor) whose webhook receivers point at a local HTTP server that records every
notification. Printed: raw firing alerts, notifications per system and receiver,
whether every incident got its first perfintel notification within
``group_wait + 5 s`` of its first firing, and whether every single alert was sent.

    python benchmarks/alert_noise.py                          # cascade scenario, 24 h in 6 min
    python benchmarks/alert_noise.py --generator benchmarks.alert_scenarios:zone_outage
    python benchmarks/alert_noise.py --speed 480 --seed 3

Needs Debian's ``prometheus-alertmanager`` (``apt-get install prometheus-alertmanager``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.alerting.model import fingerprint  # noqa: E402

YML = """\
global:
  resolve_timeout: 5m
route:
  receiver: ops
  group_by: ['alertname', 'cluster', 'service']
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
  routes:
    - matchers: ['severity=~"critical|page"']
      receiver: pager
receivers:
  - name: ops
    webhook_configs:
      - url: 'http://127.0.0.1:{port}/{system}/ops'
  - name: pager
    webhook_configs:
      - url: 'http://127.0.0.1:{port}/{system}/pager'
inhibit_rules:
  - source_matchers: ['alertname="InstanceDown"']
    target_matchers: ['alertname="HighLatencyP99"']
    equal: ['instance']
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def rfc3339(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[float, str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                _, system, receiver = self.path.split("/")
                with rec.lock:
                    rec.got.append((time.time(), system, receiver, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, system: str) -> list[tuple[float, str, dict[str, Any]]]:
        with self.lock:
            return [(t, r, b) for t, s, r, b in self.got if s == system]


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready:\n{log.read_text()[-3000:]}")


def run(generator: str, seed: int, speed: float, step: float, work: Path) -> dict[str, Any]:
    module, _, fn = generator.partition(":")
    alerts: list[dict[str, Any]] = getattr(importlib.import_module(module), fn)(seed)
    scenario_end = max(e[1] for a in alerts for e in a["episodes"])
    rec = Recorder()
    timers = {
        "group_wait": ms(30 / speed),
        "group_interval": ms(300 / speed),
        "repeat_interval": ms(4 * 3600 / speed),
    }
    group_wait = 30 / speed
    procs: list[subprocess.Popen[bytes]] = []
    try:
        am_port, pi_port = free_port(), free_port()
        for system in ("am", "pi"):
            (work / f"{system}.yml").write_text(YML.format(port=rec.port, system=system, **timers))
        am_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if am_bin is None:
            raise SystemExit(
                "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
            )
        am_log = work / "am.log"
        procs.append(
            subprocess.Popen(
                [
                    am_bin,
                    f"--config.file={work / 'am.yml'}",
                    f"--storage.path={work / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=am_log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        pi_log = work / "pi.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")}
        env.update(
            PERFINTEL_ALERTING__ALERTMANAGER_CONFIG=str(work / "pi.yml"),
            PERFINTEL_HOST_COLLECTOR__ENABLED="false",
            PERFINTEL_ANOMALY__ENABLED="false",
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "perfintel",
                    "serve",
                    "--data-dir",
                    str(work / "pi-data"),
                    "--port",
                    str(pi_port),
                ],
                stdout=pi_log.open("wb"),
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        )
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", procs[0], am_log)
        wait_ready(f"http://127.0.0.1:{pi_port}/readyz", procs[1], pi_log)
        urls = [
            f"http://127.0.0.1:{am_port}/api/v2/alerts",
            f"http://127.0.0.1:{pi_port}/api/v2/alerts",
        ]

        t0 = time.time() + 1.0
        first_sent: dict[tuple[int, int], float] = {}  # (alert, episode) -> first POST
        fired_episodes: set[tuple[int, int]] = set()
        resend_resolved = 15 * 60  # scenario seconds a resolved alert keeps being sent
        http = httpx.Client(timeout=10)
        pool = ThreadPoolExecutor(2)
        while True:
            now = time.time()
            s = (now - t0) * speed
            if s > scenario_end + resend_resolved:
                break
            batch = []
            for n, a in enumerate(alerts):
                for i, (start, end) in enumerate(a["episodes"]):
                    if start <= s < end:
                        batch.append(
                            {
                                "labels": a["labels"],
                                "startsAt": rfc3339(t0 + start / speed),
                                "endsAt": rfc3339(now + 4 * step),
                                "generatorURL": "http://bench/",
                            }
                        )
                        fired_episodes.add((n, i))
                        first_sent.setdefault((n, i), now)
                    elif end <= s < end + resend_resolved and (n, i) in fired_episodes:
                        batch.append(
                            {
                                "labels": a["labels"],
                                "startsAt": rfc3339(t0 + start / speed),
                                "endsAt": rfc3339(t0 + end / speed),
                                "generatorURL": "http://bench/",
                            }
                        )
            if batch:
                payload = json.dumps(batch)
                for resp in pool.map(
                    lambda u, payload=payload: http.post(
                        u, content=payload, headers={"content-type": "application/json"}
                    ),
                    urls,
                ):
                    if resp.status_code != 200:
                        raise SystemExit(f"POST failed: {resp.status_code} {resp.text[:300]}")
            time.sleep(max(0.0, step - (time.time() - now)))
        time.sleep(max(5.0, 3 * 300 / speed))  # let resolutions and last groups flush
        pool.shutdown()
        http.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        rec.server.shutdown()

    groups: dict[str, list[int]] = defaultdict(list)
    for n, a in enumerate(alerts):
        groups[a["group"]].append(n)
    raw = len(fired_episodes)
    out: dict[str, Any] = {
        "generator": generator,
        "seed": seed,
        "speed": speed,
        "raw_firing_alerts": raw,
        "alerts": len(alerts),
    }
    for system in ("am", "pi"):
        got = rec.of(system)
        per_receiver: dict[str, int] = defaultdict(int)
        firing_at: list[tuple[float, set[str]]] = []
        for t, receiver, body in got:
            per_receiver[receiver] += 1
            firing_at.append(
                (t, {al["fingerprint"] for al in body["alerts"] if al["status"] == "firing"})
            )
        firing_at.sort(key=lambda x: x[0])

        def first_notice(
            members: list[int], since: float, firing_at: list[tuple[float, set[str]]] = firing_at
        ) -> float | None:
            fps = {fingerprint(alerts[n]["labels"]) for n in members}
            return next((t for t, f in firing_at if t >= since and f & fps), None)

        incidents = []
        for g, members in sorted(groups.items()):
            if not g.startswith("incident:"):
                continue
            start = min(t for (n, _), t in first_sent.items() if n in set(members))
            noticed = first_notice(members, start)
            delay = None if noticed is None else round(noticed - start, 2)
            incidents.append(
                {
                    "incident": g,
                    "first_notification_s": delay,
                    "in_time": delay is not None and delay <= group_wait + 5,
                }
            )
        singles = [n for n in groups.get("single", []) if (n, 0) in first_sent]
        sent = [n for n in singles if first_notice([n], first_sent[(n, 0)]) is not None]
        out[system] = {
            "sent": [
                {
                    "t": round(t - t0, 2),
                    "receiver": r,
                    "status": b["status"],
                    "groupKey": b.get("groupKey"),
                    "alertnames": sorted({al["labels"].get("alertname", "") for al in b["alerts"]}),
                    "alerts": len(b["alerts"]),
                }
                for t, r, b in got
            ],
            "notifications": len(got),
            "firing_notifications": sum(1 for t, r, b in got if b["status"] == "firing"),
            "per_receiver": dict(per_receiver),
            "incidents": incidents,
            "singles_sent": len(sent),
            "singles": len(singles),
        }
    pi, am = out["pi"], out["am"]
    out["reduction_vs_raw"] = round(1 - pi["notifications"] / raw, 4) if raw else None
    out["ratio_vs_alertmanager"] = (
        round(pi["notifications"] / am["notifications"], 4) if am["notifications"] else None
    )
    out["targets"] = {
        ">=95% fewer than raw": out["reduction_vs_raw"] is not None
        and out["reduction_vs_raw"] >= 0.95,
        "<= 1/3 of Alertmanager": out["ratio_vs_alertmanager"] is not None
        and out["ratio_vs_alertmanager"] <= 1 / 3,
        "0 incidents missed": all(i["in_time"] for i in pi["incidents"]),
        "every single alert sent": pi["singles_sent"] == pi["singles"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--generator", default="benchmarks.alert_scenarios:cascade")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed", type=float, default=240.0, help="scenario seconds per real second")
    ap.add_argument(
        "--step",
        type=float,
        default=0.5,
        help="real seconds between sends (Prometheus's evaluation)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alert-noise-") as tmp:
        result = run(args.generator, args.seed, args.speed, args.step, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    pi, am = result["pi"], result["am"]
    print(
        f"scenario {result['generator']} seed {result['seed']}: {result['alerts']} alerts, {result['raw_firing_alerts']} raw firing alerts, 24 h at {result['speed']:g}x"
    )
    print(
        f"  Alertmanager: {am['notifications']:5d} notifications ({am['firing_notifications']} firing) {am['per_receiver']}"
    )
    print(
        f"  perfintel:    {pi['notifications']:5d} notifications ({pi['firing_notifications']} firing) {pi['per_receiver']}"
    )
    print(
        f"  perfintel vs raw: {result['reduction_vs_raw']:.1%} fewer; vs Alertmanager: {result['ratio_vs_alertmanager']:.3f}x"
    )
    for inc in pi["incidents"]:
        print(
            f"  {inc['incident']}: first perfintel notification {inc['first_notification_s']} s after its first firing ({'ok' if inc['in_time'] else 'LATE/MISSED'})"
        )
    print(
        f"  single alerts sent: {pi['singles_sent']}/{pi['singles']} (Alertmanager {am['singles_sent']}/{am['singles']})"
    )
    for name, ok in result["targets"].items():
        print(f"  target {name}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
