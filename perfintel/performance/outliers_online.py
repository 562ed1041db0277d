"""Online outliers among peers: the members of configured groups scored as samples arrive.

A *peer group spec* (``PeerGroupSpec``: a selector, the ``by`` labels that
split its series into groups, a step and a window) turns every ingested series
matching the selector into a member of the group named by its ``by`` label
values. Per group and step the members' samples are averaged; once a step is
complete — every member that reported within the last window has sent data of
a later step, or the newest data is a whole window later — all groups of the
spec are scored together (``perfintel.analysis.outliers.PeerScores``: the
share of recent steps each member spent outside its peers' band) and the
scores are returned for storage as::

    outlier_score{<labels of the member minus __name__>, for="<member metric>"}

at the step's start. Samples of a step already scored are dropped (counted).
This is for live data, where the members of a group report step after step;
history loaded series by series (an import, a backfill) is the outliers API's
job (``perfintel.performance.outliers``).
Model outputs (series named like a model output or with a ``for`` label) are
never members. The member count of all specs together is bounded
(``max_members``; later members are refused and counted). Scores live in
memory: after a restart they are learnt again within one window, unless the
caller keeps ``state()`` and hands it to its successor's ``restore``.

Thread-safety: not thread-safe; ``OnlineAnomalyDetection``'s worker owns it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perfintel.analysis.outliers import DEFAULT_PCT, DEFAULT_TOLERANCE, PeerScores
from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError
from perfintel.model import METRIC_NAME, LabelSet, Selector, metric_name
from perfintel.performance.outputs import FOR_LABEL, OUTLIER_SCORE

_NEVER = -(2**62)


@dataclass(frozen=True)
class PeerGroupSpec:
    selector: Selector
    by: tuple[str, ...] = ()
    step_ms: int = 60_000
    window_ms: int = 3_600_000

    def key(self) -> str:
        """Identifies the spec in a saved state (a changed spec starts afresh)."""
        return f"{self.selector} by {','.join(self.by)} step {self.step_ms} window {self.window_ms}"


@dataclass
class _Spec:
    """The members of one spec and its open steps."""

    spec: PeerGroupSpec
    scores: PeerScores
    slots: dict[LabelSet, int] = field(default_factory=dict)  # series -> member slot, -1: not one
    slot_group: list[int] = field(default_factory=list)
    slot_member: list[int] = field(default_factory=list)
    slot_output: list[LabelSet] = field(default_factory=list)
    groups: dict[tuple[str, ...], int] = field(default_factory=dict)
    group_size: list[int] = field(default_factory=list)
    #: open steps: step index -> (sum, count) per slot
    pending: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    member_latest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scored_through: int = _NEVER  # steps up to this one are scored
    latest: int = _NEVER

    @property
    def window_steps(self) -> int:
        return max(1, self.spec.window_ms // self.spec.step_ms)

    def complete_through(self) -> int:
        """The last step every member still reporting has moved past (or a window ago)."""
        lat = self.member_latest
        active = lat[lat >= self.latest - self.window_steps]
        slowest = int(active.min()) - 1 if len(active) else self.latest
        return max(slowest, self.latest - self.window_steps)


class OnlinePeerOutliers:
    """Score the members of every configured peer group once per step."""

    def __init__(
        self,
        specs: Sequence[PeerGroupSpec],
        *,
        excluded_names: Sequence[str] = (),
        max_members: int = 100_000,
        tolerance: float = DEFAULT_TOLERANCE,
        pct: float = DEFAULT_PCT,
    ) -> None:
        self.excluded = {OUTLIER_SCORE, *excluded_names}
        self.max_members = max_members
        self._specs = [
            _Spec(
                s,
                PeerScores(
                    window_steps=max(1.0, s.window_ms / s.step_ms), tolerance=tolerance, pct=pct
                ),
            )
            for s in specs
        ]
        self.members = 0
        self.refused = 0  # members refused because of max_members
        self.late_samples = 0  # samples of steps already scored
        self._json: dict[LabelSet, str] = {}  # members' labels encoded for ``state``

    def __bool__(self) -> bool:
        return bool(self._specs)

    def _slot(self, sp: _Spec, labels: LabelSet) -> int:
        slot = sp.slots.get(labels)
        if slot is not None:
            return slot
        name = metric_name(labels)
        if (
            not name
            or name in self.excluded
            or any(k == FOR_LABEL for k, _ in labels)
            or not sp.spec.selector.matches(labels)
        ):
            slot = -1
        elif self.members >= self.max_members:
            self.refused += 1
            slot = -1
        else:
            values = dict(labels)
            key = tuple(values.get(k, "") for k in sp.spec.by)
            g = sp.groups.get(key)
            if g is None:
                g = sp.groups[key] = len(sp.group_size)
                sp.group_size.append(0)
            slot = len(sp.slot_group)
            sp.slot_group.append(g)
            sp.slot_member.append(sp.group_size[g])
            sp.group_size[g] += 1
            base = [(k, v) for k, v in labels if k != METRIC_NAME]
            sp.slot_output.append(
                tuple(sorted([*base, (FOR_LABEL, name), (METRIC_NAME, OUTLIER_SCORE)]))
            )
            self.members += 1
        if slot < 0 and len(sp.slots) > 4 * self.max_members + 100_000:
            sp.slots = {k: v for k, v in sp.slots.items() if v >= 0}  # bound the verdicts kept
        sp.slots[labels] = slot
        return slot

    def process(self, batch: SampleBatch) -> SampleBatch:
        """Take a stored batch; returns the outlier scores of every step it completes."""
        if not len(batch) or not self._specs:
            return SampleBatch.empty()
        values = np.asarray(batch.values, dtype=np.float64)
        outs = []
        for sp in self._specs:
            verdict = np.fromiter(
                (self._slot(sp, s) for s in batch.series), dtype=np.int64, count=len(batch.series)
            )
            slots = verdict[batch.series_idx]
            keep = (slots >= 0) & np.isfinite(values)
            if not keep.any():
                continue
            slots, ts, v = slots[keep], batch.timestamps[keep], values[keep]
            step = ts // sp.spec.step_ms
            late = step <= sp.scored_through
            self.late_samples += int(late.sum())
            slots, step, v = slots[~late], step[~late], v[~late]
            n_slots = len(sp.slot_group)
            for b in np.unique(step):
                sel = step == b
                acc = sp.pending.get(int(b))
                if acc is None or len(acc[0]) < n_slots:
                    grown = (np.zeros(n_slots), np.zeros(n_slots))
                    if acc is not None:
                        grown[0][: len(acc[0])] = acc[0]
                        grown[1][: len(acc[1])] = acc[1]
                    acc = sp.pending[int(b)] = grown
                np.add.at(acc[0], slots[sel], v[sel])
                np.add.at(acc[1], slots[sel], 1.0)
            if len(step):
                if len(sp.member_latest) < n_slots:
                    latest = np.full(n_slots, _NEVER, dtype=np.int64)
                    latest[: len(sp.member_latest)] = sp.member_latest
                    sp.member_latest = latest
                np.maximum.at(sp.member_latest, slots, step)
                sp.latest = max(sp.latest, int(step.max()))
            outs.append(self._complete(sp, sp.complete_through()))
        return SampleBatch.concat(outs) if outs else SampleBatch.empty()

    def state(self) -> bytes:
        """What a successor needs to go on scoring (``restore``): per spec, the last step
        scored and the newest step seen; per member its share of steps outside its peers'
        band (the part that takes a window to learn) and its newest step, so the successor
        knows whom a step waits for (else the first shard's batch would complete steps the
        other members' samples then arrive too late for). Members neither flagged nor
        reporting within the window are left out. Steps still open are not kept: their
        samples reach the successor too (or are a few steps lost)."""
        specs = []
        for sp in self._specs:
            pairs = [(labels, slot) for labels, slot in sp.slots.items() if slot >= 0]
            slots = np.fromiter((slot for _, slot in pairs), dtype=np.int64, count=len(pairs))
            g = np.asarray(sp.slot_group, dtype=np.int64)[slots]
            m = np.asarray(sp.slot_member, dtype=np.int64)[slots]
            share = np.zeros(len(slots))
            inside = (g < sp.scores.share.shape[0]) & (m < sp.scores.share.shape[1])
            share[inside] = sp.scores.share[g[inside], m[inside]]
            lat = np.full(len(slots), _NEVER, dtype=np.int64)
            known = slots < len(sp.member_latest)
            lat[known] = sp.member_latest[slots[known]]
            keep = np.flatnonzero((share > 0) | (lat >= sp.latest - sp.window_steps))
            members = ",".join(
                f"[{self._label_json(pairs[k][0])},{float(share[k])!r},{int(lat[k])}]"
                for k in keep.tolist()
            )
            head = json.dumps(
                {"key": sp.spec.key(), "scored_through": sp.scored_through, "latest": sp.latest}
            )
            specs.append(head[:-1] + f', "members": [{members}]}}')
        return zlib.compress(('{"v": 1, "specs": [' + ",".join(specs) + "]}").encode())

    def _label_json(self, labels: LabelSet) -> str:
        """A member's labels as JSON, encoded once (the bulk of ``state``'s work otherwise)."""
        out = self._json.get(labels)
        if out is None:
            out = self._json[labels] = json.dumps(labels)
        return out

    def restore(self, data: bytes) -> int:
        """Take a predecessor's ``state`` (before any ``process``); specs not configured
        the same now are ignored. Returns the members restored; ``BadInputError`` when
        ``data`` is not a state."""
        try:
            doc = json.loads(zlib.decompress(data))
            saved = [
                (
                    str(s["key"]),
                    int(s["scored_through"]),
                    int(s["latest"]),
                    [
                        (tuple((str(k), str(v)) for k, v in ls), float(x), int(lat))
                        for ls, x, lat in s["members"]
                    ],
                )
                for s in doc["specs"]
            ]
        except (zlib.error, ValueError, TypeError, KeyError) as exc:
            raise BadInputError(f"not a peer-outliers state: {exc}") from exc
        by_key = {sp.spec.key(): sp for sp in self._specs}
        n = 0
        for key, scored_through, latest, members in saved:
            sp = by_key.get(key)
            if sp is None:
                continue
            sp.scored_through = max(sp.scored_through, scored_through)
            sp.latest = max(sp.latest, latest)
            slots = np.fromiter(
                (self._slot(sp, labels) for labels, _, _ in members), np.int64, len(members)
            )
            ok = slots >= 0
            if not ok.any():
                continue
            slots = slots[ok]
            shares = np.array([x for _, x, _ in members])[ok]
            lats = np.array([t for _, _, t in members], dtype=np.int64)[ok]
            g = np.asarray(sp.slot_group, dtype=np.int64)[slots]
            m = np.asarray(sp.slot_member, dtype=np.int64)[slots]
            sp.scores.resize(int(g.max()) + 1, int(m.max()) + 1)  # once, not per member
            sp.scores.share[g, m] = shares
            if len(sp.member_latest) < len(sp.slot_group):
                grown = np.full(len(sp.slot_group), _NEVER, dtype=np.int64)
                grown[: len(sp.member_latest)] = sp.member_latest
                sp.member_latest = grown
            np.maximum.at(sp.member_latest, slots, lats)
            n += len(slots)
        return n

    def flush(self) -> SampleBatch:
        """Score every open step now (at shutdown, or in tests)."""
        return SampleBatch.concat([self._complete(sp, sp.latest) for sp in self._specs])

    def _complete(self, sp: _Spec, through: int) -> SampleBatch:
        ready = sorted(b for b in sp.pending if b <= through)
        if not ready:
            return SampleBatch.empty()
        groups, width = len(sp.group_size), max(sp.group_size)
        g_of = np.asarray(sp.slot_group, dtype=np.int64)
        m_of = np.asarray(sp.slot_member, dtype=np.int64)
        idx, tss, vals = [], [], []
        for b in ready:
            total, count = sp.pending.pop(b)
            n = len(total)
            matrix = np.full((groups, width), np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                matrix[g_of[:n], m_of[:n]] = np.where(count > 0, total / count, np.nan)
            share, _ = sp.scores.update(matrix)
            got = np.isfinite(share[g_of[:n], m_of[:n]])
            slots = np.flatnonzero(got)
            idx.append(slots)
            tss.append(np.full(len(slots), b * sp.spec.step_ms, dtype=np.int64))
            vals.append(share[g_of[slots], m_of[slots]])
            sp.scored_through = max(sp.scored_through, b)
        sp.scored_through = max(sp.scored_through, through)
        all_idx = np.concatenate(idx)
        used, inv = np.unique(all_idx, return_inverse=True)
        return SampleBatch(
            [sp.slot_output[int(s)] for s in used],
            inv.astype(np.int32),
            np.concatenate(tss),
            np.concatenate(vals),
        )
