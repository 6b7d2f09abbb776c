"""Reading the event stream in stream order, streamed, never the whole log in memory.

The whole log is read through an ephemeral push consumer that delivers in stream order
and is acknowledged every thousand messages (AckAll), with at most a few thousand
unacknowledged: the fastest way nats-py reads a stream (the ordered consumer's flow
control answers only every quarter second, which stalls a reader that does work), with
memory flat whatever the length of the stream. A reader that may not create a consumer
(the auditor on a secured bus) reads the whole log by *batched* direct gets (nats-server
2.11 and newer answer one request with up to a few thousand messages, then an
end-of-batch status), one batch at a time, at about two thirds of a consumer's rate; a
sequence a batch skips, and whatever a batch cannot go on to read (nothing found, an
error, answers lost on the way), is read by direct gets of one sequence each, which ask
the stream leader before calling a sequence missing. A stream sequence either read skips
is one the stream no longer holds: the checker names it. One case is read through its
subject filter (``lintas.*.*.*.*.<case>``) by batched next-by-subject direct gets, the
end confirmed by the leader, so its cost follows the case, not the stream.

Both stop at the *cut*: the stream's last sequence when the read began; what is published
meanwhile belongs to the next audit. A direct get may be answered by a replica that lags
behind; "not found" is therefore confirmed by the stream leader before a sequence is
reported missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from lintas.audit.events import StoredEvent
from lintas.contracts import PermanentError, case_filter
from lintas.infra.errors import bus_errors
from lintas.infra.reads import jetstream_api

__all__ = ["NoSuchStream", "StreamCut", "StreamReader"]

# A whole-log read is an ephemeral push consumer acknowledging every _ACK_EVERY messages
# (AckAll), so at most _IN_FLIGHT messages are on their way or unread: memory stays flat.
_IN_FLIGHT = 4_096
_ACK_EVERY = 1_024
_ACK_WAIT_S = 300.0
# For readers that may not create a consumer: messages asked for in one batched direct
# get (at most some MB on their way at once), and single direct gets answered in parallel.
_BATCH = 4_096
_WINDOW = 64
# Batches in a row that may end without a message read before single gets take over.
_STALLS = 3
# This long without a message, while messages are due, means the server stopped answering.
_QUIET_S = 30.0


class NoSuchStream(PermanentError):
    """The stream to audit does not exist on this bus."""


@dataclass(frozen=True, slots=True)
class StreamCut:
    """The stream's extent when a read began: what an audit covers."""

    stream: str
    first_seq: int
    last_seq: int
    messages: int

    @property
    def empty(self) -> bool:
        return self.messages == 0


def _stored_at(headers: dict[str, str] | None) -> datetime | None:
    text = (headers or {}).get("Nats-Time-Stamp")
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return None


def _stored(raw: Any) -> StoredEvent:
    return StoredEvent(
        seq=int(raw.seq),
        subject=raw.subject or "",
        body=raw.data or b"",
        # A direct get says when in a header; the leader's get in a field.
        stored=_stored_at(raw.headers) or getattr(raw, "time", None),
    )


def _delivered(reply: str | None) -> tuple[int, int, int, datetime] | None:
    """(stream seq, consumer seq, pending, stored at) of a consumer's message, read off its
    reply subject ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
    <ns>.<pending>`` as nats-py's ``Msg.metadata`` reads it, in a quarter of its time (a
    whole-log read asks it of every message); None for any other form (one with a
    JetStream domain, say), which ``Msg.metadata`` reads."""
    tokens = reply.split(".") if reply else []
    if len(tokens) != 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    try:
        stored = datetime.fromtimestamp(int(tokens[7]) / 1_000_000_000.0, UTC)
        return int(tokens[5]), int(tokens[6]), int(tokens[8]), stored
    except (ValueError, OverflowError, OSError):
        return None


_END_OF_BATCH = "204"


def _direct_api(js: Any, stream: str) -> tuple[Any, str] | None:
    """The client and the direct-get subject of ``stream``; None where the context shows
    neither, and the log is read by single gets."""
    api = jetstream_api(js)
    return None if api is None else (api[0], f"{api[1]}.DIRECT.GET.{stream}")


