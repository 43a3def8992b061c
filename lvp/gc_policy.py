"""CPython's cyclic garbage collector while a service runs (collector, profiles, viewer).

Each event allocates dozens of short-lived containers (request parameters, decoded JSON, the
event's columns), which reference counting frees at once. With CPython's default thresholds
(700, 10, 10) the collector still runs a young collection every ~700 net allocations, and every
100th or so walks everything the process holds — modules, schemas, caches, every tracked
viewer — looking for cycles that are rarely there. Measured: ~15 % of the profiles consumer's CPU
and ~3.5 % of the collector's (`collector_bench`, 2026-12-07: 0.80 s of 23.3 s of the server's
CPU). While a service runs, :func:`service_gc` raises the thresholds and freezes what the service
built before serving (``gc.freeze``: kept out of every later collection), and puts both back when
it stops. Several services in one process (the tests; their lifetimes overlap in threads) share
one policy: the first to start applies it, the last to stop restores what was there before.
Cycles are still collected, later.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import Final

__all__ = ["SERVICE_GC_THRESHOLDS", "service_gc"]

#: (young, middle, old): a young collection every 50,000 net allocations instead of 700.
SERVICE_GC_THRESHOLDS: Final = (50_000, 50, 100)


_lock = threading.Lock()
_active = 0
_previous: tuple[int, int, int] | None = None


@contextlib.contextmanager
def service_gc(thresholds: tuple[int, int, int] = SERVICE_GC_THRESHOLDS) -> Iterator[None]:
    """Within: ``thresholds``, and what exists on entry frozen. When the last service in the
    process leaves: the thresholds from before the first entered, nothing frozen."""
    global _active, _previous
    with _lock:
        if _active == 0:
            _previous = gc.get_threshold()
        _active += 1
        gc.collect()  # (what start-up left as garbage is not frozen with the rest)
        gc.freeze()
        gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _previous is not None:
                gc.set_threshold(*_previous)
                gc.unfreeze()
                _previous = None
