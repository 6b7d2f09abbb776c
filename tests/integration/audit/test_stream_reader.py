"""StreamReader without a consumer (the auditor on a secured bus): batched direct gets on a
real nats-server read the log exactly as a consumer does, gaps, cut and lost messages
included."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamCut, StreamReader
from lintas.audit import stream as stream_module
from lintas.audit.events import StoredEvent
from lintas.contracts import new_case_id
from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.nats

STREAM = "AUDITED"


async def _log(js: JetStreamContext, messages: int) -> None:
    await js.add_stream(name=STREAM, subjects=["audited.>"], allow_direct=True)
    for n in range(1, messages + 1):
        await js.publish(f"audited.case-{n % 3}", f"event {n}".encode())


async def _read(js: JetStreamContext, cut: StreamCut, *, consumer: bool) -> list[StoredEvent]:
    return [stored async for stored in StreamReader(js, STREAM, consumer=consumer).events(cut)]


def _single_gets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sequences read one by one (the reader's fallback), recorded as it reads them."""
    asked: list[int] = []
    single = StreamReader._get

    async def get(self: StreamReader, seq: int) -> StoredEvent | None:
        asked.append(seq)
        return await single(self, seq)

    monkeypatch.setattr(StreamReader, "_get", get)
    return asked


async def _add_r3_stream(js: JetStreamContext, attempts: int = 3) -> None:
    # A cluster just formed has, about one run in 25, left the first create unanswered
    # (nats: timeout). Asked again: a create of the same stream is idempotent.
    for attempt in range(1, attempts + 1):
        try:
            await js.add_stream(
                name=STREAM, subjects=["audited.>"], num_replicas=3, allow_direct=True
            )
            return
        except nats.errors.TimeoutError:
            if attempt == attempts:
                raise


async def _publish_once_served(js: JetStreamContext, subject: str, payload: bytes) -> None:
    # Right after an R3 stream is created, the node this client is on may not have taken
    # its replica yet: the publish finds no responder (so nothing was stored), about one
    # run in 25. No event tells when it has; asked again, a moment later, for up to 2 s.
    for attempt in range(1, 41):
        try:
            await js.publish(subject, payload)
            return
        except nats.js.errors.NoStreamResponseError:
            if attempt == 40:
                raise
            await asyncio.sleep(0.05)


async def _quiet(_exc: Exception) -> None:
    pass


def _same(batched: list[StoredEvent], consumed: list[StoredEvent]) -> None:
    assert [(e.seq, e.subject, e.body) for e in batched] == [
        (e.seq, e.subject, e.body) for e in consumed
    ]
    assert all(e.stored is not None for e in batched)
    # The consumer reads when each was stored off the reply subject (nanoseconds, as a
    # float of seconds), a direct get off a header: the same instant, to the microsecond.
    for got, read in zip(batched, consumed, strict=True):
        assert read.stored is not None
        assert got.stored is not None
        assert abs(read.stored - got.stored) <= timedelta(microseconds=1)


async def test_batches_read_the_log_as_a_consumer_does_across_a_deleted_message(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "_BATCH", 4)  # many batches, one ending mid-gap
    await _log(js, 30)
    await js.delete_msg(STREAM, 7)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    batched = await _read(js, cut, consumer=False)
    assert asked == [7]  # every message came in a batch; the gap was confirmed by the leader
    assert [e.seq for e in batched] == [n for n in range(1, 31) if n != 7]
    _same(batched, await _read(js, cut, consumer=True))


