"""Start-up and shutdown failure paths of the real process: one clear line, the right exit code."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from tests.conftest import Server, free_port, run_perfintel, start_server

RW_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_second_server_on_the_same_data_directory_is_one_line(server: Server) -> None:
    done = run_perfintel("serve", "--data-dir", str(server.data_dir), "--port", str(free_port()))
    assert done.returncode == 1
    assert lines(done.stdout + done.stderr) == [
        f"error: data directory {server.data_dir} is in use by another perfintel "
        f"(pid {server.proc.pid}); stop it or choose another --data-dir"
    ]


def test_taken_port_is_one_line_and_nothing_says_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_perfintel("serve", "--data-dir", str(tmp_path / "d"), "--port", str(port))
    assert done.returncode == 1
    out = lines(done.stdout + done.stderr)
    assert len(out) == 1 and "listening" not in out[0]
    assert out[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_bad_setting_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    done = run_perfintel(
        "serve", "--data-dir", str(tmp_path / "d"), env={"PERFINTEL_STORAGE__RAW_RETENTION": "abc"}
    )
    assert done.returncode == 2
    out = lines(done.stdout + done.stderr)
    assert len(out) == 1 and "storage.raw_retention" in out[0]


def test_client_commands_without_a_server_are_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    f = tmp_path / "b.jsonl"
    f.write_text("")
    for args in (
        ("demo", "--url", url),
        ("query", "up", "--url", url),
        ("backup", str(f), "--url", url),
        ("restore", str(f), "--url", url),
        ("snapshot", "--url", url),
        ("ingest", str(f), "--url", url),
    ):
        done = run_perfintel(*args)
        assert done.returncode == 1, args
        out = lines(done.stdout + done.stderr)
        assert len(out) == 1, (args, out)
        assert out[0].startswith(f"error: cannot reach {url}: ") and "perfintel serve" in out[0]


def test_sigterm_under_ingest_drains_flushes_and_says_so(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    acked: list[int] = []
    stop = threading.Event()
    t0 = int(time.time() * 1000) - 600_000

    def writer(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            i = k
            while not stop.is_set():
                ts = t0 + np.arange(i * 500, (i + 1) * 500, dtype=np.int64)
                body = encode_remote_write(
                    SampleBatch.from_arrays(
                        label_set({"__name__": "sigterm", "w": str(k)}), ts, np.full(500, float(i))
                    )
                )
                try:
                    r = c.post("/api/v1/write", content=body, headers=RW_HEADERS)
                except httpx.HTTPError:
                    return  # the server closed: this one was never acknowledged
                if r.status_code == 204:
                    acked.append(i)
                i += 3

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=30)
    took = time.monotonic() - began
    stop.set()
    for t in threads:
        t.join()
    assert srv.proc.returncode == 0
    log = srv.log.read_text()
    assert "stopping on SIGTERM:" in log and "request(s) in flight" in log
    assert "stopped in" in log and "flushed from memory into" in log
    # "within a few seconds": the in-flight grace is 5 s; a stop that hangs shows here
    assert took < 15, took

    again = start_server(tmp_path / "data")
    try:
        r = httpx.get(again.url + "/api/v1/export", params={"match[]": "sigterm"}, timeout=60)
        got = {int(v) for line in r.content.splitlines() for v in _values(line)}
        assert set(acked) <= got
    finally:
        again.stop()


def _values(line: bytes) -> list[float]:
    import orjson

    return list(orjson.loads(line)["values"])


def test_access_log_is_off_by_default_and_on_with_the_flag(tmp_path: Path) -> None:
    quiet = start_server(tmp_path / "a")
    loud = start_server(tmp_path / "b", args=("--access-log",))
    try:
        for s in (quiet, loud):
            assert httpx.get(s.url + "/healthz").status_code == 200
        time.sleep(0.3)
        assert '"GET /healthz HTTP/1.1" 200' in loud.log.read_text()
        assert "GET /healthz" not in quiet.log.read_text()
    finally:
        quiet.stop()
        loud.stop()
