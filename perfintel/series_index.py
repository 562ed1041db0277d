"""Series identified by a stable 64-bit key, mapped to dense rows without Python objects.

``series_key`` is BLAKE2b-64 of the canonical label bytes (each name, 0xFF, its
value, 0xFE; bytes that never occur in UTF-8, so the encoding is unambiguous) —
the same in every process and version (``hash()`` of a str is salted per
process), and the same as the bus' shard hash (``perfintel.bus.sharding``).
Key 0 marks an empty slot below, so a label set hashing to 0 gets key 1.

``SeriesIndex`` maps keys to int32 values (a detector's state rows, or negative
verdicts) in an open-addressing table of two numpy arrays (linear probing, load
at most one half, doubled when full): 12 bytes a slot, 24–48 bytes a series,
every lookup and insertion one vectorised pass per probe step. A worker holding
a million series keeps them here instead of a dict of label tuples (about 500
bytes a series in Python objects).

Two label sets with the same 64-bit key would share one state: for a million
series the chance of any such pair is about 3e-8.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from perfintel.model import LabelSet

#: ``SeriesIndex.lookup`` of a key not in the index
ABSENT = np.iinfo(np.int32).min
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIN_CAPACITY = 64


def series_key(labels: LabelSet) -> int:
    """The stable 64-bit key of ``labels`` (sorted pairs, as ``label_set`` makes them)."""
    parts: list[bytes] = []
    for name, value in labels:
        parts += (name.encode(), b"\xff", value.encode(), b"\xfe")
    key = int.from_bytes(hashlib.blake2b(b"".join(parts), digest_size=8).digest(), "little")
    return key or 1


def series_keys(series: Sequence[LabelSet]) -> np.ndarray:
    """``series_key`` of each label set (uint64)."""
    return np.fromiter((series_key(s) for s in series), np.uint64, len(series))


def encoded_keys(
    strings: Sequence[bytes], counts: np.ndarray, lengths: np.ndarray | None = None
) -> np.ndarray:
    """``series_key`` of series given as their UTF-8 names and values in order
    (``counts[i]`` pairs for series ``i``; ``lengths``: each string's length, if known):
    what the bus codec has at hand. One join, then one hash per series over a view."""
    if not len(counts):
        return np.empty(0, np.uint64)
    seq: list[bytes] = [b""] * (2 * len(strings))
    seq[0::2] = strings
    seq[1::2] = [b"\xff", b"\xfe"] * (len(strings) // 2)
    blob = memoryview(b"".join(seq))
    if lengths is None:
        lengths = np.fromiter((len(x) for x in strings), np.int64, len(strings))
    bounds = np.r_[0, np.cumsum(np.asarray(lengths, np.int64) + 1)]  # string + separator
    cuts = bounds[np.r_[0, np.cumsum(np.asarray(counts, np.int64) * 2)]].tolist()
    blake = hashlib.blake2b
    digests = b"".join([blake(blob[a:b], digest_size=8).digest() for a, b in pairwise(cuts)])
    keys = np.frombuffer(digests, "<u8").astype(np.uint64)
    keys[keys == 0] = 1
    return keys


class SeriesIndex:
    """uint64 key -> int32 value (see the module docstring). Not thread-safe."""

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        cap = _MIN_CAPACITY
        while cap < 2 * capacity:
            cap *= 2
        self._alloc(cap)
        self._count = 0

    def _alloc(self, cap: int) -> None:
        self._keys = np.zeros(cap, np.uint64)  # 0: empty
        self._vals = np.zeros(cap, np.int32)
        self._shift = np.uint64(64 - (cap.bit_length() - 1))
        self._mask = cap - 1

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._vals.nbytes)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        # Fibonacci hashing: the top bits of key * golden ratio (keys need not be uniform)
        return ((keys * _GOLDEN) >> self._shift).astype(np.int64)

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where absent."""
        out = np.full(len(keys), -1, np.int64)
        todo = np.flatnonzero(keys != 0)  # 0 marks empty slots: never a key
        slot = self._home(keys[todo])
        while len(todo):
            k = self._keys[slot]
            want = keys[todo]
            hit = k == want
            out[todo[hit]] = slot[hit]
            go = ~hit & (k != 0)
            todo = todo[go]
            slot = (slot[go] + 1) & self._mask
        return out

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key (int64), ``ABSENT`` where the key is not in the index."""
        keys = np.asarray(keys, np.uint64)
        slot = self._find(keys)
        out = np.full(len(keys), ABSENT, np.int64)
        found = slot >= 0
        out[found] = self._vals[slot[found]]
        return out

    def assign(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Set ``keys`` to ``values`` (present keys updated, others inserted; a key given
        twice keeps its first value)."""
        keys = np.asarray(keys, np.uint64)
        values = np.asarray(values, np.int64)
        if not len(keys):
            return
        if not keys.all():
            raise ValueError("series key 0 is reserved (empty slot)")
        keys, first = np.unique(keys, return_index=True)
        values = values[first]
        slot = self._find(keys)
        found = slot >= 0
        self._vals[slot[found]] = values[found]
        self._insert(keys[~found], values[~found])

    def _insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Keys known to be absent and distinct."""
        if not len(keys):
            return
        if 2 * (self._count + len(keys)) > len(self._keys):
            self._grow(self._count + len(keys))
        slot = self._home(keys)
        while len(keys):
            empty = np.flatnonzero(self._keys[slot] == 0)
            # two keys wanting the same empty slot: the first takes it, the other probes on
            _, first = np.unique(slot[empty], return_index=True)
            win = empty[first]
            self._keys[slot[win]] = keys[win]
            self._vals[slot[win]] = values[win]
            self._count += len(win)
            rest = np.ones(len(keys), bool)
            rest[win] = False
            keys, values = keys[rest], values[rest]
            slot = (slot[rest] + 1) & self._mask

    def _grow(self, needed: int) -> None:
        cap = len(self._keys)
        while 2 * needed > cap:
            cap *= 2
        keys, vals = self.items()
        self._alloc(cap)
        self._count = 0
        self._insert(keys, vals.astype(np.int64))

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) of every entry, in slot order."""
        used = self._keys != 0
        return self._keys[used], self._vals[used]

    def keep(self, predicate_values: np.ndarray) -> None:
        """Rebuild with only the entries whose value passes ``predicate_values``
        (a boolean mask over ``items()`` order)."""
        keys, vals = self.items()
        keys, vals = keys[predicate_values], vals[predicate_values]
        cap = _MIN_CAPACITY
        while cap < 2 * len(keys):
            cap *= 2
        self._alloc(cap)
        self._count = 0
        self._insert(keys, vals.astype(np.int64))

    def clear(self) -> None:
        self._alloc(_MIN_CAPACITY)
        self._count = 0
