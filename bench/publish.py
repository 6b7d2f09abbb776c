"""Publish benchmark (issue 9, figure 1): figures, never assertions.

    python bench/publish.py [--events N] [--case-size N] [--in-flight N] [--quick]

Builds realistic events (about 0.8 KB, mixed families, cases of ``--case-size``), then,
in the same run on the same kind of embedded nats-server (one fresh server each, so both
start from an empty stream):

* raw: ``js.publish_async`` of the very bytes lintas stored (signed, chained), with
  ``Nats-Msg-Id``, all acks awaited at the end;
* raw, chained: ``js.publish`` of the same bytes with the headers admission's write
  carries (``Nats-Msg-Id``, ``Nats-Expected-Last-Subject-Sequence`` and its subject, the
  case's last sequence taken from the previous ack), ``--in-flight`` cases at once, each
  case's events in order, each ack awaited: as far as any writer can pipeline when each
  event names the one before (a reference line; the target is against the first);
* lintas, end to end through admission: the Publisher (contract validation, envelope,
  the consent gate and sealing of the child's data with the case's data key, Ed25519
  signature, the case's hash chain with its head read, dedup id) sends each event to the
  intake and awaits admission's answer; admission (in this process, on its own connection,
  as ``lintas up`` runs it; with ``--admission-process``, ``lintas run admission`` in a
  process of its own) judges it, reserves its id, writes it to ``LINTAS`` and answers.
  ``--in-flight`` cases published concurrently, each case's events in order (a case's
  events cannot overtake each other: each one chains to the one before).

It prints the CPU each process spent per event (this one, admission's when apart, and
nats-server's): the processes share this machine's cores.

The raw publishes run on the same connection and JetStream context as the Publisher (the
same pending-ack window), without admission: it is what lintas adds.

Target (issue 9): lintas / raw >= 0.7.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import (
    AGENCIES,
    Bus,
    cpu_seconds,
    fresh_bus,
    machine,
    met,
    pathway,
    rate,
    recent,
)
from opentelemetry import trace

from lintas.contracts import case_filter, new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.observability.logging import configure_logging
from lintas.producers import publisher_for

Step = tuple[str, str, str, dict[str, Any]]


async def lintas_publish(
    bus: Bus, cases: list[tuple[str, list[Step]]], in_flight: int
) -> tuple[float, float, list[tuple[str, bytes, str]]]:
    """Seconds for the Publisher to publish every case, and the CPU seconds this process
    (the Publisher and admission) spent on it; and what admission stored, in order."""
    settings, js = bus.settings, bus.js
    parts = Parts(settings, bus.server.url, tracer_provider=trace.get_tracer_provider())
    publishers = {a: await publisher_for(parts, bus.nc, a, js=js) for a in AGENCIES}
    queue: asyncio.Queue[tuple[str, list[Step]]] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)
    t0 = recent()

    async def worker() -> None:
        while not queue.empty():
            case_id, steps = queue.get_nowait()
            for k, (source, target, kind, data) in enumerate(steps):
                await publishers[source].publish(
                    kind, data, case_id=case_id, target=target, time=t0 + timedelta(minutes=k)
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


async def raw_chained(bus: Bus, messages: list[tuple[str, bytes, str]], in_flight: int) -> float:
    by_case: dict[str, list[tuple[str, bytes, str]]] = {}
    for message in messages:
        by_case.setdefault(message[0].rsplit(".", 1)[1], []).append(message)
    queue: asyncio.Queue[tuple[str, list[tuple[str, bytes, str]]]] = asyncio.Queue()
    for case in by_case.items():
        queue.put_nowait(case)

    async def worker() -> None:
        while not queue.empty():
            case_id, case = queue.get_nowait()
            last = 0
            for subject, body, msg_id in case:
                ack = await bus.js.publish(
                    subject,
                    body,
                    stream=bus.settings.stream,
                    headers={
                        "Nats-Msg-Id": msg_id,
                        "Nats-Expected-Last-Subject-Sequence": str(last),
                        "Nats-Expected-Last-Subject-Sequence-Subject": case_filter(case_id),
                    },
                )
                last = ack.seq

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, float]:
    for line in machine():
        print(line)
    n_cases = max(args.events // args.case_size, 1)
    steps = pathway(args.case_size)
    cases = [(new_case_id(), steps) for _ in range(n_cases)]
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-publish-"))
    apart = args.admission_process
    async with fresh_bus(root, "lintas", admission=True, admission_process=apart) as bus:
        pids = {"nats-server": bus.server.pid or 0, "admission": bus.admission_pid or 0}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        lintas_s, cpu_s, stored = await lintas_publish(bus, cases, args.in_flight)
        others = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    async with fresh_bus(root, "raw") as bus:
        server_cpu = cpu_seconds(bus.server.pid or 0)
        raw_s = await raw_publish(bus.js, stored)
        raw_server_cpu = cpu_seconds(bus.server.pid or 0) - server_cpu
    async with fresh_bus(root, "raw-chained") as bus:
        chained_s = await raw_chained(bus, stored, args.in_flight)
    n = len(stored)
    size = sum(len(body) for _, body, _ in stored) / max(n, 1)
    ratio = (n / lintas_s) / (n / raw_s)
    print()
    print(f"== publish: {n:,} events, {n_cases:,} cases of {args.case_size}, {size:,.0f} B ==")
    flight = f"{args.in_flight} cases in flight"

    def line(label: str, seconds: float) -> str:
        return f"  {label:<47} {seconds:8.2f}s {rate(n, seconds)}"

    print(line("raw js.publish_async, same bytes", raw_s))
    print(line(f"raw js.publish chained, {flight}", chained_s))
    print(line(f"lintas Publisher -> admission, {flight}", lintas_s))

    def per_event(label: str, seconds: float) -> None:
        print(f"  {label:<47} {seconds / max(n, 1) * 1e6:8.0f} µs")

    print("  CPU per event:")
    per_event("  the Publisher" + ("" if apart else " and admission (one process)"), cpu_s)
    if apart:
        per_event("  admission (its own process)", others["admission"])
    per_event("  nats-server (lintas)", others["nats-server"])
    per_event("  nats-server (raw js.publish_async)", raw_server_cpu)
    busy = (cpu_s + others["admission"] + others["nats-server"]) / lintas_s
    print(f"  {'  cores busy with lintas, on average':<47} {busy:8.2f}")
    target = f"(target >= 0.7: {met(ratio >= 0.7)})"
    print(f"  {'ratio lintas / raw':<47} {ratio:8.3f}   {target}")
    print(f"  {'ratio lintas / raw chained':<47} {chained_s / lintas_s:8.3f}")
    return {
        "publish_ratio": ratio,
        "publish_chained_ratio": chained_s / lintas_s,
        "publish_lintas_evs": n / lintas_s,
        "publish_raw_evs": n / raw_s,
        "publish_raw_chained_evs": n / chained_s,
        "publish_cpu_us": cpu_s / max(n, 1) * 1e6,
        "publish_admission_cpu_us": others["admission"] / max(n, 1) * 1e6,
        "publish_server_cpu_us": others["nats-server"] / max(n, 1) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=40_000, help="events (40,000: 5,000 cases of 8)"
    )
    parser.add_argument("--case-size", type=int, default=8, help="events per case (8)")
    parser.add_argument("--in-flight", type=int, default=64, help="cases published at once")
    parser.add_argument(
        "--admission-process",
        action="store_true",
        help="admission in a process of its own (lintas run admission), not in this one",
    )
    parser.add_argument("--quick", action="store_true", help="tiny size (200 events)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 200
    configure_logging("WARNING")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
