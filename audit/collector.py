"""The cyclic garbage collector, relaxed for bulk work: a replay and its worker processes.

A replay makes and drops millions of containers (parsed JSON, models), nearly all freed by
reference counting alone. At CPython's defaults the cyclic collector still runs every 700
net allocations, every tenth run takes the middle generation too, and now and then a full
run scans again everything the imports built. That was about a sixth of a replay worker's
time (``bench/replay.py``). Relaxed, it no longer sees what exists already
(:func:`gc.freeze`) and runs every :data:`ALLOCATIONS`; the cycles the work does make (a
database session's, say) are still collected, later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ALLOCATIONS", "relax_collector", "relaxed_collector"]

ALLOCATIONS = 50_000
"""Net allocations between two runs of the youngest generation, relaxed (default: 700)."""

# The older generations keep CPython's ratios (every 10th run) doubled: with the youngest
# run 70 times less often, they still run far less often than at the defaults.
_RELAXED = (ALLOCATIONS, 20, 20)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = gc.get_threshold()
_froze = False


def relax_collector() -> None:
    """Relax it for the rest of this process's life: a worker process of lintas' own.

    No collection first: right after the imports it finds nothing to free, and it would
    cost some 80 ms on the replay's path."""
    gc.freeze()
    gc.set_threshold(*_RELAXED)


@contextmanager
def relaxed_collector() -> Iterator[None]:
    """Relax it while the block runs, in a process that is not lintas' alone (a caller's).

    Its thresholds come back after, and what was frozen for the block is thawed. A process
    that froze objects of its own is left to its own scheme: only the thresholds change,
    since freezing again would keep whatever its heap holds out of every collection for
    good. Blocks may nest or overlap (threads, tasks): the last one out restores."""
    global _depth, _saved, _froze
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            _froze = gc.get_freeze_count() == 0
            if _froze:
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
                if _froze:
                    gc.unfreeze()
