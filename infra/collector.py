"""The cyclic garbage collector, relaxed for bulk work: a replay and its worker processes.

A replay makes and drops millions of containers (parsed JSON, models), all of them freed
by reference counting: none is part of a cycle. At CPython's defaults the cyclic collector
still runs every 700 net allocations, and every tenth run scans again everything the
imports built. That was about a sixth of a replay worker's time (``bench/replay.py``).
Relaxed, it no longer sees what exists already (:func:`gc.freeze`) and runs every
:data:`ALLOCATIONS`; cycles are still collected, later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ALLOCATIONS", "relax_collector", "relaxed_collector"]

ALLOCATIONS = 50_000
"""Net allocations between two runs of the youngest generation, relaxed (default: 700)."""

_RELAXED = (ALLOCATIONS, 20, 20)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = gc.get_threshold()
_unfreeze = False


def relax_collector() -> None:
    """Relax it for the rest of this process's life: a worker process of lintas' own."""
    gc.freeze()
    gc.set_threshold(*_RELAXED)


@contextmanager
def relaxed_collector() -> Iterator[None]:
    """Relax it while the block runs, in a process that is not lintas' alone (a caller's):
    its thresholds come back after, and what was frozen for the block is thawed, unless
    the process had frozen objects of its own. Blocks may nest or overlap (threads, tasks):
    the last one out restores."""
    global _depth, _saved, _unfreeze
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            _unfreeze = gc.get_freeze_count() == 0
            gc.freeze()
            gc.set_threshold(*_RELAXED)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                if _unfreeze:
                    gc.unfreeze()
