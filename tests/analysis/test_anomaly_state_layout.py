"""States saved before the seasonal baseline kept its series' grid (layout 2, magic
``PIA2``: main's 4,057-byte exact and 899-byte compact states) load, migrated, and
carry on: the grid slot starts at "none seen" and is found again from the next value
other than 0 (``base.migrate``, ``CompactCodec.migrate``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from perfintel.analysis.anomaly import AnomalyDetector, Detector, Ensemble, OnlineRunner
from perfintel.analysis.anomaly.compact import compact_model
from perfintel.analysis.anomaly.steps import S_GRID
from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import STATE_FILE, OnlineAnomalyDetection
from perfintel.storage.memory import MemoryStore
from perfintel.telemetry import Registry

T0 = 1_790_000_000_000
MIN = 60_000
#: the ensemble's head: magic, name length, "ensemble", the seed
HEAD = 4 + 1 + 8 + 8
#: the seasonal baseline's grid slot: its f fields come first in the ensemble's row
GRID_F = S_GRID
#: main's layout: 4,057 bytes of exact state, 899 packed
OLD_EXACT, OLD_PACKED = 4057, 899


def _queue(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A queue length: counts, at 0 for a while, then a few items (the resolution floor
    binds: its learnt spread is below a count's)."""
    ts = T0 + MIN * np.arange(n, dtype=np.int64)
    v = np.random.default_rng(seed).poisson(0.5, n).astype(float)
    v[: n // 3] = 0.0
    return ts, v


def _old_exact(blob: bytes) -> bytes:
    """A state in main's layout, by hand: magic PIA2 and the f row without the grid slot."""
    nf = Ensemble().widths()["f"]
    f_row = np.frombuffer(blob, "<f8", count=nf, offset=HEAD)
    rest = blob[HEAD + 8 * nf :]
    old = b"PIA2" + blob[4:HEAD] + np.delete(f_row, GRID_F).tobytes() + rest
    assert len(old) == HEAD + OLD_EXACT
    return old


def test_an_exact_state_of_the_previous_layout_loads_and_carries_on() -> None:
    ts, v = _queue(3000, seed=2)
    ref = AnomalyDetector()
    full = ref.run_batch_full(ts, v)
    k = 2500  # the queue has moved by then: the series' grid is 1
    det = AnomalyDetector()
    det.run_batch_full(ts[:k], v[:k])
    old = _old_exact(det.get_state())
    again = Detector.from_state(old)
    assert again.model.field(again._st, "s.grid")[0] == 0.0  # none seen: found again
    runner = OnlineRunner(capacity=2)
    runner.set_state(1, old)
    runner.set_states(np.array([0]), np.frombuffer(old, np.uint8).reshape(1, -1))
    tail = again.run_batch_full(ts[k:], v[k:])
    both = runner.update_many_full(
        np.repeat([0, 1], len(v) - k), np.r_[ts[k:], ts[k:]], np.r_[v[k:], v[k:]]
    )
    for name in ("anomaly_score", "yhat", "yhat_lower", "yhat_upper", "score", "grid"):
        assert np.array_equal(tail[name], full[name][k:]), name
        assert np.array_equal(both[name][: len(v) - k], full[name][k:]), name
        assert np.array_equal(both[name][len(v) - k :], full[name][k:]), name
    # and the next save is in the current layout
    assert again.get_state() == ref.get_state()
    assert again.get_state()[:4] == b"PIA3"


def _old_packed(rows: np.ndarray, fmt: bytes) -> tuple[np.ndarray, bytes]:
    """Packed rows in main's layout, by hand: the f block (first) without the grid slot,
    and their format (magic PIA2, width 899)."""
    old = np.delete(rows, np.s_[8 * GRID_F : 8 * GRID_F + 8], axis=1)
    assert old.shape[1] == OLD_PACKED
    head = fmt[len(b"packed:") : len(b"packed:") + HEAD]
    return old, b"packed:PIA2" + head[4:] + str(OLD_PACKED).encode()


def test_packed_states_of_the_previous_layout_load_and_carry_on() -> None:
    n = 5
    series = [_queue(2000, seed=s) for s in range(n)]
    ts = np.stack([s[0] for s in series], axis=1).ravel()
    v = np.stack([s[1] for s in series], axis=1).ravel()
    ids = np.tile(np.arange(n), 2000)
    k = 1600 * n
    ref = OnlineRunner(compact_model(), capacity=n, compact=True)
    full = ref.update_many_full(ids, ts, v)
    first = OnlineRunner(compact_model(), capacity=n, compact=True)
    first.update_many_full(ids[:k], ts[:k], v[:k])
    old, fmt = _old_packed(first.get_packed(np.arange(n)), first.packed_format())
    again = OnlineRunner(compact_model(), capacity=n, compact=True)
    again.set_packed(np.arange(n), old, fmt)
    # the same states but for the grid, which is found again
    want = first._unpacked(np.arange(n))
    got = again._unpacked(np.arange(n))
    assert (got.f[:, GRID_F] == 0).all() and (want.f[:, GRID_F] == 1).all()
    got.f[:, GRID_F] = want.f[:, GRID_F]
    for part in ("f", "h", "b"):
        assert np.array_equal(getattr(got, part), getattr(want, part)), part
    tail = again.update_many_full(ids[k:], ts[k:], v[k:])
    for name in ("anomaly_score", "yhat", "yhat_lower", "yhat_upper", "score"):
        assert np.array_equal(tail[name], full[name][k:]), name
    assert np.array_equal(again.get_packed(np.arange(n)), ref.get_packed(np.arange(n)))


def _batches(n_series: int, rounds: range) -> list[SampleBatch]:
    """Queue lengths (counts) of ``n_series`` pods, one sample each per round."""
    out = []
    for r in rounds:
        vals = np.random.default_rng(r).poisson(2.0, n_series).astype(float)
        out.append(
            SampleBatch(
                [label_set({"__name__": "queue", "pod": f"p{i}"}) for i in range(n_series)],
                np.arange(n_series, dtype=np.int32),
                np.full(n_series, T0 + r * MIN, np.int64),
                vals,
            )
        )
    return out


def _to_old_layout(dump: bytes) -> bytes:
    """A worker's checkpoint as main's code wrote it: the same file, the packed rows and
    their format in the previous layout."""
    with np.load(io.BytesIO(dump)) as z:
        parts = {k: z[k] for k in z.files}
    rows, fmt = _old_packed(parts["states"], parts["packed"].tobytes())
    parts["states"], parts["packed"] = rows, np.frombuffer(fmt, np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **parts)
    return buf.getvalue()


class Discard:
    def append(self, batch: SampleBatch) -> int:
        return len(batch)


def _scores(s: MemoryStore, since: int) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """Every series' online anomaly scores from round ``since`` on."""
    got = s.select(parse_selector("anomaly_score"), T0 + since * MIN, 2**62)
    return {x.labels: x.values.tolist() for x in got}


def test_a_worker_checkpoint_of_the_previous_layout_restores_and_scores_on() -> None:
    """A bus worker's full checkpoint saved by main's code (and, over it, an incremental
    part saved by this code for some series): restored, the worker scores like the
    uninterrupted one."""
    data = _batches(40, range(200))
    ref_store = MemoryStore()
    ref = OnlineAnomalyDetection(ref_store, compact=True, keep_labels=False, registry=Registry())
    for b in data:
        ref.process(b)
    first = OnlineAnomalyDetection(Discard(), compact=True, keep_labels=False, registry=Registry())
    for b in data[:120]:
        first.process(b)
    full = _to_old_layout(first.dump_state())
    for b in data[120:150]:
        first.process(b)
    part = first.dump_state(np.arange(10))  # this layout's part for 10 series, over it
    for merged, since in ((False, 120), (True, 150)):
        store = MemoryStore()
        det = OnlineAnomalyDetection(store, compact=True, keep_labels=False, registry=Registry())
        assert det.restore_state(full) == 40
        if merged:
            assert det.restore_state(part, merge=True) == 10
        for b in data[120:]:  # samples not newer than a series' restored state are dropped
            det.process(b)
        want = _scores(ref_store, since)
        assert _scores(store, since) == want and len(want) == 40, merged


def test_a_state_file_of_the_previous_layout_in_the_data_dir_restores(tmp_path: Path) -> None:
    """The single-process detector's state file (exact states, labels) as main's code
    wrote it: after a restart the detector scores on like the uninterrupted one."""
    data = _batches(20, range(150))
    ref_store = MemoryStore()
    ref = OnlineAnomalyDetection(ref_store, registry=Registry())
    for b in data:
        ref.process(b)
    first = OnlineAnomalyDetection(Discard(), state_dir=tmp_path, registry=Registry())
    for b in data[:100]:
        first.process(b)
    first.save_state()
    path = tmp_path / STATE_FILE
    with np.load(path) as z:
        parts = {k: z[k] for k in z.files}
    parts["states"] = np.stack(
        [np.frombuffer(_old_exact(row.tobytes()), np.uint8) for row in parts["states"]]
    )
    with open(path, "wb") as f:
        np.savez(f, **parts)
    store = MemoryStore()
    again = OnlineAnomalyDetection(store, state_dir=tmp_path, registry=Registry())
    assert again.load_state() == 20
    for b in data[100:]:
        again.process(b)
    want = _scores(ref_store, 100)
    assert _scores(store, 100) == want and len(want) == 20
