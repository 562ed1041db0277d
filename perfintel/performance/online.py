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
* ``labels`` — uint8, UTF-8 JSON of the list of label sets (``[[name, value], ...]``);
* ``last_ts`` — int64, the last analysed timestamp of each series (ms);
* ``states`` — uint8 matrix, one row per series: ``OnlineRunner.get_state`` bytes
  (``Detector.get_state`` format, all of equal length for one model); or, from a
  compact detector (``compact``), its packed rows as held;
* ``partial`` — int64 ``[1]`` for an incremental part (only some series), else ``[0]``;
* ``packed`` — uint8, empty or the packed rows' format (``OnlineRunner.packed_format``):
  packed rows load only into a compact detector of the same configuration.

A file that cannot be read, was written by another model or by an earlier
detector version (format 1), is logged and ignored (the detector then learns
again from scratch).

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
from perfintel.performance.outliers_online import OUTLIER_SCORE, OnlinePeerOutliers, PeerGroupSpec
from perfintel.storage.base import SampleWriter
from perfintel.telemetry import Counter, Gauge, Registry

log = logging.getLogger(__name__)

#: Metric names of model outputs (vmanomaly's), never analysed themselves.
OUTPUT_NAMES = ("anomaly_score", "yhat", "yhat_lower", "yhat_upper", OUTLIER_SCORE)
_DETECTOR_OUTPUTS = OUTPUT_NAMES[:4]
#: Label naming the source metric of a model output.
FOR_LABEL = "for"
STATE_FILE = "anomaly_state.npz"
#: 2: the detector's state layout of the single compiled implementation; files of
#: format 1 (the earlier detector) are discarded with a log line at start-up.
FORMAT_VERSION = 2

