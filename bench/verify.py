"""Whole-log verify benchmark (issue 23): figures, never assertions.

    python bench/verify.py [--events N] [--case-size N] [--repeats N] [--quick]

Fills one embedded nats-server's ``LINTAS`` stream with realistic events (signed, chained,
about 0.8 KB, mixed families; 10,000 events in cases of 40 by default), checkpoints it with
the sealer's key (one version-2 checkpoint over the whole log: its digest, the Merkle tree's
root and the case heads' root), then times, on a lintas client (``connect``, as ``lintas
verify`` connects), the same :class:`~lintas.audit.StreamReader` and the collector relaxed as
the audit commands relax it for every row, each read
both ways ``verify`` reads (through an ephemeral consumer, as on an open bus; by batched
direct gets, as the auditor on a secured bus):

* baseline: read every message and hash it as lintas does (``message_hash``: SHA-256 of the
  RFC 8785 form), nothing else: what any whole-log check has to pay;
* verify without the tree: ``verify_stream`` of the whole log and its checkpoint with the
  checkpoint's tree not grown (what verify did before checkpoints committed to trees: the
  digest chain, signatures, chains, contracts, authority);
* verify: the same with the Merkle tree of the log and the case heads recomputed and
  checked against the checkpoint (``lintas verify`` today).

Each row is the median of ``--repeats`` runs, the rows interleaved run by run so a machine
that changes speed meanwhile slows them all alike. Printed: seconds, rates, the ratio of each
verify against the baseline, and the tree's share of verify's time
((verify - verify without the tree) / verify).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _common import Log, filled_log, machine, rate

import lintas.audit.check as check_module
from lintas.audit import StreamReader, read_checkpoints, verify_stream
from lintas.audit.checkpoints import CheckpointChecker, checkpoint_stream
from lintas.audit.collector import relaxed_collector
from lintas.contracts import message_hash
from lintas.infra.keys.signing import ensure_sealer_key, load_registry
from lintas.infra.nats.bus import connect


class _WithoutTree(CheckpointChecker):
    """The checker as before trees: digests, counts and signatures, no Merkle tree grown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = None


async def _reading(
    log: Log, consumer: bool, work: Callable[[Any, StreamReader], Awaitable[None]]
) -> float:
    nc = await connect(log.server.url, "bench-verify")
    try:
        js = nc.jetstream(timeout=30)
        reader = StreamReader(js, log.settings.stream, consumer=consumer)
        # Every row relaxes the collector as the audit commands do (lintas.audit.collector).
        with relaxed_collector():
            started = time.perf_counter()
            await work(js, reader)
        return time.perf_counter() - started
    finally:
        await nc.close()


async def baseline(log: Log, consumer: bool) -> float:
    """Seconds to read every message and hash it as lintas does, nothing else."""

    async def work(_js: Any, reader: StreamReader) -> None:
        async for stored in reader.events(await reader.cut()):
            message_hash(stored.body)

    return await _reading(log, consumer, work)


async def verify(log: Log, consumer: bool, *, tree: bool) -> float:
    """Seconds for ``verify_stream`` of the whole log and its checkpoints (the registry and
    the checkpoints read first, as ``lintas verify`` reads them, inside the time)."""

    async def work(js: Any, reader: StreamReader) -> None:
        registry = load_registry(log.settings)
        checkpoints = await read_checkpoints(js, log.settings)
        cut = await reader.cut()
        check_module.CheckpointChecker = CheckpointChecker if tree else _WithoutTree  # type: ignore[misc]
        try:
            verdict = await verify_stream(
                reader.events(cut), cut, registry, checkpoints=checkpoints
            )
        finally:
            check_module.CheckpointChecker = CheckpointChecker  # type: ignore[misc]
        if not verdict.ok:
            raise SystemExit(f"the bench's log does not verify: {verdict.finding}")
        if tree != ("Merkle roots recomputed" in " ".join(verdict.notes)):
            raise SystemExit(f"verify's trees are not as this row needs: {verdict.notes}")

    return await _reading(log, consumer, work)


async def run(args: argparse.Namespace) -> None:
    for line in machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-"))
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"))
    async with filled_log(root, "verify", args.events, args.case_size, pool) as log:
        pool.shutdown()
        sealer = ensure_sealer_key(log.settings)[0]
        started = time.perf_counter()
        checkpoint = await checkpoint_stream(log.js, log.settings, sealer)
        checkpoint_s = time.perf_counter() - started
        assert checkpoint is not None
        n = log.events
        print(
            f"filled: {n:,} events, {len(log.cases):,} cases of {args.case_size}, "
            f"{log.body_bytes / max(n, 1):,.0f} B/event, in {log.fill_s:.1f}s; one checkpoint "
            f"over it (tree size {checkpoint.tree_size}, {checkpoint.cases_size} case heads) "
            f"in {checkpoint_s:.2f}s"
        )
        rows: dict[str, Callable[[bool], Awaitable[float]]] = {
            "baseline: read + message_hash": lambda c: baseline(log, c),
            "verify without the tree": lambda c: verify(log, c, tree=False),
            "verify (with the Merkle tree)": lambda c: verify(log, c, tree=True),
        }
        for consumer, how in ((True, "an ephemeral consumer"), (False, "batched direct gets")):
            times: dict[str, list[float]] = {name: [] for name in rows}
            for _ in range(args.repeats):
                for name, measure in rows.items():
                    times[name].append(await measure(consumer))
            median = {name: statistics.median(t) for name, t in times.items()}
            base = median["baseline: read + message_hash"]
            before = median["verify without the tree"]
            after = median["verify (with the Merkle tree)"]
            print()
            print(
                f"== verify: whole log of {n:,} events, read by {how} (median of {args.repeats}) =="
            )
            for name, seconds in median.items():
                print(
                    f"  {name:<34} {seconds:7.2f}s {rate(n, seconds)} "
                    f"{seconds / n * 1e6:7.1f} µs/event"
                )
            print(f"  ratio verify without the tree / baseline {before / base:7.2f}")
            print(f"  ratio verify / baseline                  {after / base:7.2f}")
            print(f"  the Merkle tree's share of verify        {(after - before) / after:7.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events (10,000)")
    parser.add_argument("--case-size", type=int, default=40, help="events per case (40)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (5)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (200 events, 1 run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats = 200, 1
    started = time.perf_counter()
    asyncio.run(run(args))
    print(f"\n(bench ran {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
