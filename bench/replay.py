"""Replay benchmark (issue 5, "Measure"): figures, never assertions.

    python bench/replay.py [--events N] [--big N] [--case-size N] [--case-repeats N] [--quick]
                           [--profile]

Starts its own embedded nats-server (two, in fact: one per stream size) on a temp dir, fills
each ``LINTAS`` stream with signed, hash-chained events of many cases (mixed families, about
0.8 KB each; built and signed in worker processes, published with ``js.publish_async``), then
measures, in the same run:

1. a full replay (``lintas.audit`` replay into a fresh SQLite file) of the big stream, in
   events/s, against a raw nats-py ordered read of the same stream (an ordered push
   consumer, read before and after the replay, the ratio against the mean of the two times;
   and direct gets 64 at a time), both decode-free, beside lintas' StreamReader alone,
   through a consumer and by batched direct gets (as it reads where it may not create a
   consumer);
2. a single-case replay (same case size) on the small and on the big stream;
3. the peak RSS of the full replay of the big stream (run in a fresh child process, so the
   peak is the replay's alone, not the fill's), and of each worker process it splits the
   cases across (sampled from /proc).

Targets (issue 5): replay >= 0.5x the raw rate; single-case times within 1.5x; they are
printed beside the figures, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _common import ChildPeaks, Log, filled_log, machine, met, mib, peak_rss_kb, rate
from nats.js import JetStreamContext

from lintas.audit import StreamReader, replay
from lintas.audit.replay import _BULK, open_fresh_store
from lintas.infra.keys.signing import load_registry
from lintas.infra.nats.bus import connect
from lintas.infra.settings import Settings

# Single-case replays per stream; the median is reported. Each takes some tens of ms, and
# one in five or so is slowed twofold by the shared machine: with five, the big/small
# ratio of the medians went from 1.18 to 1.53 for the same code.
CASE_REPEATS = 11

# -- measurements -----------------------------------------------------------------------------


async def raw_ordered(log: Log) -> float:
    """Seconds to receive every message through an ordered push consumer, decode-free."""
    started = time.perf_counter()
    sub = await log.js.subscribe("lintas.>", stream=log.settings.stream, ordered_consumer=True)
    count = 0
    async for _msg in sub.messages:
        count += 1
        if count >= log.events:
            break
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed


async def raw_direct(log: Log, window: int = 64) -> float:
    """Seconds to direct-get every sequence, ``window`` at a time, decode-free."""
    stream = log.settings.stream
    started = time.perf_counter()
    for start in range(1, log.events + 1, window):
        end = min(start + window, log.events + 1)
        await asyncio.gather(
            *(log.js.get_msg(stream, seq=s, direct=True) for s in range(start, end))
        )
    return time.perf_counter() - started


async def reader_only(log: Log, consumer: bool = True) -> float:
    """Seconds for lintas' StreamReader alone (no decode, no store): through a consumer, or
    as a reader that may create none (the auditor on a secured bus) reads; on a client of
    lintas' own, as ``lintas replay`` connects."""
    nc = await connect(log.server.url, "bench-reader")
    try:
        reader = StreamReader(nc.jetstream(timeout=30), log.settings.stream, consumer=consumer)
        started = time.perf_counter()
        cut = await reader.cut()
        async for _ in reader.events(cut):
            pass
        return time.perf_counter() - started
    finally:
        await nc.close()


async def _replay_once(
    js: JetStreamContext, settings: Settings, db: Path, case_id: str | None
) -> tuple[float, Any]:
    url = f"sqlite:///{db}"
    started = time.perf_counter()
    engine = open_fresh_store(url, settings)
    try:
        reader = StreamReader(js, settings.stream, case_id=case_id)
        cut = await reader.cut()
        result = await replay(
            reader.events(cut),
            engine,
            url,
            load_registry(settings),
            source="bench",
            case_id=case_id,
        )
    finally:
        engine.dispose()
    return time.perf_counter() - started, result


def _full_replay_child(url: str, data_dir: str, db: str) -> dict[str, Any]:
    """In a fresh process: a full replay, its time and the process's peak RSS."""

    async def run() -> dict[str, Any]:
        nc = await connect(url, "bench-replay")  # as `lintas replay` connects
        try:
            before = peak_rss_kb()
            with ChildPeaks() as workers:
                elapsed, result = await _replay_once(
                    nc.jetstream(timeout=30), Settings(data_dir=Path(data_dir)), Path(db), None
                )
            peak = peak_rss_kb()
        finally:
            await nc.close()
        return {
            "elapsed": elapsed,
            "read": result.read,
            "applied": result.applied,
            "skipped": result.skipped,
            "reasons": result.skipped_reasons[:3],
            "cases": result.digest.cases if result.digest else 0,
            "rss_before_kb": before,
            "rss_peak_kb": peak,
            "workers_peak_kb": sorted(workers.peaks.values()),
        }

    return asyncio.run(run())


async def full_replay(log: Log, root: Path) -> dict[str, Any]:
    db = root / f"full-{log.name}.sqlite"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
        return await asyncio.get_running_loop().run_in_executor(
            child, _full_replay_child, log.server.url, str(log.settings.data_dir), str(db)
        )


async def case_replay(log: Log, root: Path, case_id: str, repeat: int) -> tuple[float, Any]:
    nc = await connect(log.server.url, "bench-case-replay")
    try:
        return await _replay_once(
            nc.jetstream(timeout=30),
            log.settings,
            root / f"case-{log.name}-{repeat}.sqlite",
            case_id,
        )
    finally:
        await nc.close()


