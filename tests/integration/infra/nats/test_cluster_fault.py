"""A three-node JetStream cluster on loopback loses its stream leader mid-stream.

The cluster runs the shipped ``infra/deploy/cluster-node-*.conf`` (on free ports, see
:mod:`tests.support.cluster`); the stream is lintas's own, declared with three replicas. While
the lintas Publisher publishes and a durable pull consumer reads, the node leading the stream
is killed with SIGKILL (and the client is connected to that very node). Publishing retries a
failed publish with the same event id until it is acknowledged, as an agency system would.

Then, with the node still down, every acknowledged event must have been consumed; after the
node is back and has caught up, the stream must hold every acknowledged event exactly once,
at the sequence its acknowledgement named. The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from lintas.contracts import new_case_id, uuid7
from lintas.infra.nats.outage import end_tasks
from lintas.infra.nats.topology import declare, record_consumer
from lintas.infra.settings import Settings
from lintas.producers import BusUnavailable, Published, Publisher
from tests.support.cluster import LoopbackCluster

pytestmark = [pytest.mark.nats, pytest.mark.slow]

EVENTS = 400
# The stream leader is killed once this many events are acknowledged and half as many
# consumed; the publisher does not wait for it, unless it gets KILL_WINDOW events further.
KILL_AFTER = 120
KILL_WINDOW = 40
TEST_DEADLINE_S = 55.0
PUBLISH_TIMEOUT_S = 1.0  # per attempt; a publish is retried until acknowledged
CASE_OPENED = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
}


@dataclass
class Run:
    acked: dict[str, int] = field(default_factory=dict)  # event id -> stream seq in its ack
    acked_after_kill: int = 0
    publish_retries: int = 0
    deduplicated: int = 0  # retries JetStream answered "already stored" (same event id)
    retry_errors: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    consumed_after_kill: int = 0
    ack_failures: int = 0
    killed_at: float | None = None
    reconnects: int = 0
    published_all: bool = False
    kill_due: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    consumed_all: asyncio.Event = field(default_factory=asyncio.Event)

    def check_kill(self) -> None:
        if len(self.acked) >= KILL_AFTER and len(self.deliveries) >= KILL_AFTER // 2:
            self.kill_due.set()

    def check_consumed(self) -> None:
        if self.published_all and set(self.acked) <= set(self.deliveries):
            self.consumed_all.set()


async def _quiet(_exc: Exception) -> None:
    """Connection errors are expected here: a server is killed on purpose."""


async def _connect(urls: list[str], run: Run | None = None) -> NATS:
    async def reconnected() -> None:
        if run is not None:
            run.reconnects += 1

    return await nats.connect(
        servers=urls,
        dont_randomize=True,  # the first URL is the one to be connected to
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=1,
        error_cb=_quiet,
        reconnected_cb=reconnected,
    )


async def _stream_leader(js: JetStreamContext, stream: str, replicas: int) -> str:
    """The stream leader's name, once it has one and every replica is current."""
    while True:
        info = await js.stream_info(stream)
        cluster = info.cluster
        peers = (cluster.replicas or []) if cluster is not None else []
        if (
            cluster is not None
            and cluster.leader
            and len(peers) == replicas - 1
            and all(p.current and not p.offline and not p.lag for p in peers)
        ):
            return cluster.leader
        await asyncio.sleep(0.1)


async def _until_acked(run: Run, publish: Callable[[], Awaitable[Published]]) -> Published:
    """Retry one publish (same event id) until JetStream acknowledges it."""
    while True:
        try:
            return await publish()
        except BusUnavailable as exc:
            run.publish_retries += 1
            # What nats-py raised; the Publisher chains it, or raises from None for
            # NoStreamResponseError (no stream leader answering yet).
            run.retry_errors[type(exc.__cause__ or exc.__context__ or exc).__name__] += 1
            await asyncio.sleep(0.05)


async def _publish_all(js: JetStreamContext, stream: str, run: Run) -> None:
    """Cases opened by kemlu for kp2mi, each followed by three kp2mi document requests."""
    kemlu = Publisher(js, "kemlu", stream=stream, timeout=PUBLISH_TIMEOUT_S)
    kp2mi = Publisher(js, "kp2mi", stream=stream, timeout=PUBLISH_TIMEOUT_S)
    case_id = new_case_id()
    for i in range(EVENTS):
        event_id = str(uuid7())  # fixed before the first attempt: retries are deduplicated
        if i % 4 == 0:
            case_id = new_case_id()
            attempt = partial(
                kemlu.publish,
                "case.opened",
                CASE_OPENED,
                case_id=case_id,
                target="kp2mi",
                event_id=event_id,
            )
        else:
            attempt = partial(
                kp2mi.publish,
                "document.requested",
                {"request_id": f"doc-{i}", "kind": "nik"},
                case_id=case_id,
                target="kemlu",
                event_id=event_id,
            )
        done = await _until_acked(run, attempt)
        assert done.event.id == event_id
        run.acked[event_id] = done.stream_seq
        run.deduplicated += done.duplicate
        if run.killed_at is not None:
            run.acked_after_kill += 1
        run.check_kill()
        if len(run.acked) == KILL_AFTER + KILL_WINDOW:
            await run.killed.wait()
    run.published_all = True


async def _consume(js: JetStreamContext, stream: str, durable: str, run: Run) -> None:
    """Fetch, record, acknowledge; carry on through every error until cancelled."""
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    while True:
        run.check_kill()
        run.check_consumed()
        try:
            msgs = await sub.fetch(batch=50, timeout=0.5)
        except (TimeoutError, nats.errors.Error):
            await asyncio.sleep(0.05)
            continue
        for msg in msgs:
            event_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            run.deliveries[event_id] += 1
            if run.killed_at is not None and run.deliveries[event_id] == 1:
                run.consumed_after_kill += 1
            try:
                await msg.ack_sync(timeout=1.0)
            except (TimeoutError, nats.errors.Error):
                run.ack_failures += 1  # redelivered after ack_wait; counted, not lost


