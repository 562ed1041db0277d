"""Online anomaly detection: every ingested sample scored as it arrives.

``OnlineAnomalyDetection`` is fed each ``SampleBatch`` the store has accepted
(``submit``: never blocks, never raises). A worker thread takes batches from a
bounded queue, scores them with one ``OnlineRunner`` (one state row per
analysed series, all series of a batch in one vectorised pass) and writes the
results back through ``store.append`` under vmanomaly's names, so vmalert rules
(``anomaly_score > 1``) and vmanomaly dashboards work unchanged::

    anomaly_score{<labels of the source minus __name__>, for="<source metric>"}
    yhat{...}  yhat_lower{...}  yhat_upper{...}

What is analysed: series matching any configured selector, except model
outputs (metric names ``anomaly_score``, ``yhat``, ``yhat_lower``,
``yhat_upper``, ``outlier_score``, and every series with a ``for`` label), up to
``max_series`` series (later ones are refused and counted).

Peer groups (``peer_groups``, see ``outliers_online.py``) are scored on the same
worker from the same batches: ``outlier_score{..., for="<metric>"}`` per member
and step. The detector is causal and
in-order: a sample not newer than its series' last analysed sample is dropped.
NaN samples (and staleness markers) are skipped.

Ingest never waits for the detector: when the queue is full the batch is
dropped and counted (``perfintel_anomaly_dropped_batches_total``).

State file ``<data_dir>/analysis/anomaly_state.npz`` (numpy ``savez``, loaded
with ``allow_pickle=False``), written every ``state_interval`` and at
``close``, atomically (temporary file, fsync, rename):

* ``format`` — int64 ``[FORMAT_VERSION]``;
* ``keys`` — uint64, each series' key (``perfintel.series_index.series_key``);
* ``labels`` — uint8, UTF-8 JSON of the list of label sets (``[[name, value], ...]``),
  or empty from a detector that keeps no labels (``keep_labels=False``: a bus worker,
  whose checkpoints are keyed by the series key alone);
* ``last_ts`` — int64, the last analysed timestamp of each series (ms);
* ``states`` — uint8 matrix, one row per series: ``OnlineRunner.get_state`` bytes
  (``Detector.get_state`` format, all of equal length for one model); or, from a
  compact detector (``compact``), its packed rows as held;
* ``partial`` — int64 ``[1]`` for an incremental part (only some series), else ``[0]``;
* ``packed`` — uint8, empty or the packed rows' format (``OnlineRunner.packed_format``):
  packed rows load only into a compact detector of the same configuration.

A file that cannot be read, was written by another model or by an earlier
detector version (format 1), is logged and ignored (the detector then learns
again from scratch). Format 2 (labels, no keys) loads, the keys computed from the
labels. States (exact or packed) of the detector's previous layout (magic ``PIA2``,
before the seasonal baseline kept its series' grid) load migrated (``VectorModel.migrate``).

Memory per series: the state row (``OnlineRunner``), its key in a numpy
``SeriesIndex``, ``last_ts`` and a changed flag — no Python object per series
unless ``keep_labels`` (the single-process detector keeps each label set for its
state file). Output labels are built per batch from the batch's own labels.

Thread-safety: ``submit``, ``wait_idle`` and ``close`` may be called from any
thread; the runner, the series map and the state file belong to the worker.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import orjson

from perfintel.analysis.anomaly import OnlineRunner
from perfintel.analysis.anomaly.compact import compact_model
from perfintel.batch import SampleBatch
from perfintel.config import Settings
from perfintel.errors import PerfintelError
from perfintel.model import METRIC_NAME, LabelSet, Selector, metric_name, parse_selector
from perfintel.performance.outliers_online import OnlinePeerOutliers, PeerGroupSpec
from perfintel.performance.outputs import FOR_LABEL, OUTPUT_NAMES
from perfintel.series_index import ABSENT, SeriesIndex, series_keys
from perfintel.storage.base import SampleWriter
from perfintel.telemetry import Counter, Gauge, Registry

log = logging.getLogger(__name__)

_DETECTOR_OUTPUTS = OUTPUT_NAMES[:4]
STATE_FILE = "anomaly_state.npz"
#: 2: the detector's state layout of the single compiled implementation; files of
#: format 1 (the earlier detector) are discarded with a log line at start-up.
#: 3: series keys beside (or instead of) the labels.
FORMAT_VERSION = 3
_READABLE = (2, 3)
#: prefix of a compressed ``dump_state`` (uncompressed dumps are zip files: "PK")
COMPRESSED = b"PIZ1"

_EXCLUDED = -1
_REFUSED = -2
_STOP = object()


class _Deflate(io.RawIOBase):
    """A write-only stream that keeps only the zlib-compressed bytes written to it
    (``np.savez`` writes an array in chunks of 16 MiB; zipfile copes with a stream
    that cannot seek)."""

    def __init__(self) -> None:
        super().__init__()
        self._z = zlib.compressobj(1)
        self._out = [COMPRESSED]
        self._n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self._out.append(self._z.compress(b))
        self._n += len(b)
        return len(b)

    def tell(self) -> int:
        return self._n

    def getvalue(self) -> bytes:
        return b"".join([*self._out, self._z.flush()])


def _output_base(labels: LabelSet) -> tuple[LabelSet, int]:
    """The outputs' labels but ``__name__`` (sorted, with ``for``) and where it goes."""
    name = metric_name(labels)
    base = sorted([*((k, v) for k, v in labels if k != METRIC_NAME), (FOR_LABEL, name)])
    return tuple(base), bisect.bisect_left([k for k, _ in base], METRIC_NAME)


