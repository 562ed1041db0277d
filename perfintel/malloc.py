"""glibc malloc settings for the long-running service (no-ops elsewhere).

Two habits of glibc's allocator inflate a Python service's resident memory:

* every thread that allocates may get an arena of its own (up to 8 per core),
  and each arena keeps the memory freed into it;
* a large block (a numpy array of a flush or a query) is mmapped only below a
  *dynamic* threshold that rises to the size of each large block freed, so
  after the first flush, flush-sized arrays come from the arenas and their
  pages stay resident after ``free``.

``tune_for_service`` caps the arenas and fixes the mmap threshold (large
blocks then always go back to the system when freed); ``trim`` hands free
arena pages back after a burst of temporaries (the store calls it after a
flush). Both leave a process alone whose environment sets ``MALLOC_ARENA_MAX``
or ``MALLOC_MMAP_THRESHOLD_`` itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENA_MAX = 2
MMAP_THRESHOLD = 4 << 20  # 1 MiB: as lean, but q3-like queries ran 45 % slower (page faults)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc (musl has no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def tune_for_service() -> None:
    """Cap malloc arenas and fix the mmap threshold for this process."""
    if _LIBC is None:
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    """Return free memory of the malloc arenas to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
