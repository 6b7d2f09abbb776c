"""Admission benchmark: figures, never assertions.

    python bench/admission.py [--events N] [--case-size N] [--senders 1,16,64]
                              [--partitions 1,4] [--profile] [--quick]

Builds realistic events once (signed, chained, cases of ``--case-size``, times in the last
day so admission's clock accepts them), then, for each number of concurrent senders, on a
fresh embedded nats-server each:

* raw: nats-py ``js.publish`` of the very same bytes to ``LINTAS``, with the headers
  admission's write carries (``Nats-Msg-Id``, ``Nats-Expected-Last-Subject-Sequence`` and
  its subject: the case's last sequence, taken from the previous ack), awaiting each ack;
  as many cases at once as lintas has senders, each case's events in order;
* lintas, for each number of partitions: an :class:`AdmissionService` (its own
  connection, in this process) and the same number of senders, each sending a case's
  events in order with ``producers._admit.send`` (publish to the intake, await the
  answer on its inbox) and checking each answer: admitted, with the hash of the bytes sent.

Throughput is events over the wall time of the whole run; latency is each event's
send -> answer (raw: publish -> ack), measured closed-loop (a sender sends its next event
once answered). Senders, admission and nats-server share this machine's cores.

``--profile``: the first lintas configuration again under cProfile, with the time
admission spends in each phase of a message (case state, judge, id reservation, write,
answer).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from _common import AGENCIES, CHUNK_CASES, build_chunk, fresh_bus, machine, rate

import lintas.admission.service as service_module
from lintas.admission import AdmissionService
from lintas.contracts import Event, case_filter, decode, message_hash, new_case_id
from lintas.infra.keys.signing import Signer, Verifier, ensure_agency_key, load_registry
from lintas.infra.nats.topology import declare_platform, intake_stream
from lintas.infra.observability.logging import configure_logging
from lintas.infra.settings import Settings
from lintas.producers._admit import send

Case = list[tuple[str, bytes, str]]  # (subject, body, event id), in order


def build_cases(keys: Settings, n_cases: int, case_size: int) -> list[Case]:
    for agency in (*AGENCIES, "admission"):
        ensure_agency_key(keys, agency)
    case_ids = [new_case_id() for _ in range(n_cases)]
    # A day ago, so that every event's time (a minute a case, an hour a step) is in the
    # window admission accepts (docs/ADMISSION.md): up to 5 minutes ahead, 30 days behind.
    t0 = datetime.now(UTC) - timedelta(days=1)
    tasks = [
        (str(keys.data_dir), i, case_ids[i : i + CHUNK_CASES], case_size, t0)
        for i in range(0, n_cases, CHUNK_CASES)
    ]
    by_case: dict[str, Case] = defaultdict(list)
    with ProcessPoolExecutor() as pool:
        for chunk in pool.map(build_chunk, tasks):
            for subject, body, event_id in chunk:
                by_case[subject.rsplit(".", 1)[1]].append((subject, body, event_id))
    return [by_case[case_id] for case_id in case_ids]


async def closed_loop(
    cases: list[Any], senders: int, send_case: Callable[[Any, list[float]], Awaitable[None]]
) -> tuple[float, list[float]]:
    """``senders`` tasks, each taking the next case and sending its events in order: the
    wall time of it all, and every event's latency."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)
    latencies: list[float] = []

    async def sender() -> None:
        while not queue.empty():
            await send_case(queue.get_nowait(), latencies)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.perf_counter() - started, latencies


async def raw_run(root: Path, cases: list[Case], senders: int) -> tuple[float, list[float]]:
    async with fresh_bus(root, f"raw-{senders}") as bus:
        js, stream = bus.js, bus.settings.stream

        async def send_case(case: Case, latencies: list[float]) -> None:
            last = 0
            for subject, body, event_id in case:
                started = time.perf_counter()
                ack = await js.publish(
                    subject,
                    body,
                    stream=stream,
                    headers={
                        "Nats-Msg-Id": event_id,
                        "Nats-Expected-Last-Subject-Sequence": str(last),
                        "Nats-Expected-Last-Subject-Sequence-Subject": case_filter(
                            subject.rsplit(".", 1)[1]
                        ),
                    },
                )
                latencies.append(time.perf_counter() - started)
                last = ack.seq

        return await closed_loop(cases, senders, send_case)