async def _wait(event: asyncio.Event, *workers: asyncio.Task[None]) -> None:
    """Wait for ``event``; if a worker ends first (it failed), raise what it raised."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not event.is_set():
        for worker in workers:
            if worker.done():
                worker.result()  # raises the worker's exception
        raise AssertionError(f"a worker ended before {event!r} was set")


async def _stored_ids(js: JetStreamContext, stream: str) -> list[tuple[int, str]]:
    """(sequence, Nats-Msg-Id) of every message in the stream, read through its leader."""
    state = (await js.stream_info(stream)).state
    stored = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        stored.append((seq, (msg.headers or {}).get("Nats-Msg-Id", "")))
    return stored


async def test_killing_the_stream_leader_loses_no_acknowledged_event(
    tmp_path: Path, settings: Settings
) -> None:
    settings = settings.model_copy(update={"stream_replicas": 3, "ack_wait_s": 3.0})
    durable = record_consumer()
    run = Run()
    started = time.monotonic()
    async with asyncio.timeout(TEST_DEADLINE_S), LoopbackCluster(tmp_path / "cluster") as cluster:
        for node in cluster.nodes.values():  # the shipped sync policy is in force
            assert (await node.varz())["jetstream"]["config"]["sync_always"] is True

        admin = await _connect(cluster.urls)
        try:
            js_admin = admin.jetstream(timeout=5)
            await declare(js_admin, settings, [durable])
            info = await js_admin.stream_info(settings.stream)
            assert info.config.num_replicas == 3
            leader = await _stream_leader(js_admin, settings.stream, 3)
            consumer_cluster = (await js_admin.consumer_info(settings.stream, durable.name)).cluster
            assert consumer_cluster is not None  # the durable inherits the stream's R3
            assert len(consumer_cluster.replicas or []) == 2

            # The working client is connected to the node about to die.
            victim = cluster.node(leader)
            urls = [victim.url, *(u for u in cluster.urls if u != victim.url)]
            nc = await _connect(urls, run)
            assert nc.connected_url is not None
            assert nc.connected_url.port == victim.client_port
            js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
            consumer = asyncio.create_task(_consume(js, settings.stream, durable.name, run))
            publisher = asyncio.create_task(_publish_all(js, settings.stream, run))
            try:
                await _wait(run.kill_due, publisher, consumer)
                run.killed_at = time.monotonic()
                acked_before_kill, consumed_before_kill = len(run.acked), len(run.deliveries)
                await cluster.kill(leader)
                run.killed.set()
                await publisher
                publish_done = time.monotonic()
                # Consumption goes on, and completes, with the node still down.
                await _wait(run.consumed_all, consumer)
                consume_done = time.monotonic()
            finally:
                await end_tasks([publisher, consumer])  # loops of requests: see end_tasks
                with contextlib.suppress(nats.errors.Error):
                    await nc.close()
            new_leader = await _stream_leader_or_none(js_admin, settings.stream)

            # The killed node comes back and catches up; then the stream is audited.
            await cluster.restart(leader)
            await _stream_leader(js_admin, settings.stream, 3)
            stored = await _stored_ids(js_admin, settings.stream)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await admin.close()

    in_stream = Counter(event_id for _, event_id in stored)
    seq_of = {event_id: seq for seq, event_id in stored}
    lost = sorted(set(run.acked) - set(in_stream))
    duplicated = sum(count - 1 for count in in_stream.values())
    unexpected = sorted(set(in_stream) - set(run.acked))
    wrong_seq = sorted(e for e, seq in run.acked.items() if seq_of.get(e) != seq)
    unconsumed = sorted(set(run.acked) - set(run.deliveries))
    redelivered = sum(run.deliveries.values()) - len(run.deliveries)
    print(
        f"\ncluster fault: killed stream leader {leader} (new leader {new_leader}) after "
        f"{acked_before_kill} acked, {consumed_before_kill} consumed; "
        f"published={len(run.acked)} acked_after_kill={run.acked_after_kill} "
        f"publish_retries={run.publish_retries} {dict(run.retry_errors)} "
        f"deduplicated_retries={run.deduplicated} "
        f"consumed_after_kill={run.consumed_after_kill} reconnects={run.reconnects}\n"
        f"cluster fault: lost={len(lost)} duplicated={duplicated} unexpected={len(unexpected)} "
        f"wrong_seq={len(wrong_seq)} unconsumed={len(unconsumed)} redelivered={redelivered} "
        f"ack_failures={run.ack_failures}\n"
        f"cluster fault: kill->published {publish_done - run.killed_at:.1f}s, "
        f"->consumed {consume_done - run.killed_at:.1f}s, total {time.monotonic() - started:.1f}s"
    )
    assert len(run.acked) == EVENTS
    # The kill came mid-stream: both sides were running before it and went on after it.
    assert consumed_before_kill >= KILL_AFTER // 2
    assert run.acked_after_kill >= EVENTS - KILL_AFTER - KILL_WINDOW
    assert run.consumed_after_kill >= run.acked_after_kill
    assert run.reconnects >= 1  # the client really lost its server and failed over
    assert new_leader is not None
    assert new_leader != leader
    assert lost == []
    assert duplicated == 0
    assert unexpected == []
    assert wrong_seq == []
    assert unconsumed == []
    assert len(stored) == EVENTS


async def _stream_leader_or_none(js: JetStreamContext, stream: str) -> str | None:
    cluster = (await js.stream_info(stream)).cluster
    return cluster.leader if cluster is not None else None