class AnomalyMetrics:
    """The detector's self-metrics, registered on the service's registry."""

    def __init__(self, registry: Registry | None) -> None:
        r = registry if registry is not None else Registry()
        self.registry = r
        self.dropped_batches = Counter(
            "perfintel_anomaly_dropped_batches_total",
            "Ingested batches the online anomaly detector dropped because its queue was full.",
            registry=r,
        )
        self.updates = Counter(
            "perfintel_anomaly_updates_total",
            "Samples scored by the online anomaly detector.",
            registry=r,
        )
        self.refused_series = Counter(
            "perfintel_anomaly_refused_series_total",
            "Series not analysed online because anomaly.max_series was reached.",
            registry=r,
        )
        self.series = Gauge(
            "perfintel_anomaly_series",
            "Series analysed by the online anomaly detector.",
            registry=r,
        )
        self.write_errors = Counter(
            "perfintel_anomaly_write_errors_total",
            "Batches of detector outputs the store refused.",
            registry=r,
        )
        self.peer_members = Gauge(
            "perfintel_outlier_members",
            "Series scored online as members of a peer group.",
            registry=r,
        )
        self.peer_late = Gauge(
            "perfintel_outlier_late_samples",
            "Samples of peer-group members that arrived after their step was scored (dropped).",
            registry=r,
        )

    def unregister(self) -> None:
        for m in (self.dropped_batches, self.updates, self.refused_series, self.write_errors):
            self.registry.unregister(m)
        for g in (self.series, self.peer_members, self.peer_late):
            self.registry.unregister(g)


def peer_group_specs(settings: Settings) -> list[PeerGroupSpec]:
    """The peer groups of ``anomaly.outlier_groups`` (scored online)."""
    return [
        PeerGroupSpec(
            parse_selector(g.selector),
            tuple(g.by),
            max(1, round(g.step * 1000)),
            max(1, round(g.window * 1000)),
        )
        for g in settings.anomaly.outlier_groups
    ]


