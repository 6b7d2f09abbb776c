"""The cyclic collector relaxed for a replay: in the caller's process only while the replay
runs, in a replay worker for its life; cycles are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import pytest

from lintas.audit import _shards
from lintas.infra.collector import ALLOCATIONS, relaxed_collector
from lintas.infra.keys import Registry


@pytest.fixture(autouse=True)
def _defaults() -> Iterator[None]:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_relaxed_only_while_the_block_runs() -> None:
    before = gc.get_threshold()
    with relaxed_collector():
        assert gc.get_threshold()[0] == ALLOCATIONS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_last_of_nested_blocks_restores() -> None:
    before = gc.get_threshold()
    outer = relaxed_collector()
    outer.__enter__()
    with relaxed_collector():
        pass
    assert gc.get_threshold()[0] == ALLOCATIONS  # the outer block still runs
    outer.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restored_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), relaxed_collector():
        raise RuntimeError("replay failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_what_the_process_froze_itself_stays_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with relaxed_collector():
        pass
    assert gc.get_freeze_count() >= frozen


def test_cycles_made_in_the_block_are_still_collected() -> None:
    with relaxed_collector():
        node = _Node()
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None


def _collector_state() -> tuple[tuple[int, int, int], int]:
    return gc.get_threshold(), gc.get_freeze_count()


def test_a_replay_worker_runs_relaxed_for_its_life(tmp_path: Path) -> None:
    job = _shards.ShardJob(
        f"sqlite:///{tmp_path / 'replay.sqlite'}", Registry([]), datetime.now(UTC), 8
    )
    with ProcessPoolExecutor(
        1, mp_context=get_context("spawn"), initializer=_shards.start_worker, initargs=(job,)
    ) as worker:
        threshold, frozen = worker.submit(_collector_state).result(timeout=60)
    assert threshold[0] == ALLOCATIONS
    assert frozen > 0
