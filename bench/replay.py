"""Replay benchmark (issue 5, "Measure"): figures, never assertions.

    python bench/replay.py [--events N] [--big N] [--case-size N] [--quick] [--profile]

Starts its own embedded nats-server (two, in fact: one per stream size) on a temp dir, fills
each ``LINTAS`` stream with signed, hash-chained events of many cases (mixed families, about
0.8 KB each; built and signed in worker processes, published with ``js.publish_async``), then
measures, in the same run:

1. a full replay (``lintas.audit`` replay into a fresh SQLite file) of the big stream, in
   events/s, against a raw nats-py ordered read of the same stream (an ordered push consumer,
   and direct gets 64 at a time as StreamReader does), both decode-free;
2. a single-case replay (same case size) on the small and on the big stream;
3. the peak RSS of the full replay of the big stream (run in a fresh child process, so the
   peak is the replay's alone, not the fill's).

Targets (issue 5): replay >= 0.5x the raw rate; single-case times within 1.5x; they are
printed beside the figures, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from lintas.audit import StreamReader, replay
from lintas.audit.replay import open_fresh_store
from lintas.contracts import build_data, encode, make_event, message_hash, new_case_id
from lintas.infra.embedded import EmbeddedNats, find_nats_server, nats_server_version
from lintas.infra.keys import Signer, ensure_agency_key, load_registry
from lintas.infra.settings import Settings
from lintas.infra.topology import ensure_stream

AGENCIES = ("kemlu", "kp2mi", "dukcapil", "kemensos")
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
CHUNK_CASES = 250  # cases built per worker task; their events are interleaved in the stream
CASE_REPEATS = 5  # single-case replays per stream; the median is reported

NOTES = (
    "Anak terlantar tanpa dokumen di perkebunan sawit, tinggal bersama kerabat jauh. "
    "Perlu asesmen psikososial sebelum pemulangan; koordinasi dengan KJRI untuk SPLP dan "
    "dengan Dinas Sosial kabupaten asal untuk penjangkauan keluarga. "
)
OPENED: dict[str, Any] = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
    "risk_level": "high",
    "child": {
        "full_name": "Siti Nurhaliza binti Ahmad",
        "birth_date": "2014-05-17",
        "sex": "f",
        "mother_name": "Aminah",
        "address": "Ladang Sawit Felda, Tawau, Sabah",
    },
}


# -- building the log (in worker processes) ---------------------------------------------------


def _cycle(k: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One round of a case's pathway: (source, target, type, data)."""
    return [
        ("kp2mi", "dukcapil", "document.requested", {"request_id": f"doc-{k}", "kind": "nik"}),
        (
            "dukcapil",
            "kp2mi",
            "document.issued",
            {
                "request_id": f"doc-{k}",
                "kind": "nik",
                "number": "3525010101150001",
                "issuing_office": "Dinas Kependudukan dan Pencatatan Sipil Kabupaten Gresik",
                "issued_on": "2025-03-02",
                "valid_until": "2035-03-02",
            },
        ),
        (
            "kp2mi",
            "kemensos",
            "referral.requested",
            {
                "referral_id": f"ref-{k}",
                "service": "psychosocial_assessment",
                "due": "2025-04-01T00:00:00Z",
                "notes": NOTES,
            },
        ),
        ("kemensos", "kp2mi", "referral.accepted", {"referral_id": f"ref-{k}"}),
        (
            "kp2mi",
            "kemensos",
            "case.assessed",
            {"risk_level": "medium", "needs": ["documents", "psychosocial"], "summary": NOTES},
        ),
    ]


