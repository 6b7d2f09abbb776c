"""The record projector on a real nats-server and a real database.

Resumes where it left off after a restart, applies a redelivered message no twice, keeps
each case's events in order, and neither stalls nor applies on malformed messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select
from structlog.testing import capture_logs

from lintas.consumers.app import Databases
from lintas.consumers.projections import Batch, RecordProjection, load_record, load_records
from lintas.consumers.quarantine import list_entries
from lintas.consumers.quarantine import put as quarantine_put
from lintas.consumers.runner import ProjectionRunner
from lintas.infra.db import Tracking
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import Applied, declare_record, publish_case, start_record

pytestmark = pytest.mark.nats


@pytest.fixture
def db_settings(settings: Settings, database_url: str | None) -> Settings:
    return settings.model_copy(update={"database_url": database_url})


def _tracking(databases: Databases) -> Tracking:
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        row = session.exec(select(Tracking).where(Tracking.consumer == "record")).one()
        session.expunge(row)
        return row


async def test_restart_resumes_without_applying_twice(
    nats_server: EmbeddedNats, js: JetStreamContext, db_settings: Settings
) -> None:
    await declare_record(js, db_settings)
    kemlu = Publisher(js, "kemlu", stream=db_settings.stream)
    first_cases = [await publish_case(kemlu) for _ in range(3)]  # 4 events each

    applied = Applied()
    stop, databases = await start_record(nats_server.url, db_settings, [applied])
    await applied.wait_for(12)
    await stop()

    later_case = await publish_case(kemlu, steps=5)  # published while the projector is down
    applied_again = Applied()
    stop, databases = await start_record(nats_server.url, db_settings, [applied_again])
    try:
        await applied_again.wait_for(6)
    finally:
        await stop()

    assert [seq for seq, _ in applied_again.events] == list(range(13, 19))
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied, tracking.rejected) == (18, 18, 0)
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
    assert set(records) == {*first_cases, later_case}
    for case_id, record in records.items():
        seqs = [entry.seq for entry in record.timeline]
        assert seqs == sorted(set(seqs)), "applied twice or out of order"
        assert len(seqs) == (6 if case_id == later_case else 4)
    databases.dispose()


class DiesBeforeAck(ProjectionRunner):
    """Commits the first batch, then 'dies' before acknowledging it."""

    died = False
    redelivered: list[int]
    redelivery_handled: asyncio.Event

    async def _ack(self, msgs: Sequence[Any]) -> None:
        if not type(self).died:
            type(self).died = True
            return
        await super()._ack(msgs)
        if any(m.metadata.num_delivered > 1 for m in msgs):
            self.redelivered.extend(m.metadata.sequence.stream for m in msgs)
            self.redelivery_handled.set()


async def test_redelivered_messages_are_acked_without_effect(
    nats_server: EmbeddedNats, js: JetStreamContext, db_settings: Settings, monkeypatch: Any
) -> None:
    settings = db_settings.model_copy(update={"ack_wait_s": 1.0})
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    case_id = await publish_case(kemlu)

    DiesBeforeAck.died = False
    DiesBeforeAck.redelivered = []
    DiesBeforeAck.redelivery_handled = asyncio.Event()
    monkeypatch.setattr("lintas.consumers.app.ProjectionRunner", DiesBeforeAck)
    applied = Applied()
    stop, databases = await start_record(nats_server.url, settings, [applied])
    try:
        await applied.wait_for(4)
        await asyncio.wait_for(DiesBeforeAck.redelivery_handled.wait(), 20)
    finally:
        await stop()
    assert DiesBeforeAck.redelivered == [1, 2, 3, 4]
    assert [seq for seq, _ in applied.events] == [1, 2, 3, 4]
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied) == (4, 4)
    info = await js.consumer_info(settings.stream, "record")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        record = load_record(session, case_id)
    assert record is not None
    assert [e.seq for e in record.timeline] == [1, 2, 3, 4]
    databases.dispose()


async def test_malformed_messages_are_logged_not_applied_and_do_not_stall(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    case_id = await publish_case(kemlu, steps=0)  # seq 1
    subject = f"lintas.kemlu.kp2mi.case.opened.{case_id}"
    good = (await js.get_msg(settings.stream, 1)).data
    assert good is not None
    bad = [
        b"not json at all",  # 2
        b'{"specversion": "1.0"}',  # 3: envelope fields missing
        good.replace(b'"dataversion":4', b'"dataversion":9'),  # 4: unknown version
        good.replace(b'"case.opened"', b'"case.vanished"'),  # 5: unknown type
        good.replace(b'"risk_level":"high"', b'"risk_level":"high","name":"x"'),  # 6: extra
        b"[" * 200_000,  # 7: nesting deep enough to exhaust the JSON parser's recursion
    ]
    for body in bad:
        await js.publish(subject, body, stream=settings.stream)
    other_case = case_id[:-1] + ("Y" if case_id[-1] != "Y" else "Z")
    await js.publish(
        f"lintas.kemlu.kp2mi.case.opened.{other_case}", good, stream=settings.stream
    )  # 8: subject does not match the envelope
    await kemlu.publish("case.closed", {"reason": "other"}, case_id=case_id, target="all")  # 9

    applied = Applied()
    with capture_logs() as logs:
        stop, databases = await start_record(nats_server.url, settings, [applied])
        try:
            await applied.wait_for(2)
        finally:
            await stop()
    assert [seq for seq, _ in applied.events] == [1, 9]
    rejected = [entry for entry in logs if entry["event"] == "message.rejected"]
    assert [entry["stream_seq"] for entry in rejected] == [2, 3, 4, 5, 6, 7, 8]
    reasons = [entry["reason"] for entry in rejected]
    assert "not JSON" in reasons[0]
    assert "case.opened v9" in reasons[2]
    assert "newer than this build" in reasons[2]
    assert "case.vanished" in reasons[3]
    assert "data.name" in reasons[4]
    assert "not JSON" in reasons[5]
    assert "subject" in reasons[6]
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied, tracking.rejected) == (9, 2, 7)
    entries = [entry async for entry in list_entries(js, settings)]
    print(f"poison={len(bad) + 1} quarantined={len(entries)} good=2 applied={len(applied.events)}")
    assert [(e.consumer, e.stream, e.stream_seq, e.attempts) for e in entries] == [
        ("record", "LINTAS", seq, 1) for seq in range(2, 9)
    ]
    assert [e.body for e in entries[:6]] == bad
    assert entries[6].subject == f"lintas.kemlu.kp2mi.case.opened.{other_case}"
    assert [e.reason for e in entries] == reasons
    databases.dispose()


async def test_a_failing_commit_is_retried_in_place_and_nothing_overtakes_it(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, monkeypatch: Any
) -> None:
    """The database fails twice on the first batch: no event is lost, skipped or reordered."""
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    case_id = await publish_case(kemlu, steps=1)  # seq 1, 2
    original = RecordProjection.apply_batch
    failures = [OperationalError("SELECT 1", {}, Exception("database is locked"))] * 2
    attempts: list[list[int]] = []

    def flaky(self: RecordProjection, session: Session, batch: Batch) -> int:
        attempts.append([seq for seq, _ in batch])
        if failures:
            raise failures.pop()
        return original(self, session, batch)

    monkeypatch.setattr(RecordProjection, "apply_batch", flaky)
    applied = Applied()
    with capture_logs() as logs:
        stop, databases = await start_record(nats_server.url, settings, [applied])
        try:
            await applied.wait_for(2)
            await kemlu.publish("case.closed", {"reason": "other"}, case_id=case_id, target="all")
            await applied.wait_for(3)
        finally:
            await stop()
    assert attempts[:3] == [[1, 2], [1, 2], [1, 2]]
    assert [seq for seq, _ in applied.events] == [1, 2, 3]
    retries = [entry for entry in logs if entry["event"] == "projection.retry"]
    assert [entry["attempt"] for entry in retries] == [1, 2]
    assert {entry["error"] for entry in retries} == {"OperationalError"}
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied) == (3, 3)
    databases.dispose()


class DiesHoldingFirstBatch(ProjectionRunner):
    """Receives batches and has 'crashed': nothing committed, nothing acked."""

    held: list[int]
    holding: asyncio.Event

    async def handle(self, msgs: Sequence[Any], services: Any = None) -> None:
        self.held.extend(m.metadata.sequence.stream for m in msgs)
        self.holding.set()


async def test_after_a_crash_newer_messages_do_not_overtake_the_unacked_ones(
    nats_server: EmbeddedNats, js: JetStreamContext, db_settings: Settings, monkeypatch: Any
) -> None:
    # ack_wait far beyond the test: the dead instance's messages are not redelivered in it,
    # so only reading the gap from the stream can apply them before the newer ones.
    settings = db_settings.model_copy(update={"ack_wait_s": 120.0})
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    case_id = await publish_case(kemlu)  # seq 1..4

    DiesHoldingFirstBatch.held = []
    DiesHoldingFirstBatch.holding = asyncio.Event()
    with monkeypatch.context() as patch:
        patch.setattr("lintas.consumers.app.ProjectionRunner", DiesHoldingFirstBatch)
        stop, databases = await start_record(nats_server.url, settings, [])
        await asyncio.wait_for(DiesHoldingFirstBatch.holding.wait(), 20)
        await stop()
        databases.dispose()
    held = DiesHoldingFirstBatch.held  # 1..k: what the first pulls happened to return
    assert held == list(range(1, len(held) + 1))

    for request in ("doc-a", "doc-b"):  # seq 5, 6
        await kemlu.publish(
            "document.requested",
            {"request_id": request, "kind": "kk"},
            case_id=case_id,
            target="kp2mi",
        )
    applied = Applied()
    with capture_logs() as logs:
        stop, databases = await start_record(nats_server.url, settings, [applied])
        try:
            await applied.wait_for(6)
        finally:
            await stop()
    assert [seq for seq, _ in applied.events] == [1, 2, 3, 4, 5, 6]
    filled = [entry for entry in logs if entry["event"] == "gap.filled"]
    assert [(e["first"], e["last"], e["count"]) for e in filled] == [(1, len(held), len(held))]
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        record = load_record(session, case_id)
    assert record is not None
    assert [e.seq for e in record.timeline] == [1, 2, 3, 4, 5, 6]
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied) == (6, 6)
    databases.dispose()


async def test_two_instances_of_one_consumer_apply_every_event_once_in_order(
    nats_server: EmbeddedNats, js: JetStreamContext, db_settings: Settings
) -> None:
    """Two processes on one durable and one database (say `lintas up` and `lintas run`)."""
    settings = db_settings.model_copy(update={"batch_size": 8})
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    cases = [await publish_case(kemlu, steps=9) for _ in range(12)]  # 120 events
    applied = Applied()
    first, dbs_a = await start_record(nats_server.url, settings, [applied])
    second, dbs_b = await start_record(nats_server.url, settings, [applied])
    try:
        await applied.wait_for(120)
    finally:
        await first()
        await second()
    seqs = sorted(seq for seq, _ in applied.events)
    assert seqs == list(range(1, 121)), "every event applied exactly once"
    engine, _ = dbs_a.for_consumer("record")
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
    for case_id in cases:
        timeline = [e.seq for e in records[case_id].timeline]
        assert len(timeline) == 10
        assert timeline == sorted(timeline)
    tracking = _tracking(dbs_a)
    assert (tracking.position, tracking.applied) == (120, 120)
    dbs_a.dispose()
    dbs_b.dispose()


async def test_two_running_instances_get_interleaved_batches_and_miss_nothing(
    nats_server: EmbeddedNats, js: JetStreamContext, db_settings: Settings
) -> None:
    """Both instances wait for messages before any is published: JetStream then hands out
    deliveries alternately, so a batch can hold 1, 3, 5: what lies between went to the
    other instance and must be applied before 3, not skipped."""
    await declare_record(js, db_settings)
    applied = Applied()
    first, dbs_a = await start_record(nats_server.url, db_settings, [applied])
    second, dbs_b = await start_record(nats_server.url, db_settings, [applied])
    kemlu = Publisher(js, "kemlu", stream=db_settings.stream)
    try:
        cases = [await publish_case(kemlu, steps=3) for _ in range(8)]  # 32 events
        await applied.wait_for_seq(32)
    finally:
        await first()
        await second()
    seqs = sorted(seq for seq, _ in applied.events)
    assert seqs == list(range(1, 33)), "every event applied exactly once"
    engine, _ = dbs_a.for_consumer("record")
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
    assert all(len(records[case_id].timeline) == 4 for case_id in cases)
    dbs_a.dispose()
    dbs_b.dispose()


async def test_an_event_the_handler_always_fails_on_is_quarantined_and_the_rest_applied(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, monkeypatch: Any
) -> None:
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    case_id = await publish_case(kemlu, steps=4)  # seq 1..5; the fold chokes on seq 3
    original = RecordProjection.apply_batch

    def chokes_on_three(self: RecordProjection, session: Session, batch: Batch) -> int:
        if any(seq == 3 for seq, _ in batch):
            raise ValueError("a bug in a fold")
        return original(self, session, batch)

    monkeypatch.setattr(RecordProjection, "apply_batch", chokes_on_three)
    applied = Applied()
    with capture_logs() as logs:
        stop, databases = await start_record(nats_server.url, settings, [applied])
        try:
            await applied.wait_for(4)
            await kemlu.publish("case.closed", {"reason": "other"}, case_id=case_id, target="all")
            await applied.wait_for(5)
        finally:
            await stop()
    assert [seq for seq, _ in applied.events] == [1, 2, 4, 5, 6]
    (entry,) = [e async for e in list_entries(js, settings)]
    assert (entry.stream_seq, entry.consumer) == (3, "record")
    assert entry.reason == ("document.requested v2 could not be applied: ValueError on 3 attempts")
    assert [e["stream_seq"] for e in logs if e["event"] == "event.poisoned"] == [3]
    tracking = _tracking(databases)
    assert (tracking.position, tracking.applied, tracking.rejected) == (6, 5, 1)
    databases.dispose()


async def test_a_message_delivered_max_deliver_times_is_quarantined(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, monkeypatch: Any
) -> None:
    settings = settings.model_copy(update={"ack_wait_s": 1.0, "max_deliver": 2})
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    await publish_case(kemlu, steps=0)  # seq 1
    DiesHoldingFirstBatch.held = []
    DiesHoldingFirstBatch.holding = asyncio.Event()
    with monkeypatch.context() as patch:  # first delivery: the consumer dies on it
        patch.setattr("lintas.consumers.app.ProjectionRunner", DiesHoldingFirstBatch)
        stop, databases = await start_record(nats_server.url, settings, [])
        await asyncio.wait_for(DiesHoldingFirstBatch.holding.wait(), 20)
        await stop()
        databases.dispose()
    quarantined = asyncio.Event()
    real_put = quarantine_put

    async def put_and_tell(*args: Any) -> int:
        entry_id = await real_put(*args)
        quarantined.set()
        return entry_id

    monkeypatch.setattr("lintas.consumers.app.put", put_and_tell)
    stop, databases = await start_record(nats_server.url, settings, [])
    try:  # the second (last allowed) delivery comes after ack_wait
        await asyncio.wait_for(quarantined.wait(), 20)
    finally:
        await stop()
    (entry,) = [e async for e in list_entries(js, settings)]
    assert (entry.stream_seq, entry.attempts) == (1, 2)
    assert entry.reason == "delivered 2 times without being applied"
    info = await js.consumer_info(settings.stream, "record")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    databases.dispose()