# -- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    for line in machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-"))
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"))
    try:
        async with (
            filled_log(root, "small", args.events, args.case_size, pool) as small,
            filled_log(root, "big", args.big, args.case_size, pool) as big,
        ):
            pool.shutdown()
            for log in (small, big):
                print(
                    f"filled {log.name}: {log.events:,} events, {len(log.cases):,} cases of "
                    f"{args.case_size}, {log.body_bytes / max(log.events, 1):,.0f} B/event, "
                    f"in {log.fill_s:.1f}s"
                )
            if args.profile:
                await _profile(small, root)

            raw_before = await raw_ordered(big)
            raw_get = await raw_direct(big)
            read_s = await reader_only(big)
            read_batched_s = await reader_only(big, consumer=False)
            full = await full_replay(big, root)
            # Again after the replay: the machine's speed drifts, and the ratio is taken
            # against the mean of the two (both printed, so the drift shows).
            raw_after = await raw_ordered(big)
            raw_push = (raw_before + raw_after) / 2

            case_times: dict[str, list[float]] = {"small": [], "big": []}
            case_events: dict[str, int] = {}
            for repeat in range(args.case_repeats):
                for log in (small, big):
                    case_id = log.cases[len(log.cases) // 2]
                    elapsed, result = await case_replay(log, root, case_id, repeat)
                    case_times[log.name].append(elapsed)
                    case_events[log.name] = result.read
    finally:
        pool.shutdown(cancel_futures=True)
        shutil.rmtree(root, ignore_errors=True)

    n = big.events
    replay_rate = full["read"] / full["elapsed"]
    push_rate, get_rate = n / raw_push, n / raw_get
    t_small, t_big = statistics.median(case_times["small"]), statistics.median(case_times["big"])
    print()
    print(f"== 1. full replay vs raw nats-py read ({n:,}-event stream) ==")
    print(f"  raw ordered consumer (push, no decode) {raw_push:8.2f}s {rate(n, raw_push)}")
    print(
        f"    (the mean time of two reads: before the replay {rate(n, raw_before)}, "
        f"after {rate(n, raw_after)})"
    )
    print(f"  raw direct gets, 64 at a time          {raw_get:8.2f}s {rate(n, raw_get)}")
    print(f"  lintas StreamReader only               {read_s:8.2f}s {rate(n, read_s)}")
    print(
        f"  lintas StreamReader, no consumer       {read_batched_s:8.2f}s "
        f"{rate(n, read_batched_s)}  (batched direct gets: the auditor on a secured bus)"
    )
    print(
        f"  lintas replay -> fresh SQLite          {full['elapsed']:8.2f}s "
        f"{rate(full['read'], full['elapsed'])}"
        f"  ({full['applied']:,} applied, {full['skipped']:,} skipped, {full['cases']:,} cases)"
    )
    if full["skipped"]:
        print(f"  WARNING: events skipped: {full['reasons']}")
    ratio = replay_rate / push_rate
    print(
        f"  ratio replay / raw ordered consumer    {ratio:8.3f}   "
        f"(target >= 0.5: {met(ratio >= 0.5)})"
    )
    print(f"  ratio replay / raw direct gets         {replay_rate / get_rate:8.3f}")
    print()
    print(f"== 2. single-case replay (median of {args.case_repeats}) ==")
    for name, log in (("small", small), ("big", big)):
        times = case_times[name]
        print(
            f"  {log.events:>9,}-event stream: case of {case_events[name]} events "
            f"{statistics.median(times) * 1000:8.1f} ms  (min {min(times) * 1000:.1f}, "
            f"max {max(times) * 1000:.1f})"
        )
    case_ratio = t_big / t_small
    print(
        f"  ratio big / small                      {case_ratio:8.3f}   "
        f"(target <= 1.5: {met(case_ratio <= 1.5)})"
    )
    print()
    print(f"== 3. peak memory of the full replay ({n:,} events, fresh process) ==")
    print(f"  RSS after imports and connect          {mib(full['rss_before_kb'])}")
    print(f"  peak RSS (VmHWM)                       {mib(full['rss_peak_kb'])}")
    for k, kb in enumerate(full["workers_peak_kb"], 1):
        print(f"  peak RSS of replay worker {k}            {mib(kb)}")
    if full["workers_peak_kb"]:
        total = full["rss_peak_kb"] + sum(full["workers_peak_kb"])
        print(f"  all processes (sum of peaks)           {mib(total)}")
    print(
        f"  growth during replay                   "
        f"{mib(full['rss_peak_kb'] - full['rss_before_kb'])}"
    )


async def _profile(log: Log, root: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await _replay_once(log.js, log.settings, root / "profile.sqlite", None)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    print(f"\n== profile: full replay of the {log.events:,}-event stream ==")
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="small stream (10,000)")
    parser.add_argument("--big", type=int, default=200_000, help="big stream (200,000)")
    parser.add_argument("--case-size", type=int, default=40, help="events per case (40)")
    parser.add_argument(
        "--case-repeats",
        type=int,
        default=CASE_REPEATS,
        help=f"single-case replays per stream, the median reported ({CASE_REPEATS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (200 events, and just past what a replay splits across processes)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile a small full replay")
    args = parser.parse_args(argv)
    if args.quick:
        # The big stream just past the size a replay splits across worker processes
        # (lintas.audit.replay._BULK): the smoke run sees its workers and their peaks.
        args.events, args.case_repeats = 200, 3
        args.big = (_BULK // args.case_size + 4) * args.case_size
    started = time.perf_counter()
    asyncio.run(run(args))
    print(f"\n(bench ran {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
