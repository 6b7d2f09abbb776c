"""The transactional outbox against a real nats-server and real SQLite and PostgreSQL.

An agency's own row and its event commit together or not at all; the relay publishes in
order, once (JetStream dedup by event id when it has to publish again), and rides out the
bus being down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import structlog
from nats.js import JetStreamContext
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.contracts import (
    ConsentMissing,
    Event,
    decode,
    new_case_id,
)
from lintas.infra.db import create_db_engine
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.bus import connect
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import declare_platform, ensure_stream
from lintas.infra.privacy.sealing import open_field
from lintas.infra.settings import Settings
from lintas.producers import (
    BusUnavailable,
    NatsClientClosed,
    Outbox,
    OutboxRecord,
    OutboxRelay,
    PublishRejected,
    ensure_outbox_table,
)
from tests.support.helpers import consent, forge_consent, signed

pytestmark = pytest.mark.nats

SECRET = "SECRET-NOTE"  # in personal notes: must never reach a log line or stay in a row


class AgencyCase(SQLModel, table=True):
    """The agency system's own data, written in the same transaction as its events."""

    __tablename__ = "test_outbox_agency_case"

    case_id: str = Field(primary_key=True, max_length=32)
    status: str = Field(max_length=32)


@pytest.fixture
def engine(database_url: str | None, tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(database_url or f"sqlite:///{tmp_path / 'agency.sqlite'}")
    ensure_outbox_table(engine)
    SQLModel.metadata.create_all(engine, tables=[AgencyCase.__table__])  # type: ignore[attr-defined]
    try:
        yield engine
    finally:
        engine.dispose()


def _request(n: int) -> dict[str, str]:
    # Shares nothing of the child: no consent needed (the consent gate has its own tests).
    return {"request_id": f"doc-{n}", "kind": "akta_kelahiran"}


def _add(engine: Engine, outbox: Outbox, cases: list[str], count: int) -> list[Event]:
    """``count`` document requests in one transaction, round-robin over ``cases``."""
    with Session(engine) as session:
        start = len(session.exec(select(OutboxRecord)).all())
        events = [
            outbox.add(
                session,
                "document.requested",
                _request(start + i),
                case_id=cases[(start + i) % len(cases)],
                target="dukcapil",
            )
            for i in range(count)
        ]
        session.commit()
    return events


def _rows(engine: Engine) -> list[OutboxRecord]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxRecord).order_by(col(OutboxRecord.position))))


@dataclass(frozen=True)
class Stored:
    seq: int
    msg_id: str
    subject: str
    data: bytes