class OnlineAnomalyDetection:
    """Score ingested samples on a worker thread and store the vmanomaly-named outputs.

    ``selectors`` are selector strings or parsed ``Selector``s (default: every
    series); ``state_dir`` ``None`` keeps no state file. ``start`` restores the
    state and starts the worker; ``close`` drains the queue, saves the state
    and stops it.
    """

    def __init__(
        self,
        store: SampleWriter,
        *,
        selectors: Sequence[str | Selector] = ('{__name__=~".+"}',),
        max_series: int = 100_000,
        queue_batches: int = 256,
        queue_samples: int = 2_000_000,
        state_dir: Path | None = None,
        state_interval_s: float = 300.0,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
        peer_groups: Sequence[PeerGroupSpec] = (),
        outlier_tolerance: float = 3.0,
        outlier_pct: float = 0.2,
        compact: bool = False,
        keep_labels: bool = True,
    ) -> None:
        self.store = store
        self.selectors = [s if isinstance(s, Selector) else parse_selector(s) for s in selectors]
        self.max_series = max_series
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.state_interval_s = state_interval_s
        self.clock = clock
        self.metrics = AnomalyMetrics(registry)
        self.runner = (
            OnlineRunner(compact_model(), capacity=64, compact=True)
            if compact
            else OnlineRunner(capacity=64)
        )
        #: series key -> runner row, or a negative verdict (excluded, refused)
        self._index = SeriesIndex()
        self._verdicts = 0  # negative entries in the index (bounded)
        self._n = 0  # series analysed (rows 0 .. n-1)
        self._keys = np.zeros(64, dtype=np.uint64)  # runner row -> series key
        #: runner row -> source labels (only with ``keep_labels``: the state file's)
        self.keep_labels = keep_labels
        self._labels: list[LabelSet] = []
        self._last_ts = np.full(64, np.iinfo(np.int64).min, dtype=np.int64)
        #: rows scored since ``take_changed`` (what an incremental checkpoint writes)
        self._changed = np.zeros(64, dtype=bool)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_batches)
        self.queue_samples = queue_samples
        self._queued_samples = 0  # samples of the batches in the queue (a bound on its memory)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._saved_at = clock()
        self._abandon = threading.Event()  # set by close: drop what is still queued
        self._abandoned = 0
        #: called with every batch of outputs stored (the live stream's hook); must not raise
        self.on_outputs: Callable[[SampleBatch], None] | None = None
        self.metrics.series.set_function(lambda: float(self._n))
        self.peers = OnlinePeerOutliers(
            peer_groups,
            excluded_names=OUTPUT_NAMES,
            max_members=max_series,
            tolerance=outlier_tolerance,
            pct=outlier_pct,
        )
        self.metrics.peer_members.set_function(lambda: float(self.peers.members))
        self.metrics.peer_late.set_function(lambda: float(self.peers.late_samples))

    @classmethod
    def from_settings(
        cls, store: SampleWriter, settings: Settings, registry: Registry | None = None
    ) -> OnlineAnomalyDetection:
        """Built from ``settings.anomaly``, the state kept under ``settings.data_dir/analysis``."""
        a = settings.anomaly
        groups = peer_group_specs(settings)
        return cls(
            store,
            selectors=a.selectors,
            max_series=a.max_series,
            queue_batches=a.queue_batches,
            queue_samples=a.queue_samples,
            state_dir=Path(settings.data_dir) / "analysis",
            state_interval_s=a.state_interval,
            registry=registry,
            peer_groups=groups,
            outlier_tolerance=a.outlier_tolerance,
            outlier_pct=a.outlier_pct,
            compact=a.compact_state == "on",
        )

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread; it first restores the saved state (if any).

        Restoring runs on the worker (about 0.15 ms a series) so the service is
        ready at once; batches submitted meanwhile wait in the queue.
        """
        self._thread = threading.Thread(target=self._run, name="perfintel-anomaly", daemon=True)
        self._thread.start()

    def close(self, drain_timeout_s: float | None = None) -> None:
        """Process the batches already queued, save the state and stop the worker.

        With ``drain_timeout_s``, batches still queued after that long are
        dropped (counted in ``perfintel_anomaly_dropped_batches_total`` and
        logged): a stopping service must not wait minutes for scores, and the
        samples themselves are stored already. Without ``start`` there is no
        state to save (and an existing file is kept).
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(drain_timeout_s)
            if thread.is_alive():
                self._abandon.set()
                thread.join()
            self.save_state()
        if self._abandoned:
            log.info(
                "anomaly detector: %d queued batch(es) left unscored at shutdown", self._abandoned
            )
        self.metrics.unregister()

    def submit(self, batch: SampleBatch) -> bool:
        """Queue a stored batch for scoring; ``False`` (and counted) when the queue is full."""
        if not len(batch):
            return True
        with self._idle:
            if self._queued_samples + len(batch) > self.queue_samples and self._queued_samples:
                self.metrics.dropped_batches.inc()  # the queue holds enough memory already
                return False
            self._pending += 1
            self._queued_samples += len(batch)
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._done(len(batch))
            self.metrics.dropped_batches.inc()
            return False
        return True

    def queue_depth(self) -> tuple[int, int]:
        """(batches waiting, queue capacity)."""
        return self._queue.qsize(), self._queue.maxsize

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted batch has been processed (``False`` on timeout)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _done(self, samples: int = 0) -> None:
        with self._idle:
            self._pending -= 1
            self._queued_samples -= samples
            if self._pending == 0:
                self._idle.notify_all()

    def _run(self) -> None:
        try:
            restored = self.load_state()
            if restored:
                log.info("anomaly detector: restored the state of %d series", restored)
        except Exception:
            log.exception("cannot restore the anomaly detector state")
        self._saved_at = self.clock()
        self._work()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, min(self.state_interval_s, 5.0)))
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, SampleBatch) and self._abandon.is_set():
                self._abandoned += 1
                self.metrics.dropped_batches.inc()
                self._done(len(item))
                continue
            if isinstance(item, SampleBatch):
                try:
                    self.process(item)
                except Exception:  # one bad batch must not stop online detection
                    log.exception("online anomaly detection failed on a batch")
                finally:
                    self._done(len(item))
            if self.clock() - self._saved_at >= self.state_interval_s:
                try:
                    self.save_state()
                except Exception:
                    log.exception("cannot save the anomaly detector state")
                self._saved_at = self.clock()

    # -- scoring ------------------------------------------------------------------
    def _rows_of(self, series: Sequence[LabelSet], keys: np.ndarray) -> np.ndarray:
        """The runner row of each series (by key), or a negative verdict; new series are
        judged (selectors, ``max_series``) once and remembered in the index."""
        rows = self._index.lookup(keys)
        new = np.flatnonzero(rows == ABSENT)
        if not len(new):
            return rows
        # a series listed twice (parts of several entries) is judged once
        uniq, first = np.unique(keys[new], return_index=True)
        verdict = np.empty(len(uniq), np.int64)
        for j, i in enumerate(new[first].tolist()):
            labels = series[i]
            if not self._eligible(labels):
                verdict[j] = _EXCLUDED
            elif self._n >= self.max_series:
                verdict[j] = _REFUSED
                self.metrics.refused_series.inc()
            else:
                verdict[j] = self._add_series(int(uniq[j]), labels)
        self._verdicts += int(np.count_nonzero(verdict < 0))
        if self._verdicts > 4 * self.max_series + 100_000:
            # bound the memory of verdicts about series that are not analysed
            self._index.keep(self._index.items()[1] >= 0)
            self._verdicts = 0
        self._index.assign(uniq, verdict)
        rows[new] = verdict[np.searchsorted(uniq, keys[new])]
        return rows

    def _eligible(self, labels: LabelSet) -> bool:
        name = metric_name(labels)
        return not (
            not name
            or name in OUTPUT_NAMES
            or any(k == FOR_LABEL for k, _ in labels)
            or not any(sel.matches(labels) for sel in self.selectors)
        )

    def _add_series(self, key: int, labels: LabelSet | None) -> int:
        """A new row for ``key`` (the caller enters it in the index)."""
        row = self._n
        self._grow(row + 1)
        self._n += 1
        if self.keep_labels:
            assert labels is not None
            self._labels.append(labels)
        self._keys[row] = key
        return row

    def _grow(self, needed: int) -> None:
        cap = len(self._last_ts)
        if cap >= needed:
            return
        while cap < needed:
            cap *= 2
        last_ts = np.full(cap, np.iinfo(np.int64).min, dtype=np.int64)
        last_ts[: self._n] = self._last_ts[: self._n]
        keys = np.zeros(cap, dtype=np.uint64)
        keys[: self._n] = self._keys[: self._n]
        changed = np.zeros(cap, dtype=bool)
        changed[: self._n] = self._changed[: self._n]
        self._last_ts, self._keys, self._changed = last_ts, keys, changed

    def process(self, batch: SampleBatch, keys: np.ndarray | None = None) -> SampleBatch:
        """Score one batch now (on the calling thread) and store the outputs; returns them.
        ``keys``: the ``series_key`` of each of ``batch.series`` when known (the bus
        carries them), else computed here. ``batch.series`` may list a series twice."""
        if not len(batch) or not batch.series:
            return SampleBatch.empty()
        if keys is None:
            keys = series_keys(batch.series)
        result = self._detect(batch, np.asarray(keys, np.uint64))
        if self.peers:
            result = SampleBatch.concat([result, self.peers.process(batch)])
        if len(result):
            try:
                self.store.append(result)
            except PerfintelError as exc:
                self.metrics.write_errors.inc()
                log.warning("cannot store anomaly detector outputs: %s", exc)
            else:
                if self.on_outputs is not None:
                    self.on_outputs(result)
        return result

    def _detect(self, batch: SampleBatch, keys: np.ndarray) -> SampleBatch:
        verdict = self._rows_of(batch.series, keys)
        rows = verdict[batch.series_idx]
        values = np.asarray(batch.values, dtype=np.float64)
        keep = (rows >= 0) & ~np.isnan(values)
        if not keep.any():
            return SampleBatch.empty()
        sidx = np.asarray(batch.series_idx)[keep]
        rows, ts, values = rows[keep], batch.timestamps[keep], values[keep]
        order = np.lexsort((ts, rows))  # per series in time order (stable for equal times)
        rows, ts, values, sidx = rows[order], ts[order], values[order], sidx[order]
        # a repeated timestamp keeps the sample written last, as the store does
        repeated = np.r_[(rows[1:] == rows[:-1]) & (ts[1:] == ts[:-1]), False]
        fresh = (ts > self._last_ts[rows]) & ~repeated
        rows, ts, values, sidx = rows[fresh], ts[fresh], values[fresh], sidx[fresh]
        if not len(rows):
            return SampleBatch.empty()
        out = self.runner.update_many_full(rows, ts, values)
        last = np.r_[rows[1:] != rows[:-1], True]
        self._last_ts[rows[last]] = ts[last]
        self._changed[rows[last]] = True
        self.metrics.updates.inc(len(rows))
        return self._outputs_batch(batch.series, rows, sidx, ts, out)

    def _outputs_batch(
        self,
        series: Sequence[LabelSet],
        rows: np.ndarray,
        sidx: np.ndarray,
        ts: np.ndarray,
        out: dict[str, np.ndarray],
    ) -> SampleBatch:
        """The outputs' series, their labels built from the batch's (``sidx``: each
        sample's index in ``series``)."""
        uniq, first, inv = np.unique(rows, return_index=True, return_inverse=True)
        bases = [_output_base(series[i]) for i in sidx[first].tolist()]
        out_series: list[LabelSet] = []
        idx, tss, vals = [], [], []
        for k, key in enumerate(_DETECTOR_OUTPUTS):
            pair = ((METRIC_NAME, key),)
            out_series.extend(b[:pos] + pair + b[pos:] for b, pos in bases)
            v = out[key]
            ok = np.isfinite(v)
            idx.append((inv[ok] + k * len(uniq)).astype(np.int32))
            tss.append(ts[ok])
            vals.append(v[ok])
        return SampleBatch(
            out_series,
            np.concatenate(idx),
            np.concatenate(tss).astype(np.int64, copy=False),
            np.concatenate(vals),
        )

    # -- state --------------------------------------------------------------------
    def save_state(self) -> None:
        """Write every analysed series' state atomically (a no-op without a state dir)."""
        if self.state_path is None:
            return
        data = self.dump_state()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        self._saved_at = self.clock()

    @property
    def series_count(self) -> int:
        """Series analysed (with a state row)."""
        return self._n

    def memory_nbytes(self) -> int:
        """Bytes of the numpy arrays held for the analysed series (states, index,
        bookkeeping; capacity included, though untouched pages cost no memory)."""
        r = self.runner
        bank = r.packed.nbytes if r.codec is not None else r.state_nbytes() * r.capacity
        arrays = self._last_ts.nbytes + self._keys.nbytes + self._changed.nbytes
        return int(bank + arrays + self._index.nbytes)

    def take_changed(self) -> np.ndarray:
        """Rows whose state changed since the last call (the next incremental checkpoint's
        series); the caller gives them back with ``mark_changed`` if it could not save them."""
        n = self._n
        rows = np.flatnonzero(self._changed[:n])
        self._changed[:n] = False
        return rows

    def mark_changed(self, rows: np.ndarray) -> None:
        self._changed[rows] = True

    def dump_state(self, rows: np.ndarray | None = None, *, compress: bool = False) -> bytes:
        """The analysed series' states in the state file's format (the bus checkpoints it):
        every series, or only ``rows`` (an incremental part: ``restore_state(..., merge=True)``
        applies it over an earlier full state). ``compress``: ``COMPRESSED`` followed by
        the zlib stream of those bytes, compressed as they are written (a full dump of a
        large shard never exists uncompressed in memory); ``restore_state`` takes both."""
        n = self._n
        sel = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        fmt = self.runner.packed_format()
        if fmt and rows is None:
            if n:  # rows never scored yet get their initial state first (as get_packed does)
                self.runner.get_packed(np.array([n - 1]))
            matrix = self.runner.packed[:n]  # a view: no copy of the whole bank
        else:
            matrix = self.runner.get_packed(sel) if fmt else self.runner.get_states(sel)
        labels = (
            np.frombuffer(orjson.dumps([list(self._labels[r]) for r in sel.tolist()]), np.uint8)
            if self.keep_labels
            else np.empty(0, np.uint8)
        )
        buf: io.BytesIO | _Deflate = _Deflate() if compress else io.BytesIO()
        np.savez(
            buf,
            format=np.array([FORMAT_VERSION], dtype=np.int64),
            partial=np.array([0 if rows is None else 1], dtype=np.int64),
            keys=self._keys[sel],
            labels=labels,
            last_ts=self._last_ts[sel],
            states=matrix,
            # a compact runner's rows as held (their format); absent: ``get_state`` rows
            packed=np.frombuffer(fmt, dtype=np.uint8),
        )
        return buf.getvalue()

    def load_state(self) -> int:
        """Restore the saved series and states; returns how many series were restored."""
        if self.state_path is None or not self.state_path.exists():
            return 0
        try:
            data = self.state_path.read_bytes()
        except OSError as exc:
            log.warning("ignoring the anomaly detector state %s: %s", self.state_path, exc)
            return 0
        return self.restore_state(data, str(self.state_path))

    def restore_state(self, data: bytes, source: str = "checkpoint", merge: bool = False) -> int:
        """Restore from ``dump_state`` bytes; returns how many series were restored
        (0, logged, when the bytes cannot be used). ``merge`` applies the bytes over the
        current state (an incremental part: its series replace or join the others).

        States with labels are filtered by the current selectors (series no longer
        picked are forgotten); keyed-only states (a worker's) are taken as they are, and
        a detector that keeps labels cannot use them."""
        try:
            if data.startswith(COMPRESSED):
                data = zlib.decompress(memoryview(data)[len(COMPRESSED) :])
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version = int(z["format"][0])
                if version < min(_READABLE):
                    raise ValueError(
                        f"it was saved by an earlier detector version (format {version}); "
                        "the detector learns again from scratch"
                    )
                if version not in _READABLE:
                    raise ValueError(f"unknown format {version}")
                partial = "partial" in z and int(z["partial"][0]) == 1
                raw = z["labels"].tobytes()
                labels = orjson.loads(raw) if raw else None
                keys = np.asarray(z["keys"], np.uint64) if "keys" in z else None
                last_ts = np.asarray(z["last_ts"], dtype=np.int64)
                states = np.asarray(z["states"], dtype=np.uint8)
                fmt = z["packed"].tobytes() if "packed" in z else b""
            if partial and not merge:
                raise ValueError("an incremental part needs the full state it applies to")
            if labels is None and keys is None:
                raise ValueError("neither labels nor keys")
            if labels is None and self.keep_labels:
                raise ValueError("a keyed state without labels (a bus worker's checkpoint)")
            count = len(labels) if labels is not None else len(keys)  # type: ignore[arg-type]
            if not count == len(last_ts) == states.shape[0] or (
                keys is not None and len(keys) != count
            ):
                raise ValueError("keys, labels, last_ts and states differ in length")
            sets: list[LabelSet] | None = None
            if labels is not None:
                sets = [tuple((str(k), str(v)) for k, v in pairs) for pairs in labels]
                if keys is None:
                    keys = series_keys(sets)
                # series the current selectors no longer pick are forgotten
                ok = np.fromiter((self._eligible(ls) for ls in sets), bool, len(sets))
                keep = np.flatnonzero(ok)
            else:
                keep = np.arange(count)
            assert keys is not None
            if not merge:
                keep = keep[: self.max_series]
                runner = OnlineRunner(
                    self.runner.model,
                    capacity=max(64, len(keep)),
                    compact=self.runner.codec is not None,
                )
            else:
                runner = self.runner
            # validate every state before touching anything (a scratch bank)
            scratch = OnlineRunner(
                self.runner.model, max(1, len(keep)), self.runner.codec is not None
            )
            if fmt:
                scratch.set_packed(np.arange(len(keep)), states[keep], fmt)
            else:
                scratch.set_states(np.arange(len(keep)), states[keep])
            del scratch
        except (OSError, ValueError, KeyError, PerfintelError, zlib.error) as exc:
            log.warning("ignoring the anomaly detector state %s: %s", source, exc)
            return 0
        if not merge:
            self.runner = runner
            self._index, self._verdicts, self._n, self._labels = SeriesIndex(len(keep)), 0, 0, []
            cap = max(64, len(keep))
            self._last_ts = np.full(cap, np.iinfo(np.int64).min, dtype=np.int64)
            self._keys = np.zeros(cap, dtype=np.uint64)
            self._changed = np.zeros(cap, dtype=bool)
        kk = keys[keep]
        _, first = np.unique(kk, return_index=True)  # a key listed twice: its first row
        first.sort()  # rows in the file's order
        kk, keep = kk[first], keep[first]
        rows = self._index.lookup(kk)
        new = np.flatnonzero(rows < 0)  # absent, or a verdict of not analysed
        room = max(0, self.max_series - self._n)
        if len(new) > room:
            dropped = new[room:]
            new = new[:room]
            mask = np.ones(len(kk), bool)
            mask[dropped] = False
            kk, keep, rows = kk[mask], keep[mask], rows[mask]
            new = np.flatnonzero(rows < 0)
        if len(new):
            rows[new] = np.arange(self._n, self._n + len(new))
            self._grow(self._n + len(new))
            self._keys[rows[new]] = kk[new]
            if self.keep_labels:
                assert sets is not None
                self._labels.extend(sets[i] for i in keep[new].tolist())
            self._n += len(new)
        if self._verdicts and len(new):
            self._verdicts = max(0, self._verdicts - len(new))  # approximate: stays bounded
        self._index.assign(kk[new], rows[new])
        if fmt:
            self.runner.set_packed(rows, states[keep], fmt)
        else:
            self.runner.set_states(rows, states[keep])
        self._last_ts[rows] = last_ts[keep]
        return len(kk)
