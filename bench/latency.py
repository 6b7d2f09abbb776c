"""End-to-end latency benchmark (issue 9, figure 5): figures, never assertions.

    python bench/latency.py [--rate N] [--sustained N] [--seconds S] [--quick]

At a steady ``--rate`` of events per second for ``--seconds``, and again at a lower
``--sustained`` rate (one the Publisher keeps up with: past it, the figure is the
backlog's growth), on a fresh embedded nats-server each:

* lintas: Kemenlu's Publisher (signed, chained) opens cases for KemenP2MI, each sent to
  the intake; admission (in this process, on its own connection, as ``lintas up`` runs it)
  judges it, reserves its id, writes it to ``LINTAS`` and answers; latency is from the
  moment each publish was due to the moment KemenP2MI's agency consumer committed it to
  its worklist (SQLite, exactly-once tracking, signature checked), and to the moment the
  publish returned (admission's answer: the event is on the log);
* raw: ``js.publish`` of bytes of the same size, received by a nats-py push subscriber on
  the stream; latency from the moment each publish was due to its arrival, and to its ack.

Each publish is started on schedule (a task per event), so a slow publisher shows as
latency instead of silently lowering the rate (no coordinated omission). Prints p50, p99
and max, and the rate achieved; and how many publishes admission did not answer within
the Publisher's three waits (those are left out of the figures).
``--admission-process``: admission runs as ``lintas run admission``, in a process of its
own, as a deployment keeps it apart from an agency's Publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import OPENED, fresh_bus, machine
from opentelemetry import trace

from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.projections import Batch
from lintas.contracts import new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.topology import agency_consumer, agency_sent_consumer, declare_platform
from lintas.infra.observability.logging import configure_logging
from lintas.producers import publisher_for

SOURCE, TARGET = "kemlu", "kp2mi"
APPLY_WAIT_S = 120.0


async def _paced(rate: int, seconds: float, send: Any) -> tuple[dict[int, float], float]:
    """Start ``send(i)`` at t0 + i/rate for every i; return when each was due, and the
    time all sends took."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    due: dict[int, float] = {}
    tasks = []
    t0 = loop.time() + 0.2
    for i in range(count):
        at = t0 + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        due[i] = time.perf_counter() - max(0.0, loop.time() - at)
        tasks.append(asyncio.create_task(send(i)))
    started = t0
    await asyncio.gather(*tasks)
    return due, loop.time() - started


def _summary(label: str, latencies: list[float], achieved: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return f"  {label:<34} none   ({achieved:,.0f} ev/s sent)"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"  {label:<34} p50 {statistics.median(ms):7.1f} ms   p99 {p99:7.1f} ms   "
        f"max {ms[-1]:7.1f} ms   ({achieved:,.0f} ev/s sent)"
    )


Latencies = tuple[list[float], list[float], float]
"""Due -> received (applied), due -> acked (answered), and the rate sent."""


async def lintas_latency(
    root: Path, rate: int, seconds: float, *, apart: bool
) -> tuple[list[float], list[float], float, int, int]:
    """:data:`Latencies` of the publishes admission answered (applied: of those kp2mi
    applied within ``APPLY_WAIT_S`` of the last send), how many admission did not answer
    in time (the Publisher's three waits of 10 s: ``BusUnavailable``), and how many
    answered kp2mi had not applied by then."""
    async with fresh_bus(root, "lintas", admission=True, admission_process=apart) as bus:
        settings, server, js = bus.settings, bus.server, bus.js
        await declare_platform(
            js, settings, [agency_consumer(TARGET), agency_sent_consumer(TARGET)]
        )
        committed: dict[str, float] = {}
        expected = int(rate * seconds)
        progress = asyncio.Event()

        def on_commit(batch: Batch) -> None:
            now = time.perf_counter()
            for _, event in batch:
                committed.setdefault(event.case_id, now)
            progress.set()

        databases = Databases(settings)
        broker = create_broker(server.url)
        verifier = Verifier(load_registry(settings))
        attach_agency(broker, databases, settings, TARGET, on_commit=[on_commit], verifier=verifier)
        await broker.start()
        parts = Parts(settings, server.url, tracer_provider=trace.get_tracer_provider())
        publisher = await publisher_for(parts, bus.nc, SOURCE, js=js)
        cases = [new_case_id() for _ in range(expected)]
        answered: dict[int, float] = {}
        unanswered = 0

        async def send(i: int) -> None:
            nonlocal unanswered
            try:
                await publisher.publish("case.opened", OPENED, case_id=cases[i], target=TARGET)
            except BusUnavailable:
                unanswered += 1  # the figure says so; the run goes on
                return
            answered[i] = time.perf_counter()

        async def all_applied() -> None:
            while any(cases[i] not in committed for i in answered):
                progress.clear()
                await progress.wait()

        try:
            due, took = await _paced(rate, seconds, send)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_applied(), timeout=APPLY_WAIT_S)
        finally:
            await broker.stop()
            databases.dispose()
        applied = [i for i in answered if cases[i] in committed]
        return (
            [committed[cases[i]] - due[i] for i in applied],
            [answered[i] - due[i] for i in answered],
            expected / took,
            unanswered,
            len(answered) - len(applied),
        )


