"""Consume benchmark (issue 9, figure 2): figures, never assertions.

    python bench/consume.py [--events N] [--case-size N] [--quick]

Fills one embedded nats-server's ``LINTAS`` stream with realistic events (signed,
chained, about 0.8 KB, mixed families, 5,000 cases by default), then consumes all of
it, one consumer after the other, each from a durable consumer of its own:

* raw: a nats-py pull consumer, ``fetch`` 256 at a time, ``json.loads`` and ``ack`` each,
  first and again after the lintas runs (the ratios are against the mean of the two times);
* plain FastStream: a per-message push subscriber doing the same decode, acked by
  FastStream after each message;
* lintas: KemenP2MI's agency consumers (its inbound and its sent durables: in these
  cases it is the source or the target of every event), decoding each event against
  its contract, checking its signature, folding the worklist and writing it with the
  consumer's tracking position in one transaction per batch, then acknowledging;
  on SQLite, and on PostgreSQL when ``LINTAS_TEST_POSTGRES_URL`` is set;
* lintas: the coordination record projector, the same way.

Targets (issue 9): lintas / raw >= 0.5; lintas >= 2x plain FastStream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import nats.js.errors
from _common import Log, filled_log, machine, met, rate
from faststream.nats import JStream, NatsBroker
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import create_engine, text
from sqlalchemy.engine.url import make_url

from lintas.consumers.app import Databases, attach_agency, attach_record, create_broker
from lintas.consumers.projections import Batch
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.topology import (
    agency_consumer,
    agency_sent_consumer,
    declare_platform,
    record_consumer,
)
from lintas.infra.observability.logging import configure_logging

AGENCY = "kp2mi"


async def raw_pull(log: Log) -> float:
    """Seconds for a nats-py pull consumer (a fresh durable each time) to fetch, decode and
    ack every event."""
    stream = log.settings.stream
    durable = f"bench-raw-{uuid.uuid4().hex[:6]}"
    await log.js.add_consumer(
        stream,
        ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000),
    )
    sub = await log.js.pull_subscribe_bind(durable, stream=stream)
    started = time.perf_counter()
    done = 0
    while done < log.events:
        for msg in await sub.fetch(256, timeout=5):
            json.loads(msg.data)
            await msg.ack()
            done += 1
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await log.js.delete_consumer(stream, durable)
    return elapsed


async def plain_faststream(log: Log) -> float:
    """Seconds for a plain FastStream per-message subscriber to decode every event (it
    decodes a JSON body into the handler's ``dict`` argument), acked after each."""
    broker = NatsBroker(log.server.url, logger=None)
    done = asyncio.Event()
    count = 0

    @broker.subscriber(
        "lintas.>",
        stream=JStream(log.settings.stream, declare=False),
        durable="bench-faststream",
        deliver_policy=DeliverPolicy.ALL,
    )
    async def handle(body: dict[str, Any]) -> None:  # FastStream decodes the JSON itself
        nonlocal count
        count += 1
        if count >= log.events:
            done.set()

    started = time.perf_counter()
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
        return time.perf_counter() - started
    finally:
        await broker.stop()


class _Counted:
    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()

    def __call__(self, batch: Batch) -> None:
        self.count += len(batch)
        if self.count >= self.target:
            self.done.set()


async def lintas_consumer(log: Log, which: str, database_url: str | None) -> float:
    """Seconds for lintas' agency consumers (or the record projector) to apply every event
    exactly once into the projection at ``database_url`` (SQLite in the data dir if None)."""
    settings = log.settings.model_copy(
        update={
            "database_url": database_url,
            "data_dir": log.settings.data_dir / f"consume-{which}-{uuid.uuid4().hex[:6]}",
        }
    )
    specs = (
        [agency_consumer(AGENCY), agency_sent_consumer(AGENCY)]
        if which == "agency"
        else [record_consumer()]
    )
    for spec in specs:  # each run reads the whole stream from a fresh durable
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await log.js.delete_consumer(log.settings.stream, spec.name)
    await declare_platform(log.js, settings, specs)
    counted = _Counted(log.events)
    databases = Databases(settings)
    broker = create_broker(log.server.url)
    verifier = Verifier(load_registry(log.settings))
    if which == "agency":
        attach_agency(broker, databases, settings, AGENCY, on_commit=[counted], verifier=verifier)
    else:
        attach_record(broker, databases, settings, on_commit=[counted], verifier=verifier)
    started = time.perf_counter()
    await broker.start()
    try:
        try:
            await asyncio.wait_for(
                counted.done.wait(), timeout=float(os.environ.get("BENCH_WAIT", 900))
            )
        except TimeoutError:
            print("applied", counted.count, "of", counted.target, flush=True)
            raise
        return time.perf_counter() - started
    finally:
        await broker.stop()
        databases.dispose()


@contextmanager
def _postgres() -> Iterator[str | None]:
    base = os.environ.get("LINTAS_TEST_POSTGRES_URL")
    if not base:
        yield None
        return
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"lintas_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _line(label: str, seconds: float, n: int) -> str:
    return f"  {label:<39}{seconds:8.2f}s {rate(n, seconds)}"


async def run(args: argparse.Namespace) -> dict[str, float]:
    for line in machine():
        print(line)
    root = Path(tempfile.mkdtemp(prefix="lintas-bench-consume-"))
    figures: dict[str, float] = {}
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        async with filled_log(root, "consume", args.events, args.case_size, pool) as log:
            pool.shutdown()
            n = log.events
            raw_before = await raw_pull(log)
            plain_s = await plain_faststream(log)
            runs: list[tuple[str, float]] = []
            for which in ("agency", "record"):
                runs.append((f"{which}, SQLite", await lintas_consumer(log, which, None)))
            with _postgres() as pg_url:
                if pg_url is not None:
                    for which in ("agency", "record"):
                        runs.append(
                            (f"{which}, PostgreSQL", await lintas_consumer(log, which, pg_url))
                        )
            # Again after the lintas runs: the machine's speed drifts, and the ratios are
            # taken against the mean of the two (both printed, so the drift shows).
            raw_after = await raw_pull(log)
    raw_s = (raw_before + raw_after) / 2
    print()
    print(f"== consume: {n:,} events, {n // args.case_size:,} cases of {args.case_size} ==")
    print(_line("raw nats-py pull, json.loads, ack", raw_s, n))
    print(
        f"    (the mean time of two runs: before the lintas runs {rate(n, raw_before)}, "
        f"after {rate(n, raw_after)})"
    )
    print(_line("plain FastStream per-message, json.loads", plain_s, n))
    labels: dict[str, Callable[[str], str]] = {
        "agency": lambda db: f"lintas {AGENCY} agency consumers, {db}",
        "record": lambda db: f"lintas record projector, {db}",
    }
    for label, seconds in runs:
        which, db = label.split(", ")
        print(_line(labels[which](db), seconds, n))
    print()
    for label, seconds in runs:
        ratio, vs_plain = raw_s / seconds, plain_s / seconds
        key = label.replace(", ", "_").lower()
        figures[f"consume_{key}_ratio"] = ratio
        figures[f"consume_{key}_vs_faststream"] = vs_plain
        print(
            f"  {label:<21} lintas / raw {ratio:6.3f} (>= 0.5: {met(ratio >= 0.5)}); "
            f"/ plain FastStream {vs_plain:5.2f}x (>= 2: {met(vs_plain >= 2)})"
        )
    if not os.environ.get("LINTAS_TEST_POSTGRES_URL"):
        print("  (PostgreSQL: set LINTAS_TEST_POSTGRES_URL to measure it too)")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000, help="events (40,000)")
    parser.add_argument("--case-size", type=int, default=8, help="events per case (8)")
    parser.add_argument("--quick", action="store_true", help="tiny size (200 events)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 200
    configure_logging("WARNING")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
