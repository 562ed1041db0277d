"""The bulk path of the Influx line-protocol parser: lines of the common shape
scanned in C (``perfintel.ingest._scan.lp_scan``) or, without the extension, in
numpy, with the per-thread caches that resolve each distinct (series key,
field) to a label set once. Lines it cannot take go to the careful path
(``influx_line.py``), which defines the semantics; ``influx.py`` runs both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from perfintel.errors import InvalidSeriesError
from perfintel.ingest.influx_line import (
    BOOLS,
    TS_RE,
    LineFail,
    SeriesKey,
    field_value,
    parse_key,
    series_for,
)
from perfintel.model import INT64_MAX, INT64_MIN, LabelSet

try:
    from perfintel.ingest import _scan
except ImportError:  # built without a C compiler: the numpy bulk path below is used
    _scan = None  # type: ignore[assignment]


_CACHE_LIMIT = 50_000


class _Caches:
    """Per-thread caches of the bulk path: series keys, field keys and their label sets.

    Ids are positions in ``keys``/``field_names``; they stay valid for a whole
    parse because the caches are only reset between parses (``reset_if_full``).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.key_ids: dict[bytes, int] = {}
        self.keys: list[SeriesKey] = []
        self.field_ids: dict[bytes, int] = {}
        self.field_names: list[str | None] = []  # None: the field key is not valid UTF-8
        self.series: dict[tuple[int, int], LabelSet | str] = {}
        # Equal label sets are one object, so a parse can group samples by id().
        self.canonical: dict[LabelSet, LabelSet] = {}

    def reset_if_full(self) -> None:
        if (
            len(self.keys) > _CACHE_LIMIT
            or len(self.field_names) > _CACHE_LIMIT
            or len(self.series) > 4 * _CACHE_LIMIT
        ):
            self.clear()

    def key_id(self, raw: bytes) -> int:
        i = self.key_ids.get(raw)
        if i is None:
            i = self.key_ids[raw] = len(self.keys)
            self.keys.append(parse_key(raw))
        return i

    def field_id(self, raw: bytes) -> int:
        i = self.field_ids.get(raw)
        if i is None:
            i = self.field_ids[raw] = len(self.field_names)
            try:
                self.field_names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.field_names.append(None)
        return i

    def series_entry(self, kid: int, fid: int) -> LabelSet | str:
        hit = self.series.get((kid, fid))
        if hit is not None:
            return hit
        key = self.keys[kid]
        fname = self.field_names[fid]
        entry: LabelSet | str
        if key.error:
            entry = key.error
        elif fname is None:
            entry = "field key is not valid UTF-8"
        else:
            try:
                ls = series_for(key, fname)
                entry = self.canonical.setdefault(ls, ls)
            except InvalidSeriesError as exc:
                entry = str(exc)
        self.series[(kid, fid)] = entry
        return entry


_local = threading.local()


def thread_caches() -> _Caches:
    c: _Caches | None = getattr(_local, "caches", None)
    if c is None:
        c = _local.caches = _Caches()
    return c