async def raw_latency(root: Path, rate: int, seconds: float, size: int) -> Latencies:
    async with fresh_bus(root, "raw") as bus:
        settings, js = bus.settings, bus.js
        expected = int(rate * seconds)
        arrived: dict[int, float] = {}
        done = asyncio.Event()

        async def on_msg(msg: Any) -> None:
            arrived[int(msg.headers["i"])] = time.perf_counter()
            if len(arrived) >= expected:
                done.set()

        sub = await js.subscribe(
            "lintas.>", stream=settings.stream, cb=on_msg, ordered_consumer=True
        )
        body = b"x" * size
        acked: dict[int, float] = {}

        async def send(i: int) -> None:
            await js.publish(
                f"lintas.{SOURCE}.{TARGET}.case.opened.C{i}", body, headers={"i": str(i)}
            )
            acked[i] = time.perf_counter()

        try:
            due, took = await _paced(rate, seconds, send)
            await asyncio.wait_for(done.wait(), timeout=300)
        finally:
            await sub.unsubscribe()
        return (
            [arrived[i] - due[i] for i in range(expected)],
            [acked[i] - due[i] for i in range(expected)],
            expected / took,
        )


async def run(args: argparse.Namespace) -> dict[str, float]:
    for line in machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-latency-"))
    figures: dict[str, float] = {}
    # The target rate, and one a single Publisher process sustains here: beyond what it
    # sustains, latency is the backlog's growth rather than the path's.
    for rate in dict.fromkeys((args.rate, args.sustained)):
        at = root / f"at-{rate}"
        lintas, lintas_ack, lintas_rate, unanswered, unapplied = await lintas_latency(
            at, rate, args.seconds, apart=args.admission_process
        )
        raw, raw_ack, raw_rate = await raw_latency(at, rate, args.seconds, args.size)
        print()
        print(f"== end-to-end latency at {rate:,} events/s for {args.seconds:g} s ==")
        print(_summary("raw nats-py publish -> ack", raw_ack, raw_rate))
        print(_summary("lintas publish -> admitted", lintas_ack, lintas_rate))
        print(_summary("raw nats-py publish -> receive", raw, raw_rate))
        print(_summary("lintas publish -> applied (kp2mi)", lintas, lintas_rate))
        if lintas_rate < 0.95 * rate:
            print(f"  (the Publisher sent {lintas_rate:,.0f} of {rate:,} ev/s: a backlog)")
        if unanswered:
            print(
                f"  ({unanswered:,} of {int(rate * args.seconds):,} publishes NOT answered by "
                "admission within the Publisher's 3 x 10 s: BusUnavailable; not in the figures)"
            )
        if unapplied:
            print(
                f"  ({unapplied:,} admitted events NOT applied by kp2mi {APPLY_WAIT_S:g} s "
                "after the last send; not in the figures)"
            )
        suffix = "" if rate == args.rate else f"_at_{rate}"
        for name, latencies in (
            ("lintas", lintas),
            ("raw", raw),
            ("lintas_admitted", lintas_ack),
            ("raw_acked", raw_ack),
        ):
            ms = sorted(latencies) or [float("nan")]
            figures |= {
                f"latency_{name}_p50_ms{suffix}": statistics.median(ms) * 1000,
                f"latency_{name}_p99_ms{suffix}": ms[min(len(ms) - 1, int(len(ms) * 0.99))] * 1000,
            }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1_000, help="events per second (1,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (10 s)")
    parser.add_argument(
        "--sustained", type=int, default=200, help="a second, sustainable rate (200)"
    )
    parser.add_argument("--size", type=int, default=800, help="raw body bytes (800)")
    parser.add_argument(
        "--admission-process",
        action="store_true",
        help="admission in a process of its own (lintas run admission), not in this one",
    )
    parser.add_argument("--quick", action="store_true", help="0.5 s at 100 events/s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.sustained, args.seconds = 100, 100, 0.5
    configure_logging("WARNING")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