def _pathway(size: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    steps: list[tuple[str, str, str, dict[str, Any]]] = [("kemlu", "kp2mi", "case.opened", OPENED)]
    k = 0
    while len(steps) < size - 1:
        steps.extend(_cycle(k))
        k += 1
    steps = steps[: max(size - 1, 1)]
    if size > 1:
        steps.append(("kp2mi", "kemlu", "case.closed", {"reason": "reintegrated"}))
    return steps


_signers: dict[str, dict[str, Signer]] = {}  # by data dir: each log has its own keys


def _build_chunk(task: tuple[str, int, list[str], int]) -> list[tuple[str, bytes, str]]:
    """The events of ``case_ids``, signed and chained, interleaved step by step:
    (subject, body, event id)."""
    data_dir, first_index, case_ids, size = task
    if data_dir not in _signers:
        settings = Settings(data_dir=Path(data_dir))
        _signers[data_dir] = {a: Signer.load(settings, a) for a in AGENCIES}
    signers = _signers[data_dir]
    pathway = _pathway(size)
    datas = [build_data(kind, data) for _, _, kind, data in pathway]
    heads: dict[str, str | None] = dict.fromkeys(case_ids)
    out: list[tuple[str, bytes, str]] = []
    for step, (source, target, _, _) in enumerate(pathway):
        for offset, case_id in enumerate(case_ids):
            at = T0 + timedelta(minutes=first_index + offset, hours=step)
            event = make_event(datas[step], source=source, target=target, case_id=case_id, time=at)
            envelope = event.envelope.model_copy(update={"prevhash": heads[case_id]})
            envelope = signers[source].sign(envelope)
            body = encode(envelope)
            heads[case_id] = message_hash(body)
            out.append((envelope.nats_subject, body, envelope.id))
    return out


@dataclass
class Log:
    name: str
    server: EmbeddedNats
    settings: Settings
    nc: Any
    js: JetStreamContext
    events: int
    cases: list[str]
    body_bytes: int
    fill_s: float


async def _fill(
    js: JetStreamContext, settings: Settings, events: int, case_size: int, pool: ProcessPoolExecutor
) -> tuple[list[str], int]:
    n_cases = max(events // case_size, 1)
    case_ids = [new_case_id() for _ in range(n_cases)]
    tasks = [
        (str(settings.data_dir), i, case_ids[i : i + CHUNK_CASES], case_size)
        for i in range(0, n_cases, CHUNK_CASES)
    ]
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, _build_chunk, task) for task in tasks]
    body_bytes = 0
    for future in futures:
        acks = []
        for subject, body, event_id in await future:
            body_bytes += len(body)
            acks.append(
                await js.publish_async(
                    subject, body, wait_stall=60, headers={"Nats-Msg-Id": event_id}
                )
            )
        await asyncio.gather(*acks)  # raises if JetStream refused one
    await js.publish_async_completed()
    return case_ids, body_bytes


@asynccontextmanager
async def _log(root: Path, name: str, events: int, case_size: int, pool: ProcessPoolExecutor):
    settings = Settings(data_dir=root / name)
    for agency in AGENCIES:
        ensure_agency_key(settings, agency)
    server = EmbeddedNats(settings.nats_store_dir, server_name=f"lintas-bench-{name}")
    await server.start()
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream(timeout=30, publish_async_max_pending=4000)
        await ensure_stream(js, settings)
        started = time.perf_counter()
        cases, body_bytes = await _fill(js, settings, events, case_size, pool)
        fill_s = time.perf_counter() - started
        info = await js.stream_info(settings.stream)
        yield Log(name, server, settings, nc, js, info.state.messages, cases, body_bytes, fill_s)
    finally:
        await nc.close()
        await server.stop()


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


async def reader_only(log: Log) -> float:
    """Seconds for lintas' StreamReader alone (no decode, no store)."""
    reader = StreamReader(log.js, log.settings.stream)
    started = time.perf_counter()
    cut = await reader.cut()
    async for _ in reader.events(cut):
        pass
    return time.perf_counter() - started


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


