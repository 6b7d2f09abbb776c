"""The cyclic collector relaxed for a replay: in the caller's process only while the replay
runs, in a replay worker for its life; cycles are still collected."""

from __future__ import annotations

import argparse
import gc
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import pytest
from rich.console import Console

from lintas.audit import _shards
from lintas.audit.collector import ALLOCATIONS, relaxed_collector
from lintas.infra.keys.signing import Registry
from lintas.infra.settings import Settings


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
    assert gc.get_freeze_count() > 0
    outer.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_overlapping_blocks_in_threads_restore_once_both_are_out() -> None:
    before = gc.get_threshold()
    entered, first_out, second_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def second() -> None:
        with relaxed_collector():
            entered.set()
            first_out.wait(timeout=10)
            seen.append(gc.get_threshold()[0])  # the first block has left; this one runs
        second_out.set()

    with relaxed_collector():
        thread = threading.Thread(target=second)
        thread.start()
        assert entered.wait(timeout=10)
    first_out.set()
    assert second_out.wait(timeout=10)
    thread.join()
    assert seen == [ALLOCATIONS]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restored_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), relaxed_collector():
        raise RuntimeError("replay failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_keeps_its_scheme() -> None:
    gc.freeze()
    node = _Node()  # made after the process's own freeze, alive while the block runs
    gone = weakref.ref(node)
    with relaxed_collector():
        assert gc.get_threshold()[0] == ALLOCATIONS
    assert gc.get_freeze_count() > 0  # its own freeze stands
    del node
    gc.collect()
    assert gone() is None  # not frozen for good by the block


def test_cycles_made_in_the_block_are_still_collected_unasked() -> None:
    with relaxed_collector():
        assert gc.isenabled()
        node = _Node()
        gone = weakref.ref(node)
        del node
        # Enough new containers for the youngest generation to be collected on its own.
        kept = [[] for _ in range(2 * ALLOCATIONS)]
        assert gone() is None
        del kept


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


def test_the_audit_commands_run_relaxed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lintas.cli import _audit

    before = gc.get_threshold()
    seen: list[int] = []

    def record_digest(*_: object) -> int:
        seen.append(gc.get_threshold()[0])
        return 0

    monkeypatch.setattr(_audit, "_record_digest", record_digest)
    args = argparse.Namespace(command="record", case_id=None)
    assert _audit.run_audit(Settings(data_dir=tmp_path), args, Console()) == 0
    assert seen == [ALLOCATIONS]
    assert gc.get_threshold() == before