class _Batch:
    """The answers to one batched direct get, as they arrive on its own inbox.

    Each message names the sequence of the one sent before it in the batch
    (``Nats-Last-Sequence``, 0 for the first): a message lost on the way (a slow client)
    breaks that chain, and the batch ends at the last message of an unbroken chain."""

    def __init__(self) -> None:
        self._arrived: deque[Msg] = deque()
        self._wake = asyncio.Event()
        self._previous = 0
        self.ended_with: str | None = None
        """What ended the batch: the server's status ("204" end of batch, "404" nothing
        found, or another), "timeout", or None for a break in the chain."""

    async def take(self, msg: Msg) -> None:  # no task per message, as for the consumer
        self._arrived.append(msg)
        self._wake.set()

    async def next(self) -> StoredEvent | None:
        """The batch's next message, or None when the batch has ended."""
        while not self._arrived:
            self._wake.clear()
            try:
                async with asyncio.timeout(_QUIET_S):
                    await self._wake.wait()
            except TimeoutError:  # answers lost (on a reconnect, say): single gets go on
                self.ended_with = "timeout"
                return None
        msg = self._arrived.popleft()
        headers = msg.headers or {}
        if "Nats-Sequence" not in headers:
            # The server's own answer. A stored message may carry a header named Status
            # too (a publisher chose it), and is read as the message it is.
            self.ended_with = headers.get("Status", "")
            return None
        try:
            seq = int(headers["Nats-Sequence"])
            follows = int(headers.get("Nats-Last-Sequence", "0"))
        except ValueError:
            return None  # not an answer this reader understands: the batch ends here
        if follows != self._previous:
            return None
        self._previous = seq
        return StoredEvent(seq, headers.get("Nats-Subject", ""), msg.data, _stored_at(headers))