def _peak_rss_kb() -> int:
    """This process's peak RSS in KiB: VmHWM where /proc has it, else ru_maxrss.

    Not ru_maxrss first: on Linux it survives exec, so a spawned child would report its
    parent's peak (the fill) until it outgrew it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _full_replay_child(url: str, data_dir: str, db: str) -> dict[str, Any]:
    """In a fresh process: a full replay, its time and the process's peak RSS."""

    async def run() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            before = _peak_rss_kb()
            elapsed, result = await _replay_once(
                nc.jetstream(timeout=30), Settings(data_dir=Path(data_dir)), Path(db), None
            )
            peak = _peak_rss_kb()
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
        }

    return asyncio.run(run())


async def full_replay(log: Log, root: Path) -> dict[str, Any]:
    db = root / f"full-{log.name}.sqlite"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
        return await asyncio.get_running_loop().run_in_executor(
            child, _full_replay_child, log.server.url, str(log.settings.data_dir), str(db)
        )


async def case_replay(log: Log, root: Path, case_id: str, repeat: int) -> tuple[float, Any]:
    elapsed, result = await _replay_once(
        log.js, log.settings, root / f"case-{log.name}-{repeat}.sqlite", case_id
    )
    return elapsed, result


# -- the run ----------------------------------------------------------------------------------


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:>10,.0f} ev/s" if seconds > 0 else "n/a"


def _mib(kb: int) -> str:
    return f"{kb / 1024:,.1f} MiB"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _machine() -> Iterator[str]:
    binary = find_nats_server()
    version = ".".join(map(str, nats_server_version(binary)))
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    yield f"machine: {os.cpu_count()} cpus, {pages / 2**30:.1f} GiB RAM, {platform.platform()}"
    yield f"python {platform.python_version()}, nats-server v{version}"


async def run(args: argparse.Namespace) -> None:
    for line in _machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-"))
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"))
    try:
        async with (
            _log(root, "small", args.events, args.case_size, pool) as small,
            _log(root, "big", args.big, args.case_size, pool) as big,
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

            raw_push = await raw_ordered(big)
            raw_get = await raw_direct(big)
            read_s = await reader_only(big)
            full = await full_replay(big, root)

            case_times: dict[str, list[float]] = {"small": [], "big": []}
            case_events: dict[str, int] = {}
            for repeat in range(CASE_REPEATS):
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
    print(f"  raw ordered consumer (push, no decode) {raw_push:8.2f}s {_rate(n, raw_push)}")
    print(f"  raw direct gets, 64 at a time          {raw_get:8.2f}s {_rate(n, raw_get)}")
    print(f"  lintas StreamReader only               {read_s:8.2f}s {_rate(n, read_s)}")
    print(
        f"  lintas replay -> fresh SQLite          {full['elapsed']:8.2f}s "
        f"{_rate(full['read'], full['elapsed'])}"
        f"  ({full['applied']:,} applied, {full['skipped']:,} skipped, {full['cases']:,} cases)"
    )
    if full["skipped"]:
        print(f"  WARNING: events skipped: {full['reasons']}")
    ratio = replay_rate / push_rate
    print(
        f"  ratio replay / raw ordered consumer    {ratio:8.3f}   "
        f"(target >= 0.5: {_met(ratio >= 0.5)})"
    )
    print(f"  ratio replay / raw direct gets         {replay_rate / get_rate:8.3f}")
    print()
    print(f"== 2. single-case replay (median of {CASE_REPEATS}) ==")
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
        f"(target <= 1.5: {_met(case_ratio <= 1.5)})"
    )
    print()
    print(f"== 3. peak memory of the full replay ({n:,} events, fresh process) ==")
    print(f"  RSS after imports and connect          {_mib(full['rss_before_kb'])}")
    print(f"  peak RSS (VmHWM)                       {_mib(full['rss_peak_kb'])}")
    print(
        f"  growth during replay                   "
        f"{_mib(full['rss_peak_kb'] - full['rss_before_kb'])}"
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
    parser.add_argument("--quick", action="store_true", help="tiny sizes (2,000 and 10,000)")
    parser.add_argument("--profile", action="store_true", help="cProfile a small full replay")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.big = 2_000, 10_000
    started = time.perf_counter()
    asyncio.run(run(args))
    print(f"\n(bench ran {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