class Phases:
    """Wall time admission spends in each phase of a message, by wrapping its steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def timed(self, name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return await step(*args, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return wrapper

    def plain(self, name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return step(*args, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return wrapper

    @contextmanager
    def around(self, service: AdmissionService) -> Iterator[None]:
        examine, decide = service_module.examine, service_module.decide
        service_module.examine = self.timed("judge: examine (parse, decode, verify)", examine)  # type: ignore[assignment]
        service_module.decide = self.plain("judge: decide (id, time, chain, rules)", decide)
        cases = service._cases
        cases.get = self.timed("case state (cache, or read from the log)", cases.get)  # type: ignore[method-assign]
        service._reserve = self.timed("id reservation (KV create)", service._reserve)  # type: ignore[method-assign]
        service._write = self.timed("write to LINTAS (publish, ack)", service._write)  # type: ignore[method-assign]
        service._admitted = self.plain("receipt (sign, model)", service._admitted)  # type: ignore[method-assign]
        service._admit = self.timed("whole message (incl. answer, ack)", service._admit)  # type: ignore[method-assign]
        try:
            yield
        finally:
            service_module.examine, service_module.decide = examine, decide

    def lines(self, events: int) -> Iterator[str]:
        for name, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            yield f"    {name:<44} {seconds / max(events, 1) * 1e6:8.0f} µs per event"


async def lintas_run(
    root: Path,
    keys: Settings,
    events: list[list[tuple[Event, str]]],
    senders: int,
    partitions: int,
    *,
    phases: Phases | None = None,
) -> tuple[float, list[float], int]:
    """Wall time, latencies, and how many answers were not the expected admission."""
    name = f"lintas-p{partitions}-s{senders}{'-profiled' if phases else ''}"
    async with fresh_bus(root, name, admission_partitions=partitions) as bus:
        await declare_platform(bus.js, bus.settings, [])
        intake = intake_stream(bus.settings)
        writer = await nats.connect(bus.server.url)
        service = AdmissionService(
            writer,
            writer.jetstream(timeout=30),
            bus.settings,
            verifier=Verifier(load_registry(keys)),
            signer=Signer.load(keys, "admission"),
        )
        wrong = 0

        async def send_case(case: list[tuple[Event, str]], latencies: list[float]) -> None:
            nonlocal wrong
            for event, digest in case:
                started = time.perf_counter()
                answer = await send(bus.nc, bus.js, event, stream=intake, wait_s=60, what="bench")
                latencies.append(time.perf_counter() - started)
                if not answer.admitted or answer.hash != digest:
                    wrong += 1
                    if wrong <= 3:
                        print(f"  not admitted as sent: {answer.code} {answer.reason}")

        try:
            with phases.around(service) if phases else nullcontext():
                # The leases are taken as it starts (a KV create each): a sender's first
                # message waits in the intake meanwhile, as it would in a deployment.
                await service.start()
                took, latencies = await closed_loop(events, senders, send_case)
        finally:
            await service.stop()
            await writer.close()
        return took, latencies, wrong


def _ms(latencies: list[float]) -> tuple[float, float]:
    ms = sorted(x * 1000 for x in latencies)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


async def run(args: argparse.Namespace) -> dict[str, float]:
    for line in machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-admission-"))
    keys = Settings(data_dir=root / "keys")
    n_cases = max(args.events // args.case_size, 1)
    cases = build_cases(keys, n_cases, args.case_size)
    # send puts the event's canonical form on the intake: the very bytes built, whose hash
    # each answer must carry.
    events = [
        [(decode(body, subject=subject), message_hash(body)) for subject, body, _ in case]
        for case in cases
    ]
    n = sum(len(case) for case in cases)
    size = sum(len(body) for case in cases for _, body, _ in case) / max(n, 1)
    print()
    print(f"== admission: {n:,} events, {n_cases:,} cases of {args.case_size}, {size:,.0f} B ==")
    print("  send -> answer (lintas) and publish -> ack (raw), closed loop; latency p50 / p99")
    figures: dict[str, float] = {}
    for senders in args.senders:
        raw_s, raw_lat = await raw_run(root, cases, senders)
        r50, r99 = _ms(raw_lat)
        print(
            f"  raw js.publish, {senders:>3} senders             {rate(n, raw_s)}"
            f"   p50 {r50:7.1f} ms   p99 {r99:7.1f} ms"
        )
        figures[f"admission_raw_evs_s{senders}"] = n / raw_s
        for partitions in args.partitions:
            took, lat, wrong = await lintas_run(root, keys, events, senders, partitions)
            l50, l99 = _ms(lat)
            ratio = (n / took) / (n / raw_s)
            print(
                f"  lintas admission, {senders:>3} senders, {partitions} part. {rate(n, took)}"
                f"   p50 {l50:7.1f} ms   p99 {l99:7.1f} ms   ratio lintas / raw {ratio:6.3f}"
                + (f"   ({wrong} NOT admitted as sent)" if wrong else "")
            )
            key = f"s{senders}_p{partitions}"
            figures |= {
                f"admission_ratio_{key}": ratio,
                f"admission_evs_{key}": n / took,
                f"admission_p50_ms_{key}": l50,
                f"admission_p99_ms_{key}": l99,
            }
    if args.profile:
        senders, partitions = args.senders[-1], args.partitions[0]
        print()
        print(f"== admission profile: {senders} senders, {partitions} partition(s) ==")
        phases = Phases()
        profile = cProfile.Profile()
        profile.enable()
        took, _, _ = await lintas_run(root, keys, events, senders, partitions, phases=phases)
        profile.disable()
        print(f"  {rate(n, took)} under the profiler; admission's wall time per event:")
        for line in phases.lines(n):
            print(line)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return figures


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4_000, help="events (4,000: 500 of 8)")
    parser.add_argument("--case-size", type=int, default=8, help="events per case (8)")
    parser.add_argument("--senders", type=_ints, default=[1, 16, 64], help="1,16,64")
    parser.add_argument("--partitions", type=_ints, default=[1, 4], help="1,4")
    parser.add_argument("--profile", action="store_true", help="profile the last senders")
    parser.add_argument("--quick", action="store_true", help="tiny size (128 events)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.senders = 128, [1, 16]
    configure_logging("WARNING")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