class StreamReader:
    """The events of ``stream`` (or of one case) up to the cut, in stream order."""

    def __init__(self, js: Any, stream: str, *, case_id: str | None = None, consumer: bool = True):
        """``consumer``: read the whole log through an ephemeral consumer (fastest), or,
        for an identity whose permissions allow no consumer (the auditor on a secured bus),
        by batched direct gets."""
        self._js = js
        self.consumer = consumer
        self.stream = stream
        self.case_id = case_id
        self.subject_filter = case_filter(case_id) if case_id is not None else None

    async def cut(self) -> StreamCut:
        with bus_errors(f"reading the state of stream {self.stream}"):
            try:
                info = await self._js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                raise NoSuchStream(f"there is no stream {self.stream} on this bus") from None
        state = info.state
        return StreamCut(self.stream, state.first_seq, state.last_seq, state.messages)

    async def events(self, cut: StreamCut) -> AsyncIterator[StoredEvent]:
        if cut.empty:
            return
        if self.subject_filter is None:
            whole = self._by_consumer(cut) if self.consumer else self._by_sequence(cut)
        else:
            whole = self._by_subject(cut, self.subject_filter)
        # Closed at once if the caller stops early: a consumer or an inbox goes with it.
        async with contextlib.aclosing(whole):
            async for stored in whole:
                yield stored

    async def _get(self, seq: int) -> StoredEvent | None:
        """The message at ``seq``, or None if the stream (its leader) has none there."""
        try:
            raw = await self._js.get_msg(self.stream, seq=seq, direct=True)
        except nats.js.errors.NotFoundError:
            try:
                raw = await self._js.get_msg(self.stream, seq=seq)
            except nats.js.errors.NotFoundError:
                return None
        return _stored(raw)

    async def _by_sequence(self, cut: StreamCut) -> AsyncGenerator[StoredEvent, None]:
        # From the stream's first sequence: if that is not 1, the checker says what is gone.
        start = max(cut.first_seq, 1)
        api = _direct_api(self._js, self.stream)
        if api is not None:
            # Closed at once if the caller stops early: the batch's inbox goes with it.
            async with contextlib.aclosing(self._by_batch(cut, start, *api)) as batches:
                async for stored in batches:
                    yield stored
                    start = stored.seq + 1
        async with contextlib.aclosing(self._by_get(cut, start)) as singles:
            async for stored in singles:
                yield stored

    async def _by_batch(
        self, cut: StreamCut, start: int, nc: Any, subject: str, subject_filter: str | None = None
    ) -> AsyncGenerator[StoredEvent, None]:
        """Batched direct gets from ``start`` towards the cut (of the messages on
        ``subject_filter`` only, when given), while they make progress; what they leave
        (see the module doc) is for the single gets."""
        stalls = 0
        while start <= cut.last_seq and stalls < _STALLS:
            wanted = min(_BATCH, cut.last_seq - start + 1)
            batch = _Batch()
            with bus_errors(f"reading {self.stream} from seq {start}"):
                sub = await nc.subscribe(nc.new_inbox(), cb=batch.take)
            try:
                # By subject (">" for the whole log), so that a deleted message where a batch
                # starts is skipped, not answered "not found" (nats-server 2.11 before 2.11.9).
                asked = {"seq": start, "batch": wanted, "next_by_subj": subject_filter or ">"}
                request = json.dumps(asked).encode()
                with bus_errors(f"reading {self.stream} from seq {start}"):
                    await nc.publish(subject, request, reply=sub.subject)
                read = 0
                # All that was asked for has come: the end-of-batch status need not be awaited.
                while read < wanted and (stored := await batch.next()) is not None:
                    if stored.seq > cut.last_seq:
                        return
                    if subject_filter is None and stored.seq > start:
                        # A gap, on the word of whichever replica answered: asked of the
                        # leader, as the single gets ask it, before it is called missing.
                        async for found in self._by_get(cut, start, stored.seq - 1):
                            yield found
                    yield stored
                    start = stored.seq + 1
                    read += 1
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            stalls = 0 if read else stalls + 1
            if batch.ended_with == "timeout" and read:
                continue  # answers lost after some came: asked for again from there
            if batch.ended_with not in (None, _END_OF_BATCH):
                return  # not found here, refused, or nothing came: the single gets go on

    async def _by_get(
        self, cut: StreamCut, start: int, last: int | None = None
    ) -> AsyncGenerator[StoredEvent, None]:
        """Single direct gets of ``start`` up to ``last`` (the cut's last sequence if None),
        each confirmed by the stream leader where it finds nothing."""
        last = cut.last_seq if last is None else last
        while start <= last:
            end = min(start + _WINDOW - 1, last)
            with bus_errors(f"reading {self.stream} {start}..{end}"):
                found = await asyncio.gather(*(self._get(s) for s in range(start, end + 1)))
            for stored in found:
                if stored is not None:
                    yield stored
            start = end + 1

    async def _by_consumer(self, cut: StreamCut) -> AsyncGenerator[StoredEvent, None]:
        arrived: deque[Msg] = deque()
        wake = asyncio.Event()

        async def take(msg: Msg) -> None:  # nats-py's cheapest delivery path: no task each
            arrived.append(msg)
            wake.set()

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            # From the stream's first sequence: if not 1, the checker says what is gone.
            opt_start_seq=max(cut.first_seq, 1),
            ack_policy=AckPolicy.ALL,
            max_ack_pending=_IN_FLIGHT,
            ack_wait=_ACK_WAIT_S,
            inactive_threshold=_ACK_WAIT_S,
            mem_storage=True,
            num_replicas=1,
        )
        with bus_errors(f"reading {self.stream}"):
            sub = await self._js.subscribe(
                ">",
                stream=self.stream,
                config=config,
                cb=take,
                manual_ack=True,
                pending_msgs_limit=2 * _IN_FLIGHT,
                pending_bytes_limit=-1,
            )
        last = 0
        try:
            while True:
                while not arrived:
                    wake.clear()
                    with bus_errors(f"reading {self.stream} up to seq {cut.last_seq}"):
                        async with asyncio.timeout(_QUIET_S):
                            await wake.wait()
                msg = arrived.popleft()
                delivered = _delivered(msg.reply)
                if delivered is None:
                    meta = msg.metadata
                    delivered = (
                        meta.sequence.stream,
                        meta.sequence.consumer,
                        meta.num_pending,
                        meta.timestamp,
                    )
                seq, consumer_seq, pending, stored = delivered
                if seq <= last:
                    continue  # redelivered after an ack was lost: read already
                if seq > cut.last_seq:
                    return
                last = seq
                yield StoredEvent(seq, msg.subject, msg.data, stored)
                if seq == cut.last_seq or pending == 0:
                    return
                if consumer_seq % _ACK_EVERY == 0:
                    with bus_errors(f"reading {self.stream}"):
                        await msg.ack()  # AckAll: everything up to here; the server sends more
        finally:
            # The client leaves an ephemeral consumer to expire; an audit removes its own.
            with contextlib.suppress(Exception):
                name = (await sub.consumer_info()).name
                await sub.unsubscribe()
                await self._js.delete_consumer(self.stream, name)

    async def _next(self, cursor: int, subject_filter: str) -> Any:
        try:
            return await self._js.get_msg(
                self.stream, seq=cursor, subject=subject_filter, next=True, direct=True
            )
        except nats.js.errors.NotFoundError:
            pass
        try:  # the leader's word that there is nothing more, not a lagging replica's
            return await self._js.get_msg(
                self.stream, seq=cursor, subject=subject_filter, next=True
            )
        except nats.js.errors.NotFoundError:
            return None

    async def _by_subject(
        self, cut: StreamCut, subject_filter: str
    ) -> AsyncGenerator[StoredEvent, None]:
        cursor = 1
        api = _direct_api(self._js, self.stream)
        if api is not None:  # the case's messages in batches; the leader has the last word
            batches = self._by_batch(cut, cursor, *api, subject_filter)
            async with contextlib.aclosing(batches):
                async for stored in batches:
                    yield stored
                    cursor = stored.seq + 1
        while cursor <= cut.last_seq:
            with bus_errors(f"reading {subject_filter} from {self.stream} at {cursor}"):
                raw = await self._next(cursor, subject_filter)
            if raw is None or raw.seq is None or raw.seq > cut.last_seq:
                return
            stored = _stored(raw)
            yield stored
            cursor = stored.seq + 1