_EXCLUDED = -1
_REFUSED = -2
_STOP = object()


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
        self._rows: dict[LabelSet, int] = {}  # analysed series -> runner row, or a negative verdict
        self._labels: list[LabelSet] = []  # runner row -> source labels
        #: runner row -> (the outputs' labels but __name__, sorted; where __name__ goes)
        self._outputs: list[tuple[LabelSet, int]] = []
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
        self.metrics.series.set_function(lambda: float(len(self._labels)))
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
    def _row_of(self, labels: LabelSet) -> int:
        row = self._rows.get(labels)
        if row is not None:
            return row
        if not self._eligible(labels):
            row = _EXCLUDED
        elif len(self._labels) >= self.max_series:
            row = _REFUSED
            self.metrics.refused_series.inc()
        else:
            row = self._add_series(labels)
        if row < 0 and len(self._rows) > 4 * self.max_series + 100_000:
            # bound the memory of verdicts about series that are not analysed
            self._rows = {k: v for k, v in self._rows.items() if v >= 0}
        self._rows[labels] = row
        return row

    def _eligible(self, labels: LabelSet) -> bool:
        name = metric_name(labels)
        return not (
            not name
            or name in OUTPUT_NAMES
            or any(k == FOR_LABEL for k, _ in labels)
            or not any(sel.matches(labels) for sel in self.selectors)
        )

    def _add_series(self, labels: LabelSet) -> int:
        row = len(self._labels)
        self._labels.append(labels)
        name = metric_name(labels)
        base = sorted([*((k, v) for k, v in labels if k != METRIC_NAME), (FOR_LABEL, name)])
        # the outputs' label sets are built per batch from this (one tuple a series, not
        # four: bookkeeping per series matters at a million series)
        pos = bisect.bisect_left([k for k, _ in base], METRIC_NAME)
        self._outputs.append((tuple(base), pos))
        if row >= len(self._last_ts):
            grown = np.full(2 * len(self._last_ts), np.iinfo(np.int64).min, dtype=np.int64)
            grown[: len(self._last_ts)] = self._last_ts
            self._last_ts = grown
            changed = np.zeros(len(grown), dtype=bool)
            changed[: len(self._changed)] = self._changed
            self._changed = changed
        return row

    def process(self, batch: SampleBatch) -> SampleBatch:
        """Score one batch now (on the calling thread) and store the outputs; returns them."""
        if not len(batch) or not batch.series:
            return SampleBatch.empty()
        result = self._detect(batch)
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

    def _detect(self, batch: SampleBatch) -> SampleBatch:
        verdict = np.fromiter(
            (self._row_of(s) for s in batch.series), dtype=np.int64, count=len(batch.series)
        )
        rows = verdict[batch.series_idx]
        values = np.asarray(batch.values, dtype=np.float64)
        keep = (rows >= 0) & ~np.isnan(values)
        if not keep.any():
            return SampleBatch.empty()
        rows, ts, values = rows[keep], batch.timestamps[keep], values[keep]
        order = np.lexsort((ts, rows))  # per series in time order (stable for equal times)
        rows, ts, values = rows[order], ts[order], values[order]
        # a repeated timestamp keeps the sample written last, as the store does
        repeated = np.r_[(rows[1:] == rows[:-1]) & (ts[1:] == ts[:-1]), False]
        fresh = (ts > self._last_ts[rows]) & ~repeated
        rows, ts, values = rows[fresh], ts[fresh], values[fresh]
        if not len(rows):
            return SampleBatch.empty()
        out = self.runner.update_many_full(rows, ts, values)
        last = np.r_[rows[1:] != rows[:-1], True]
        self._last_ts[rows[last]] = ts[last]
        self._changed[rows[last]] = True
        self.metrics.updates.inc(len(rows))
        return self._outputs_batch(rows, ts, out)

    def _outputs_batch(
        self, rows: np.ndarray, ts: np.ndarray, out: dict[str, np.ndarray]
    ) -> SampleBatch:
        uniq, inv = np.unique(rows, return_inverse=True)
        series: list[LabelSet] = []
        idx, tss, vals = [], [], []
        bases = [self._outputs[r] for r in uniq.tolist()]
        for k, key in enumerate(_DETECTOR_OUTPUTS):
            pair = ((METRIC_NAME, key),)
            series.extend(b[:pos] + pair + b[pos:] for b, pos in bases)
            v = out[key]
            ok = np.isfinite(v)
            idx.append((inv[ok] + k * len(uniq)).astype(np.int32))
            tss.append(ts[ok])
            vals.append(v[ok])
        return SampleBatch(
            series,
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
        return len(self._labels)

    def take_changed(self) -> np.ndarray:
        """Rows whose state changed since the last call (the next incremental checkpoint's
        series); the caller gives them back with ``mark_changed`` if it could not save them."""
        n = len(self._labels)
        rows = np.flatnonzero(self._changed[:n])
        self._changed[:n] = False
        return rows

    def mark_changed(self, rows: np.ndarray) -> None:
        self._changed[rows] = True

    def dump_state(self, rows: np.ndarray | None = None) -> bytes:
        """The analysed series' states in the state file's format (the bus checkpoints it):
        every series, or only ``rows`` (an incremental part: ``restore_state(..., merge=True)``
        applies it over an earlier full state)."""
        n = len(self._labels)
        sel = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        fmt = self.runner.packed_format()
        matrix = self.runner.get_packed(sel) if fmt else self.runner.get_states(sel)
        labels = np.frombuffer(
            orjson.dumps([list(self._labels[int(r)]) for r in sel]), dtype=np.uint8
        )
        buf = io.BytesIO()
        np.savez(
            buf,
            format=np.array([FORMAT_VERSION], dtype=np.int64),
            partial=np.array([0 if rows is None else 1], dtype=np.int64),
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
        current state (an incremental part: its series replace or join the others)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version = int(z["format"][0])
                if version < FORMAT_VERSION:
                    raise ValueError(
                        f"it was saved by an earlier detector version (format {version}); "
                        "the detector learns again from scratch"
                    )
                if version != FORMAT_VERSION:
                    raise ValueError(f"unknown format {version}")
                partial = "partial" in z and int(z["partial"][0]) == 1
                labels = orjson.loads(z["labels"].tobytes())
                last_ts = np.asarray(z["last_ts"], dtype=np.int64)
                states = np.asarray(z["states"], dtype=np.uint8)
                fmt = z["packed"].tobytes() if "packed" in z else b""
            if partial and not merge:
                raise ValueError("an incremental part needs the full state it applies to")
            if not len(labels) == len(last_ts) == states.shape[0]:
                raise ValueError("labels, last_ts and states differ in length")
            keep: list[int] = []
            sets: list[LabelSet] = []
            for i, pairs in enumerate(labels):
                ls: LabelSet = tuple((str(k), str(v)) for k, v in pairs)
                # series the current selectors no longer pick are forgotten
                if self._eligible(ls):
                    keep.append(i)
                    sets.append(ls)
            if merge:
                runner = self.runner
            else:
                runner = OnlineRunner(
                    self.runner.model,
                    capacity=max(64, len(keep)),
                    compact=self.runner.codec is not None,
                )
                sets, keep = sets[: self.max_series], keep[: self.max_series]
            # validate every state before touching anything (a scratch bank)
            scratch = OnlineRunner(
                self.runner.model, max(1, len(keep)), self.runner.codec is not None
            )
            if fmt:
                scratch.set_packed(np.arange(len(keep)), states[keep], fmt)
            else:
                scratch.set_states(np.arange(len(keep)), states[keep])
        except (OSError, ValueError, KeyError, PerfintelError) as exc:
            log.warning("ignoring the anomaly detector state %s: %s", source, exc)
            return 0
        if not merge:
            self.runner = runner
            self._rows, self._labels, self._outputs = {}, [], []
            self._last_ts = np.full(64, np.iinfo(np.int64).min, dtype=np.int64)
            self._changed = np.zeros(64, dtype=bool)
        rows = np.empty(len(keep), dtype=np.int64)
        used = 0
        for j, ls in enumerate(sets):
            row = self._rows.get(ls)
            if row is None or row < 0:
                if len(self._labels) >= self.max_series:
                    continue
                row = self._rows[ls] = self._add_series(ls)
            rows[used] = row
            keep[used] = keep[j]
            used += 1
        rows, idx = rows[:used], keep[:used]
        if fmt:
            self.runner.set_packed(rows, states[idx], fmt)
        else:
            self.runner.set_states(rows, states[idx])
        self._last_ts[rows] = last_ts[idx]
        return used