def _classify_lines(
    data: bytes, buf: np.ndarray, nl: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per line: may the bulk path take it (plain bytes, one or two single spaces)? And its spaces."""
    n = len(starts)
    ok = ends > starts
    for ch in b'"\\\t\r\x0b\x0c':
        if bytes((ch,)) in data:
            ok[np.searchsorted(nl, np.flatnonzero(buf == ch))] = False
    sp = np.flatnonzero(buf == 0x20)
    sp_line = np.searchsorted(nl, sp)
    spaces = np.bincount(sp_line, minlength=n)[:n]
    ok &= (spaces == 1) | (spaces == 2)
    double = np.flatnonzero(np.diff(sp) == 1)
    if len(double):
        ok[sp_line[double]] = False
    if len(buf):
        first = buf[np.minimum(starts, len(buf) - 1)]
        last = buf[np.maximum(ends - 1, 0)]
        ok &= (first != 0x20) & (first != 0x23) & (last != 0x20)  # " ", "#"
    return ok, spaces


@dataclass
class Bulk:
    series: list[LabelSet]
    idx: list[np.ndarray]
    ts: list[np.ndarray]
    vals: list[np.ndarray]
    lines: list[np.ndarray] | None = None  # 1-based line of each sample, when known


def _bulk_parse(
    chunk: bytes,
    line_nos: np.ndarray,
    ntok: np.ndarray,
    mul: int,
    div: int,
    default_ts: int,
    out: Bulk,
    pos: dict[int, int],
    c: _Caches,
) -> np.ndarray:
    """Parse well-formed-looking lines; returns the line numbers that need the careful path."""
    n = len(line_nos)
    tokens = chunk.split()
    if len(tokens) != int(ntok.sum()):  # cannot happen after _classify_lines; be safe
        return line_nos
    if (ntok == 3).all():
        keys, fields, tss = tokens[0::3], tokens[1::3], tokens[2::3]
        has_ts = None
    elif (ntok == 2).all():
        keys, fields, tss = tokens[0::2], tokens[1::2], []
        has_ts = None
    else:
        first = np.zeros(n, np.int64)
        np.cumsum(ntok[:-1], out=first[1:])
        fl = first.tolist()
        keys = [tokens[i] for i in fl]
        fields = [tokens[i + 1] for i in fl]
        has_ts = ntok == 3
        tss = [tokens[i + 2] for i in first[has_ts].tolist()]
    bad = np.zeros(n, bool)

    # Series keys -> cached ids.
    kids_list = list(map(c.key_ids.get, keys, repeat(-1)))
    if -1 in kids_list:
        for j, kid in enumerate(kids_list):
            if kid == -1:
                kids_list[j] = c.key_id(keys[j])
    kids = np.asarray(kids_list, np.int64)

    # Fields: "a=1,b=2" per line; validate the name=value,... alternation in bulk.
    nf = np.fromiter(map(bytes.count, fields, repeat(b",")), np.int64, n) + 1
    fb = np.frombuffer(b",".join(fields), np.uint8)
    seps = np.flatnonzero((fb == 0x3D) | (fb == 0x2C))
    kinds = fb[seps]
    structure_ok = (
        len(seps) == 2 * int(nf.sum()) - 1
        and bool((kinds[0::2] == 0x3D).all())
        and bool((kinds[1::2] == 0x2C).all())
        and (len(seps) == 0 or (seps[0] > 0 and seps[-1] < len(fb) - 1))
        and bool((np.diff(seps) > 1).all())
    )
    if not structure_ok:
        # Find the offending lines, send them to the careful path, and retry the rest.
        for j, f in enumerate(fields):
            parts = f.split(b",")
            if any(p.count(b"=") != 1 or p.startswith(b"=") or p.endswith(b"=") for p in parts):
                bad[j] = True
        return _retry(chunk, line_nos, ntok, bad, mul, div, default_ts, out, pos, c)
    names, vals, vbad = _bulk_values(fb, seps)
    sample_line = np.repeat(np.arange(n), nf)
    if vbad is not None:
        bad[sample_line[vbad]] = True
    fids_list = list(map(c.field_ids.get, names, repeat(-1)))
    if -1 in fids_list:
        for j, fid in enumerate(fids_list):
            if fid == -1:
                fids_list[j] = c.field_id(names[j])
    fids = np.asarray(fids_list, np.int64)

    # Timestamps.
    if has_ts is None and not tss:
        ts_ms = np.full(n, default_ts, np.int64)
    else:
        ts_ms, tbad = _bulk_timestamps(tss, mul, div)
        if has_ts is not None:
            full = np.full(n, default_ts, np.int64)
            full[has_ts] = ts_ms
            tb = np.zeros(n, bool)
            tb[has_ts] = tbad
            ts_ms, tbad = full, tb
        bad |= tbad
    if bad.all():
        return line_nos

    # Series per (key, field).
    kid_s = kids[sample_line]
    width = len(c.field_names) + 1
    combo = kid_s * width + fids
    uniq, inv = np.unique(combo, return_inverse=True)
    sid_of = np.empty(len(uniq), np.int64)
    for u, cb in enumerate(uniq.tolist()):
        entry = c.series_entry(cb // width, cb % width)
        if isinstance(entry, str):
            sid_of[u] = -1
        else:
            sid = pos.get(id(entry))
            if sid is None:
                sid = pos[id(entry)] = len(out.series)
                out.series.append(entry)
            sid_of[u] = sid
    sids = sid_of[inv.ravel()]
    if (sids < 0).any():
        bad[sample_line[sids < 0]] = True
    if bad.any():
        keep = ~bad[sample_line]
        out.idx.append(sids[keep])
        out.ts.append(ts_ms[sample_line[keep]])
        out.vals.append(vals[keep])
        return line_nos[bad]
    out.idx.append(sids)
    out.ts.append(ts_ms[sample_line])
    out.vals.append(vals)
    return line_nos[:0]


def _retry(
    chunk: bytes,
    line_nos: np.ndarray,
    ntok: np.ndarray,
    bad: np.ndarray,
    mul: int,
    div: int,
    default_ts: int,
    out: Bulk,
    pos: dict[int, int],
    c: _Caches,
) -> np.ndarray:
    if not bad.any() or bad.all():
        return line_nos
    lines = chunk.split(b"\n")
    good = np.flatnonzero(~bad)
    sub = b"\n".join([lines[i] for i in good.tolist()])
    rest = _bulk_parse(sub, line_nos[good], ntok[good], mul, div, default_ts, out, pos, c)
    return np.sort(np.concatenate([line_nos[bad], rest]))


def _bulk_values(
    fb: np.ndarray, seps: np.ndarray
) -> tuple[list[bytes], np.ndarray, np.ndarray | None]:
    """Field names and values of a fields blob ``k=v,k=v,...`` whose structure is checked.

    Returns (names, values, indices of values the bulk path cannot vouch for or None).
    Integer suffixes are blanked to a space (``float()`` ignores it) and the
    integer syntax is checked on the bytes: no ``.``, ``e``, ``+`` or non-finite.
    """
    nvals = (len(seps) + 1) // 2
    ends = np.empty(nvals, np.int64)
    ends[:-1] = seps[1::2] - 1
    ends[-1] = len(fb) - 1
    last = fb[ends]
    is_int = last == 0x69  # i
    is_uint = last == 0x75  # u
    suffixed = is_int | is_uint
    any_suffix = bool(suffixed.any())
    if any_suffix:
        fb2 = fb.copy()
        fb2[ends[suffixed]] = 0x20
        blob = fb2.tobytes()
        marks = (fb == 0x5F) | (fb == 0x2E) | (fb == 0x65) | (fb == 0x45) | (fb == 0x2B)
    else:
        blob = fb.tobytes()
        marks = fb == 0x5F
    flat = blob.replace(b"=", b",").split(b",")
    names = flat[0::2]
    raw_vals = flat[1::2]
    badl: list[np.ndarray] = []
    try:
        vals = np.array(list(map(float, raw_vals)), np.float64)
    except ValueError:
        vals = np.empty(nvals, np.float64)
        okm = np.ones(nvals, bool)
        for j, v in enumerate(raw_vals):
            b = BOOLS.get(v)
            if b is not None:
                vals[j] = b
                continue
            try:
                vals[j] = float(v)
            except ValueError:
                okm[j] = False
        badl.append(np.flatnonzero(~okm))
    mpos = np.flatnonzero(marks)
    if len(mpos):
        k = np.searchsorted(seps, mpos)
        inside = k % 2 == 1
        vj = (k[inside] - 1) // 2
        ch = fb[mpos[inside]]
        badl.append(vj[(ch == 0x5F) | suffixed[vj]])
    if any_suffix:
        iv = vals[suffixed]
        odd = ~np.isfinite(iv) | (iv != np.floor(iv)) | (np.abs(iv) >= 2.0**63)
        odd |= is_uint[suffixed] & (iv < 0)
        if odd.any():
            idx = np.flatnonzero(suffixed)[odd]
            for j in idx.tolist():
                try:
                    vals[j] = field_value(raw_vals[j][:-1] + bytes((fb[ends[j]],)))
                except LineFail:
                    badl.append(np.array([j]))
    bad = np.concatenate(badl) if badl else np.empty(0, np.int64)
    return names, vals, (bad if len(bad) else None)


def _bulk_timestamps(tss: list[bytes], mul: int, div: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(tss)
    bad = np.zeros(n, bool)
    raw: np.ndarray
    try:
        joined = b" ".join(tss)
        if b"_" in joined or b"+" in joined:
            raise ValueError
        raw = np.array(list(map(int, tss)), np.int64)
    except (ValueError, OverflowError):
        raw = np.zeros(n, np.int64)
        for j, t in enumerate(tss):
            if not TS_RE.fullmatch(t) or not INT64_MIN <= int(t) <= INT64_MAX:
                bad[j] = True
            else:
                raw[j] = int(t)
    if mul == 1:
        return raw // div, bad
    limit = INT64_MAX // mul
    over = (raw > limit) | (raw < -limit)
    bad |= over
    return np.where(over, 0, raw) * mul, bad


def scanned_bulk(
    data: bytes, mul: int, div: int, default_ts: int, out: Bulk, c: _Caches
) -> list[int]:
    """The bulk path in C (``_scan.lp_scan``); returns the line numbers that need care."""
    gid_b, line_b, ts_b, vals_b, spans_b, careful_b = _scan.lp_scan(data, mul, div, default_ts)
    careful = np.frombuffer(careful_b, np.int32)
    spans = np.frombuffer(spans_b, np.int64).reshape(-1, 4)
    if len(spans):
        sid_of = np.empty(len(spans), np.int64)
        pos: dict[int, int] = {}
        for g, (ka, kb, fa, fb) in enumerate(spans.tolist()):
            entry = c.series_entry(c.key_id(data[ka:kb]), c.field_id(data[fa:fb]))
            if isinstance(entry, str):
                sid_of[g] = -1
                continue
            sid = pos.get(id(entry))
            if sid is None:
                sid = pos[id(entry)] = len(out.series)
                out.series.append(entry)
            sid_of[g] = sid
        sids = sid_of[np.frombuffer(gid_b, np.int32)]
        ts = np.frombuffer(ts_b, np.int64)
        vals = np.frombuffer(vals_b, np.float64)
        bad = sids < 0
        if bad.any():  # an unusable series key: the careful path words the error
            lines = np.frombuffer(line_b, np.int32)
            bad_lines = np.unique(lines[bad])
            keep = ~np.isin(lines, bad_lines)
            sids, ts, vals = sids[keep], ts[keep], vals[keep]
            careful = np.concatenate([careful, bad_lines.astype(np.int32)])
        out.idx.append(sids)
        out.ts.append(ts)
        out.vals.append(vals)
        lines_of = np.frombuffer(line_b, np.int32)
        out.lines = [(lines_of[keep] if bad.any() else lines_of) + 1]
    return sorted((careful.astype(np.int64) + 1).tolist())


def numpy_bulk(
    data: bytes, mul: int, div: int, default_ts: int, out: Bulk, c: _Caches
) -> list[int]:
    """The bulk path in numpy (no C extension); returns the line numbers that need care."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 0x0A)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(buf)]])
    ok, sp_counts = _classify_lines(data, buf, nl, starts, ends)
    nonempty = ends > starts
    line_nos = np.arange(1, len(starts) + 1)
    pos: dict[int, int] = {}
    careful: list[int] = []
    if ok.any():
        if ok.all():
            chunk = data
        else:
            lines = data.split(b"\n")
            chunk = b"\n".join([lines[i] for i in np.flatnonzero(ok).tolist()])
        careful = _bulk_parse(
            chunk, line_nos[ok], sp_counts[ok] + 1, mul, div, default_ts, out, pos, c
        ).tolist()
    return sorted([*careful, *line_nos[~ok & nonempty].tolist()])
