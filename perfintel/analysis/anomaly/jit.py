"""Compilation of the detector's scalar code: numba when present, plain Python otherwise.

Every model's arithmetic is written once, as scalar Python functions over a
per-series state row (``@njit``). With numba installed they are compiled in
nopython mode, the machine code cached on disk (``cache=True``: next to the
source in ``__pycache__``, else numba's user cache dir or ``NUMBA_CACHE_DIR``;
where no cache location is writable, per process). Without numba, or with
``NUMBA_DISABLE_JIT=1``, the *same functions* run as ordinary Python: the same
results, a few hundred times slower. ``COMPILED`` says which is in effect.

Floating-point semantics are left strict (no ``fastmath``: no reassociation,
no fused multiply-add), so results do not depend on the optimiser.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def _numba() -> ModuleType | None:
    try:
        return importlib.import_module("numba")
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return None


_nb = _numba()
#: Whether ``njit`` compiles (numba importable and its JIT not disabled).
COMPILED = _nb is not None and not bool(_nb.config.DISABLE_JIT)


def njit(fn: F) -> F:
    """``numba.njit`` with an on-disk cache when one is usable; ``fn`` itself without numba."""
    if _nb is None:
        return fn
    try:
        return cast(F, _nb.njit(cache=True, error_model="numpy", nogil=True)(fn))
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return cast(F, _nb.njit(cache=False, error_model="numpy", nogil=True)(fn))