async def _stream(js: JetStreamContext, stream: str) -> list[Stored]:
    info = await js.stream_info(stream)
    stored = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        assert msg.headers is not None
        assert msg.data is not None
        assert msg.subject is not None
        stored.append(Stored(seq, msg.headers["Nats-Msg-Id"], msg.subject, msg.data))
    assert len(stored) == info.state.messages
    return stored


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    """Poll a condition (a background relay's effect on the database) with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        await asyncio.sleep(0.02)


def _no_event_data(logs: Sequence[Mapping[str, Any]], rows: list[OutboxRecord]) -> None:
    assert SECRET not in json.dumps(logs, default=str)
    for row in rows:
        assert SECRET not in (row.last_error or "")
        assert "request_id" not in (row.last_error or "")


# 1. one transaction ---------------------------------------------------------------------


async def test_own_rows_and_events_commit_together_or_not_at_all(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    outbox = Outbox("kp2mi")
    commits: list[str] = []
    outbox.notify(lambda: commits.append("woken"))

    kept = new_case_id()
    with Session(engine) as session:
        session.add(AgencyCase(case_id=kept, status="referred"))
        event = outbox.add(
            session, "document.requested", _request(1), case_id=kept, target="dukcapil"
        )
        session.commit()
    assert commits == ["woken"]

    # Rolled back after the rows reached the database (flushed), and a commit that fails
    # on the agency's own row: neither leaves its event behind.
    dropped = new_case_id()
    with Session(engine) as session:
        session.add(AgencyCase(case_id=dropped, status="referred"))
        outbox.add(session, "document.requested", _request(2), case_id=dropped, target="dukcapil")
        session.flush()
        session.rollback()
    with Session(engine) as session:
        session.add(AgencyCase(case_id=kept, status="again"))  # its primary key is taken
        outbox.add(session, "document.requested", _request(3), case_id=kept, target="dukcapil")
        with pytest.raises(IntegrityError):
            session.commit()
    assert commits == ["woken"]

    with Session(engine) as session:
        assert [(c.case_id, c.status) for c in session.exec(select(AgencyCase))] == [
            (kept, "referred")
        ]
    [row] = _rows(engine)
    assert (row.id, row.agency, row.sent_at, row.attempts) == (event.id, "kp2mi", None, 0)

    relay = OutboxRelay(engine, js, stream=settings.stream)
    assert await relay.run_once() == 1
    assert await relay.run_once() == 0
    [stored] = await _stream(js, settings.stream)
    assert stored.msg_id == event.id
    assert decode(stored.data, subject=stored.subject).envelope == event.envelope


# 2. in order, marked sent, once ---------------------------------------------------------


async def test_relay_publishes_in_order_and_marks_sent_once(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    outbox = Outbox("kp2mi")
    cases = [new_case_id(), new_case_id()]
    events = _add(engine, outbox, cases, 3)  # three in one transaction
    for _ in range(4):
        events += _add(engine, outbox, cases, 1)
    relay = OutboxRelay(engine, js, stream=settings.stream, batch=3)
    assert await relay.pending() == 7

    with structlog.testing.capture_logs() as logs:
        assert [await relay.run_once() for _ in range(4)] == [3, 3, 1, 0]
    assert await relay.pending() == 0

    stored = await _stream(js, settings.stream)
    assert [s.msg_id for s in stored] == [e.id for e in events]
    rows = _rows(engine)
    assert [r.id for r in rows] == [e.id for e in events]
    for row, message in zip(rows, stored, strict=True):
        assert row.stream_seq == message.seq
        # What was committed, plus the link into the case's hash chain the relay adds.
        published = json.loads(message.data)
        assert {k: v for k, v in published.items() if k != "prevhash"} == json.loads(row.body)
        assert message.subject == row.subject
        assert row.sent_at is not None
        assert row.sent_at >= row.created_at
        assert (row.attempts, row.last_error) == (1, None)
    relayed = [e for e in logs if e["event"] == "outbox.relayed"]
    assert [(e["events"], e["duplicates"]) for e in relayed] == [(3, 0), (3, 0), (1, 0)]
    _no_event_data(logs, rows)

    assert await relay.run_once() == 0
    assert len(await _stream(js, settings.stream)) == 7


async def test_a_failed_publish_ends_the_round_and_nothing_skips_ahead(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    outbox = Outbox("kp2mi")
    events = _add(engine, outbox, [new_case_id()], 3)
    relay = OutboxRelay(engine, js, stream=settings.stream)

    # No stream yet: the bus answers "no responders", the first row fails, the rest wait.
    with structlog.testing.capture_logs() as logs, pytest.raises(BusUnavailable):
        await relay.run_once()
    rows = _rows(engine)
    assert [(r.attempts, r.sent_at) for r in rows] == [(1, None), (0, None), (0, None)]
    assert rows[0].last_error is not None
    assert rows[0].last_error.startswith("BusUnavailable")
    failed = [e for e in logs if e["event"] == "outbox.publish_failed"]
    assert [(e["event_id"], e["attempts"]) for e in failed] == [(events[0].id, 1)]
    _no_event_data(logs, rows)

    # JetStream refuses it (another stream is expected): permanent, and still first in line.
    await ensure_stream(js, settings)
    wrong = OutboxRelay(engine, js, stream="NOT_LINTAS")
    with pytest.raises(PublishRejected):
        await wrong.run_once()
    rows = _rows(engine)
    assert [r.attempts for r in rows] == [2, 0, 0]
    assert rows[0].last_error is not None
    assert "JetStream refused" in rows[0].last_error

    assert await relay.run_once() == 3
    assert [s.msg_id for s in await _stream(js, settings.stream)] == [e.id for e in events]
    assert [r.attempts for r in _rows(engine)] == [3, 1, 1]


# 3. published, then crashed before marking sent -----------------------------------------


def _forget_sent(engine: Engine) -> None:
    """What a crash between the ack and the mark leaves: published rows still pending."""
    with Session(engine) as session:
        session.execute(update(OutboxRecord).values(sent_at=None, stream_seq=None))
        session.commit()


async def test_a_relay_that_crashed_before_marking_sent_publishes_once(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    events = _add(engine, Outbox("kp2mi"), [new_case_id()], 3)
    relay = OutboxRelay(engine, js, stream=settings.stream)
    assert await relay.run_once() == 3
    first = [r.stream_seq for r in _rows(engine)]
    _forget_sent(engine)

    restarted = OutboxRelay(engine, js, stream=settings.stream)
    with structlog.testing.capture_logs() as logs:
        assert await restarted.run_once() == 3
    [relayed] = [e for e in logs if e["event"] == "outbox.relayed"]
    assert (relayed["events"], relayed["duplicates"]) == (3, 3)  # every ack said duplicate
    stored = await _stream(js, settings.stream)
    assert [s.msg_id for s in stored] == [e.id for e in events]  # one copy each
    rows = _rows(engine)
    assert [r.stream_seq for r in rows] == first == [1, 2, 3]
    assert all(r.sent_at is not None for r in rows)


async def test_the_loop_survives_a_failed_mark_and_the_stream_keeps_one_copy(
    engine: Engine, js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_stream(js, settings)
    events = _add(engine, Outbox("kp2mi"), [new_case_id(), new_case_id()], 4)
    relay = OutboxRelay(
        engine,
        js,
        stream=settings.stream,
        poll_interval_s=0.05,
        min_backoff_s=0.01,
        max_backoff_s=0.05,
    )
    mark_sent = relay._mark_sent
    calls = 0

    def fails_once(acked: Any, sealed: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("UPDATE lintas_outbox", {}, Exception("database is locked"))
        mark_sent(acked, sealed)

    monkeypatch.setattr(relay, "_mark_sent", fails_once)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(relay.run(stop))
        try:
            await _until(lambda: _all_sent(relay), "every row marked sent")
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
    assert calls == 2
    retried = [e for e in logs if e["event"] == "outbox.retrying"]
    assert [e["error"] for e in retried] == ["OperationalError"]
    [relayed] = [e for e in logs if e["event"] == "outbox.relayed"]
    assert (relayed["events"], relayed["duplicates"]) == (4, 4)
    stored = await _stream(js, settings.stream)
    assert [s.msg_id for s in stored] == [e.id for e in events]
    assert [r.stream_seq for r in _rows(engine)] == [1, 2, 3, 4]


async def test_a_stored_event_whose_ack_was_lost_is_found_not_published_again(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    """Past the duplicate window (a long outage) only the lookup keeps it to one copy."""
    await ensure_stream(js, settings)
    events = _add(engine, Outbox("kp2mi"), [new_case_id()], 2)
    head = _rows(engine)[0]
    # The bus stored the first event, then the connection dropped before the ack came.
    await js.publish(
        head.subject, head.body.encode(), stream=settings.stream, headers={"Nats-Msg-Id": head.id}
    )
    with Session(engine) as session:
        session.execute(
            update(OutboxRecord)
            .where(col(OutboxRecord.id) == head.id)
            .values(attempts=1, last_error="BusUnavailable: nats: timeout")
        )
        session.commit()

    relay = OutboxRelay(engine, js, stream=settings.stream)
    with structlog.testing.capture_logs() as logs:
        assert await relay.run_once() == 2
    found = [e for e in logs if e["event"] == "outbox.found_stored"]
    assert [(e["event_id"], e["stream_seq"]) for e in found] == [(head.id, 1)]
    [relayed] = [e for e in logs if e["event"] == "outbox.relayed"]
    assert (relayed["events"], relayed["duplicates"]) == (2, 1)
    assert [s.msg_id for s in await _stream(js, settings.stream)] == [e.id for e in events]
    assert [(r.stream_seq, r.attempts) for r in _rows(engine)] == [(1, 2), (2, 1)]


async def _all_sent(relay: OutboxRelay) -> bool:
    return await relay.pending() == 0


# 4. the bus down for a while ------------------------------------------------------------


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
async def test_relay_rides_out_the_bus_being_down(
    nats_server: EmbeddedNats, engine: Engine, settings: Settings, buffered: bool
) -> None:
    port = urlsplit(nats_server.url).port
    assert port is not None
    # The relay's client must never give up reconnecting. Buffered: nats-py's default
    # keeps publishes made while disconnected and sends them on reconnect; unbuffered
    # (pending_size=0), they fail at once.
    if buffered:
        nc = await connect(nats_server.url, "outbox-relay", attempts=-1)
    else:
        nc = await nats.connect(
            nats_server.url,
            name="outbox-relay",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            pending_size=0,
            error_cb=_quiet,
        )
    js = nc.jetstream()
    await ensure_stream(js, settings)
    outbox = Outbox("kp2mi")
    cases = [new_case_id() for _ in range(3)]
    # A long poll: only the wake-up on commit can make the relay publish within the test.
    relay = OutboxRelay(
        engine,
        js,
        stream=settings.stream,
        batch=2,
        timeout=0.5,
        poll_interval_s=60.0,
        min_backoff_s=0.05,
        max_backoff_s=0.4,
    )
    outbox.notify(relay.wake)
    stop = asyncio.Event()
    restarted: EmbeddedNats | None = None
    expected: list[Event] = []

    async def add(count: int) -> None:  # committed in another thread, as a web app would
        expected.extend(await asyncio.to_thread(_add, engine, outbox, cases, count))

    async def head_attempts() -> int:
        rows = [r for r in await asyncio.to_thread(_rows, engine) if r.sent_at is None]
        return rows[0].attempts if rows else 0

    try:
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(relay.run(stop))
            await add(3)
            await _until(lambda: _all_sent(relay), "the first events sent", within=5)

            await nats_server.stop()
            for _ in range(3):
                await add(2)
            await _until(
                lambda: _at_least(head_attempts, 3), "the relay retrying while the bus is down"
            )
            assert not task.done()  # nothing escaped: it backs off and tries again
            assert await relay.pending() == 6

            restarted = EmbeddedNats(nats_server.store_dir, port=port)
            await restarted.start()
            await _until(lambda: _all_sent(relay), "caught up after the restart", within=30)
            stop.set()
            await asyncio.wait_for(task, 10)  # raises if the relay failed

        stored = await _stream(js, settings.stream)
        rows = await asyncio.to_thread(_rows, engine)
    finally:
        stop.set()
        await nc.close()
        if restarted is not None:
            await restarted.stop()

    # 0 lost, 0 duplicated, in the order they were committed (so per case too).
    stored_ids = [s.msg_id for s in stored]
    lost = len({e.id for e in expected} - set(stored_ids))
    print(f"events={len(expected)} lost={lost} duplicated={len(stored_ids) - len(set(stored_ids))}")
    assert stored_ids == [e.id for e in expected]
    assert [r.id for r in rows] == [e.id for e in expected]
    assert [r.stream_seq for r in rows] == list(range(1, 10))
    assert rows[3].attempts > 1
    assert rows[3].last_error is not None
    events = [e["event"] for e in logs]
    assert "outbox.publish_failed" in events
    assert "outbox.recovered" in events
    # Every failure was understood as the bus being down: none escaped as a bare error.
    assert {e["error"] for e in logs if e["event"] == "outbox.retrying"} == {"BusUnavailable"}
    _no_event_data(logs, rows)


async def _quiet(_exc: Exception) -> None:
    """nats-py logs every failed reconnect with a traceback; the test expects them."""


async def _at_least(value: Callable[[], Awaitable[int]], minimum: int) -> bool:
    return await value() >= minimum


async def test_a_client_that_gave_up_reconnecting_is_named_as_the_cause(
    nats_server: EmbeddedNats, engine: Engine, settings: Settings
) -> None:
    nc = await connect(nats_server.url, "outbox-relay", attempts=1)  # gives up quickly
    js = nc.jetstream()
    await ensure_stream(js, settings)
    [event] = _add(engine, Outbox("kp2mi"), [new_case_id()], 1)
    await nats_server.stop()
    await _until(lambda: _closed(nc), "the client gave up")
    relay = OutboxRelay(engine, js, stream=settings.stream, timeout=0.5)
    with structlog.testing.capture_logs() as logs, pytest.raises(NatsClientClosed) as raised:
        await relay.run_once()
    assert "max_reconnect_attempts=-1" in str(raised.value)
    [failed] = [e for e in logs if e["event"] == "outbox.publish_failed"]
    assert (failed["event_id"], failed["log_level"]) == (event.id, "error")


async def _closed(nc: Any) -> bool:
    return bool(nc.is_closed)


# housekeeping ---------------------------------------------------------------------------


async def test_prune_deletes_only_rows_sent_before_the_cut(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    outbox = Outbox("kp2mi")
    _add(engine, outbox, [new_case_id()], 2)
    relay = OutboxRelay(engine, js, stream=settings.stream)
    assert await relay.run_once() == 2
    [later] = _add(engine, outbox, [new_case_id()], 1)
    sent = [r.sent_at for r in _rows(engine) if r.sent_at is not None]
    assert await relay.prune(sent_before=min(sent)) == 0
    assert await relay.prune(sent_before=max(sent) + timedelta(seconds=1)) == 2
    assert [r.id for r in _rows(engine)] == [later.id]
    assert await relay.pending() == 1


# a child's data: gated and sealed by the relay, never left in the outbox ----------------


async def test_the_relay_gates_and_seals_and_leaves_no_plaintext_in_the_outbox(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await declare_platform(js, settings, [])
    kp2mi = signed(js, settings, "kp2mi")  # its keys: the relay seals with them
    case_id = new_case_id()
    outbox = Outbox("kp2mi")
    notes = {"referral_id": "r-1", "service": "shelter", "notes": SECRET}
    with Session(engine) as session:
        event = outbox.add(
            session, "referral.requested", notes, case_id=case_id, target="kemenpppa"
        )
        session.commit()
    relay = OutboxRelay(engine, js, stream=settings.stream, keys=kp2mi.gate.keys)

    with structlog.testing.capture_logs() as logs, pytest.raises(ConsentMissing):
        await relay.run_once()  # no consent covers kemenpppa yet: held, first in line
    [row] = _rows(engine)
    assert (row.sent_at, row.attempts) == (None, 1)
    assert "needs consent for scope 'services' covering kemenpppa" in (row.last_error or "")
    assert (await js.stream_info(settings.stream)).state.messages == 0

    await consent(kp2mi, case_id, ["kemenpppa"])
    with structlog.testing.capture_logs() as more:
        assert await relay.run_once() == 1
    [row] = _rows(engine)
    [_, published] = await _stream(js, settings.stream)  # the consent, the referral
    assert published.msg_id == event.id
    assert row.body.encode() == published.data, "the row now holds what was published, sealed"
    assert SECRET not in row.body
    assert SECRET.encode() not in published.data
    sealed = decode(published.data, subject=published.subject).data
    opened = open_field(
        sealed, "notes", {1: await _key(js, settings, "kemenpppa", case_id)}, case_id=case_id
    )
    assert opened == SECRET
    _no_event_data([*logs, *more], [row])


async def test_a_verifying_relay_counts_no_consent_signed_with_another_key(
    engine: Engine, js: JetStreamContext, settings: Settings
) -> None:
    await declare_platform(js, settings, [])
    kp2mi = signed(js, settings, "kp2mi")
    case_id = new_case_id()
    await forge_consent(js, settings, case_id, ["kp2mi", "kemenpppa"])
    with Session(engine) as session:
        Outbox("kp2mi").add(
            session,
            "referral.requested",
            {"referral_id": "r-1", "service": "shelter"},
            case_id=case_id,
            target="kemenpppa",
        )
        session.commit()
    relay = OutboxRelay(
        engine,
        js,
        stream=settings.stream,
        keys=kp2mi.gate.keys,
        verifier=Verifier(load_registry(settings)),
    )
    with pytest.raises(ConsentMissing):
        await relay.run_once()
    [row] = _rows(engine)
    assert row.sent_at is None
    assert (await js.stream_info(settings.stream)).state.messages == 1  # the forgery alone


async def _key(js: JetStreamContext, settings: Settings, agency: str, case_id: str) -> bytes:
    keys = signed(js, settings, agency).gate.keys
    assert keys is not None
    key = await keys.data_key(case_id)
    assert key is not None, f"{agency} holds the case's data key"
    return key
