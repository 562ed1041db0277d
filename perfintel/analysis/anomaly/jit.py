"""Optional numba compilation for the scalar anomaly kernel.

``njit(fn)`` compiles ``fn`` with numba in nopython mode, caching the machine
code on disk (``cache=True``: next to the source in ``__pycache__``, or numba's
user-wide cache dir, or ``NUMBA_CACHE_DIR``) so later processes skip the
compile. Where no cache location is writable it compiles per process instead.
Importing this module raises ``ImportError`` when numba is not installed; the
callers (``kernel.py``) then fall back to the vectorised path.

Floating-point semantics are left strict (no ``fastmath``: no reassociation,
no fused multiply-add), so the scalar loops round exactly like numpy's
element-wise operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

F = Callable[..., Any]


def njit(fn: F) -> F:
    """``numba.njit`` with an on-disk cache when one is usable."""
    try:
        return numba.njit(cache=True, error_model="numpy", nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, error_model="numpy", nogil=True)(fn)