async def test_a_reply_subject_of_another_form_is_read_by_nats_py(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply subject the reader does not parse itself (one with a JetStream domain, say)
    is read through nats-py's ``Msg.metadata``: the same events, stored times, and end."""
    await _log(js, 12)
    await js.delete_msg(STREAM, 5)
    cut = await StreamReader(js, STREAM).cut()
    parsed = await _read(js, cut, consumer=True)
    seen: list[str | None] = []

    def unknown(reply: str | None) -> None:
        seen.append(reply)
        return None

    monkeypatch.setattr(stream_module, "_delivered", unknown)
    fallen_back = await _read(js, cut, consumer=True)
    assert len(seen) == 11
    assert [(e.seq, e.subject, e.body, e.stored) for e in fallen_back] == [
        (e.seq, e.subject, e.body, e.stored) for e in parsed
    ]
    assert [e.seq for e in parsed] == [n for n in range(1, 13) if n != 5]


async def test_a_deleted_tail_is_asked_of_the_leader_one_sequence_at_a_time(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _log(js, 12)
    for seq in (11, 12):
        await js.delete_msg(STREAM, seq)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    assert cut.last_seq == 12  # the stream still says it held 12
    batched = await _read(js, cut, consumer=False)
    assert asked == [11, 12]  # nothing found there in a batch: confirmed, then reported gone
    assert [e.seq for e in batched] == list(range(1, 11))
    _same(batched, await _read(js, cut, consumer=True))


async def test_nothing_published_after_the_cut_is_read(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _log(js, 10)
    await js.delete_msg(STREAM, 8)  # so the batch of the 10 sequences runs on past the cut
    cut = await StreamReader(js, STREAM).cut()
    for n in range(11, 16):
        await js.publish("audited.later", f"event {n}".encode())
    asked = _single_gets(monkeypatch)
    assert [e.seq for e in await _read(js, cut, consumer=False)] == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert asked == [8]


async def test_a_batch_may_start_on_a_deleted_message(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled server skips a deleted first sequence by itself; a 2.11 server before
    2.11.9 answers "not found" there unless the request names a subject (``>``), which
    the reader always does. Here it pins that the request stays valid for the server."""
    monkeypatch.setattr(stream_module, "_BATCH", 4)
    await _log(js, 12)
    await js.delete_msg(STREAM, 5)  # where the second batch starts
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    batched = await _read(js, cut, consumer=False)
    assert asked == [5]
    _same(batched, await _read(js, cut, consumer=True))


async def test_a_stored_status_header_is_read_as_the_message_it_is(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever publishes chooses a message's headers: one named like the server's status
    must not end a batch."""
    await _log(js, 6)
    await js.publish("audited.odd", b"event 7", headers={"Status": "404"})
    await js.publish("audited.odd", b"event 8", headers={"Status": "204"})
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    batched = await _read(js, cut, consumer=False)
    assert asked == []
    assert [e.seq for e in batched] == list(range(1, 9))
    _same(batched, await _read(js, cut, consumer=True))


async def test_a_message_lost_on_its_way_is_asked_for_again(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow client may lose messages sent to its inbox: the chain of ``Nats-Last-Sequence``
    breaks there, and the reader asks again from the last message it holds."""
    monkeypatch.setattr(stream_module, "_BATCH", 8)
    await _log(js, 20)
    take = stream_module._Batch.take
    lost: list[int] = []

    async def lose_once(self: Any, msg: Any) -> None:
        seq = int((msg.headers or {}).get("Nats-Sequence", 0))
        if seq in (6, 14) and seq not in lost:  # one mid-batch, then a batch's first
            lost.append(seq)
            return
        await take(self, msg)

    monkeypatch.setattr(stream_module._Batch, "take", lose_once)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    batched = await _read(js, cut, consumer=False)
    assert lost == [6, 14]
    assert asked == []
    assert [e.seq for e in batched] == list(range(1, 21))  # each once, in order
    _same(batched, await _read(js, cut, consumer=True))


async def test_one_case_is_read_in_batches_and_its_end_asked_of_the_leader(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "_BATCH", 4)
    await js.add_stream(name=STREAM, subjects=["lintas.>"], allow_direct=True)
    cases = [new_case_id() for _ in range(3)]
    for n in range(1, 31):
        await js.publish(f"lintas.kemlu.kp2mi.case.assessed.{cases[n % 3]}", f"e{n}".encode())
    single: list[int] = []
    one_by_one = StreamReader._next

    async def next_of(self: StreamReader, cursor: int, subject_filter: str) -> Any:
        single.append(cursor)
        return await one_by_one(self, cursor, subject_filter)

    monkeypatch.setattr(StreamReader, "_next", next_of)
    reader = StreamReader(js, STREAM, case_id=cases[1])
    cut = await reader.cut()
    read = [stored async for stored in reader.events(cut)]
    assert [e.seq for e in read] == list(range(1, 31, 3))
    assert {e.subject.rpartition(".")[2] for e in read} == {cases[1]}
    assert [e.body for e in read] == [f"e{n}".encode() for n in range(1, 31, 3)]
    assert single == [29]  # only the end, confirmed by the leader


async def test_a_batch_whose_answers_never_come_leaves_the_rest_to_single_gets(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers lost whole (a reconnect between request and reply): after the quiet time
    the reader goes on one sequence at a time rather than failing the audit."""
    monkeypatch.setattr(stream_module, "_QUIET_S", 0.2)
    await _log(js, 6)

    async def never(self: Any, msg: Any) -> None:
        pass

    monkeypatch.setattr(stream_module._Batch, "take", never)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    assert [e.seq for e in await _read(js, cut, consumer=False)] == list(range(1, 7))
    assert asked == list(range(1, 7))


@pytest.mark.slow
async def test_on_a_three_node_cluster_any_replica_may_answer_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica of an R3 stream answers direct gets: batches from any of them, with a
    follower down part of the time, read what the leader holds, in order, each once."""
    monkeypatch.setattr(stream_module, "_BATCH", 16)
    async with asyncio.timeout(60), LoopbackCluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(cluster.urls, error_cb=_quiet)
        try:
            js = nc.jetstream(timeout=10)
            await _add_r3_stream(js)
            await _publish_once_served(js, "audited.case-1", b"event 1")
            for n in range(2, 201):
                await js.publish(f"audited.case-{n % 7}", f"event {n}".encode())
            await js.delete_msg(STREAM, 50)
            cut = await StreamReader(js, STREAM).cut()
            asked = _single_gets(monkeypatch)
            everyone = await _read(js, cut, consumer=False)
            assert asked == [50]  # all in batches; the gap confirmed by the leader
            consumed = await _read(js, cut, consumer=True)
            _same(everyone, consumed)
            assert [e.seq for e in everyone] == [n for n in range(1, 201) if n != 50]
            leader = (await js.stream_info(STREAM)).cluster
            assert leader is not None
            assert nc.connected_url is not None
            connected = nc.connected_url.port
            # Not the node the client is on: the test is of replicas, not of reconnects.
            follower = next(
                name
                for name, node in cluster.nodes.items()
                if name != leader.leader and node.client_port != connected
            )
            await cluster.kill(follower)
            _same(await _read(js, cut, consumer=False), consumed)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await nc.close()


async def test_batches_that_keep_losing_their_first_message_give_way_to_single_gets(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that brings nothing is asked again, a few times: then single gets take over,
    rather than asking for ever."""
    monkeypatch.setattr(stream_module, "_BATCH", 4)
    await _log(js, 10)
    take = stream_module._Batch.take

    async def lose_from_five(self: Any, msg: Any) -> None:
        seq = int((msg.headers or {}).get("Nats-Sequence", 0))
        if seq != 5 or (msg.headers or {}).get("Nats-Last-Sequence") != "0":
            await take(self, msg)  # from sequence 5 on, every batch loses its first message

    monkeypatch.setattr(stream_module._Batch, "take", lose_from_five)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    async with asyncio.timeout(20):  # asking for ever would hang here
        read = await _read(js, cut, consumer=False)
    assert [e.seq for e in read] == list(range(1, 11))
    assert asked == list(range(5, 11))


async def test_a_lost_end_of_batch_does_not_stop_the_batches(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every message asked for has come, the end-of-batch status is not waited for."""
    monkeypatch.setattr(stream_module, "_BATCH", 4)
    monkeypatch.setattr(stream_module, "_QUIET_S", 30.0)  # a wait would show as a timeout
    await _log(js, 10)
    take = stream_module._Batch.take

    async def no_status(self: Any, msg: Any) -> None:
        if "Nats-Sequence" in (msg.headers or {}):
            await take(self, msg)

    monkeypatch.setattr(stream_module._Batch, "take", no_status)
    asked = _single_gets(monkeypatch)
    cut = await StreamReader(js, STREAM).cut()
    async with asyncio.timeout(10):
        read = await _read(js, cut, consumer=False)
    assert [e.seq for e in read] == list(range(1, 11))
    assert asked == []
