"""Publish benchmark (issue 9, figure 1): figures, never assertions.

    python bench/publish.py [--events N] [--case-size N] [--in-flight N] [--quick]

Builds realistic events (about 0.8 KB, mixed families, cases of ``--case-size``), then,
in the same run on the same kind of embedded nats-server (one fresh server each, so both
start from an empty stream):

* raw: ``js.publish_async`` of the very bytes lintas stored (signed, chained), with
  ``Nats-Msg-Id``, all acks awaited at the end;
* lintas: the Publisher (contract validation, envelope, the consent gate and sealing of
  the child's data with the case's data key, Ed25519 signature, the case's hash chain
  with its head read and ``Nats-Expected-Last-Subject-Sequence``, dedup id),
  ``--in-flight`` cases published concurrently, each case's events in order (a case's
  events cannot overtake each other: each one chains to the one before).

Target (issue 9): lintas / raw >= 0.7.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import AGENCIES, T0, Bus, fresh_bus, machine, met, pathway, rate
from opentelemetry import trace

from lintas.contracts import new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.observability.logging import configure_logging
from lintas.producers import publisher_for

Step = tuple[str, str, str, dict[str, Any]]


async def lintas_publish(
    bus: Bus, cases: list[tuple[str, list[Step]]], in_flight: int
) -> tuple[float, float, list[tuple[str, bytes, str]]]:
    """Seconds for the Publisher to publish every case, and the CPU seconds this process
    (the Publisher) spent on it; and what it stored, in order."""
    settings, js = bus.settings, bus.js
    parts = Parts(settings, bus.server.url, tracer_provider=trace.get_tracer_provider())
    publishers = {a: await publisher_for(parts, bus.nc, a, js=js) for a in AGENCIES}
    queue: asyncio.Queue[tuple[str, list[Step]]] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)

    async def worker() -> None:
        while not queue.empty():
            case_id, steps = queue.get_nowait()
            for k, (source, target, kind, data) in enumerate(steps):
                await publishers[source].publish(
                    kind, data, case_id=case_id, target=target, time=T0.replace(minute=k % 60)
                )

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored: list[tuple[str, bytes, str]] = []
    info = await js.stream_info(settings.stream)
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(settings.stream, seq=seq, direct=True)
        stored.append((msg.subject, msg.data, (msg.headers or {}).get("Nats-Msg-Id", "")))
    return elapsed, cpu, stored


async def raw_publish(js: Any, messages: list[tuple[str, bytes, str]]) -> float:
    started = time.perf_counter()
    acks = [
        await js.publish_async(subject, body, wait_stall=60, headers={"Nats-Msg-Id": msg_id})
        for subject, body, msg_id in messages
    ]
    await asyncio.gather(*acks)
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, float]:
    for line in machine():
        print(line)
    n_cases = max(args.events // args.case_size, 1)
    steps = pathway(args.case_size)
    cases = [(new_case_id(), steps) for _ in range(n_cases)]
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-publish-"))
    async with fresh_bus(root, "lintas") as bus:
        lintas_s, cpu_s, stored = await lintas_publish(bus, cases, args.in_flight)
    async with fresh_bus(root, "raw") as bus:
        raw_s = await raw_publish(bus.js, stored)
    n = len(stored)
    size = sum(len(body) for _, body, _ in stored) / max(n, 1)
    ratio = (n / lintas_s) / (n / raw_s)
    print()
    print(f"== publish: {n:,} events, {n_cases:,} cases of {args.case_size}, {size:,.0f} B ==")
    print(f"  raw js.publish_async, same bytes       {raw_s:8.2f}s {rate(n, raw_s)}")
    print(
        f"  lintas Publisher, {args.in_flight} cases in flight"
        f"{'':>{max(0, 6 - len(str(args.in_flight)))}}  {lintas_s:8.2f}s {rate(n, lintas_s)}"
    )
    print(f"  the Publisher's own CPU per event     {cpu_s / max(n, 1) * 1e6:8.0f} µs")
    target = f"(target >= 0.7: {met(ratio >= 0.7)})"
    print(f"  ratio lintas / raw                     {ratio:8.3f}   {target}")
    return {
        "publish_ratio": ratio,
        "publish_lintas_evs": n / lintas_s,
        "publish_raw_evs": n / raw_s,
        "publish_cpu_us": cpu_s / max(n, 1) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=40_000, help="events (40,000: 5,000 cases of 8)"
    )
    parser.add_argument("--case-size", type=int, default=8, help="events per case (8)")
    parser.add_argument("--in-flight", type=int, default=64, help="cases published at once")
    parser.add_argument("--quick", action="store_true", help="tiny size (1,000 events)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 1_000
    configure_logging("WARNING")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
