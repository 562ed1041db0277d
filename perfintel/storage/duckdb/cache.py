"""A bounded LRU of what the database returned per series, valid for one data version.

The store bumps its data version whenever it writes chunks or rollups, which
invalidates every entry at once; an entry also records the time range it
covers, so it serves any read inside that range. It caches stored blocks, not
query results: every query still decodes and computes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BlockCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, int, int, Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: int, lo: int, hi: int) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version or lo < entry[1] or hi > entry[2]:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[3]

    def put(self, key: Hashable, version: int, lo: int, hi: int, payload: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[4]
            self._entries[key] = (version, lo, hi, payload, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted[4]
