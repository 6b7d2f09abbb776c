"""The few reads of the event stream an agency needs, and the service that makes them for it.

An agency's permissions (:mod:`lintas.infra.nats.access`) do not let it read the stream: a
JetStream direct get or stream message get names its subject in the request body, which
NATS permissions cannot see, so granting either would hand every agency every event.
Yet an agency needs four reads:

``head``   the last message of a case (its sequence and hash): each event it publishes
           carries ``prevhash`` and is published with ``Nats-Expected-Last-Subject-Sequence``;
``get``    one stored message by sequence: the event it published itself, when a retried
           publish turns out to be stored already;
``last``   the last message on one of its own subjects (the outbox relay's "was this stored?");
``range``  its consumers' messages between two sequences (closing a gap after a crash), or
           one case's messages it may read (the Publisher's consent gate folds the case's
           broadcasts; a recipient finds in them the grant a wrap of a case key names).

And one answer the log gives that an agency cannot work out from what it may read:

``owner``  the case's owner as of a sequence (:func:`lintas.contracts.gate.owner_of` over
           all the case's events): the Publisher's gate lets only the owner erase or hand on
           a case, and an agency that owns a case by assignment may not read its opening.

And two reads for the operator (``lintas status``, ``lintas watch``), whose permissions do
not let it read the stream either, nor ask for its info (a stream info request with a
subjects filter, in its body, lists every stored subject: who wrote what to whom about
which case):

``oldest-unacked``  when the oldest message a durable consumer has not acknowledged was
                    stored (a consumer's lag): a time, nothing of the message;
``stream-state``    how much the stream holds (:class:`StreamState`: its message count,
                    bytes, first and last sequence): numbers, never a subject.

Custody of the case key store (:mod:`lintas.infra.privacy.custody`), which no agency may
touch: ``key`` reads an agency a case marker or its own wrap, ``make-key`` stores a case's
first data key for its maker, ``wrap-key`` a wrap its holder made for an agency a consent
names; each checked against the log first.

Besides, two changes to the case key store (:mod:`lintas.infra.privacy.casekeys`) that an agency's
permissions do not allow, made as the platform and only when the log calls for them:
``erase-keys`` once the case's owner has published ``case.erased``, ``revoke-keys`` for the
agencies a ``consent.withdrawn`` no longer covers.

:class:`DirectReads` makes them straight on the stream (the platform, or a bus without
authorization). :class:`ReadService` (run by the platform: ``lintas up``, ``lintas run
reads``, and every embedded bus) makes them for agencies that ask on
``lintas_read.<agency>.<operation>`` (and ``lintas_read.operator.oldest-unacked`` and
``.stream-state``); only that agency (or the operator) may publish there. It answers a body
only when the message is addressed to the agency, from it, or to ``all`` (what its own
consumers deliver), and of any other message only its sequence and hash: a hash of a
signed, id-bearing document reveals nothing of it (a head it may read comes with its subject
and body too). :class:`ServiceReads` is the agency's
side. Requests and answers are small JSON documents; bodies travel base64-encoded.

Errors::

    ReadRefused      (permanent) the service will not show that message to this agency
    BusUnavailable   (transient) no read service answers, or the stream does not
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import nats.errors
import nats.js.errors
import structlog

from lintas.contracts import (
    BROADCAST,
    ContractError,
    Event,
    SignatureError,
    authority,
    case_filter,
    decode,
    gate,
    inbound_filters,
    is_agency_id,
    is_case_id,
    message_hash,
    outbound_filter,
    parse_message,
)
from lintas.contracts.agencies import is_partner_abroad
from lintas.contracts.errors import PermanentError
from lintas.contracts.subjects import (
    addressing,
    broadcast_filter,
    matches,
    parse_filter,
    parse_read_subject,
    read_subject,
)
from lintas.infra.errors import BusUnavailable, bus_errors
from lintas.infra.keys.signing import Verifier
from lintas.infra.nats.access import is_own_reply
from lintas.infra.nats.outage import end_tasks
from lintas.infra.privacy.casekeys import NoKeyStore, erase_case_keys, revoke_case_keys
from lintas.infra.privacy.custody import Custody, CustodyRefused

__all__ = [
    "OPERATOR",
    "CaseHead",
    "DirectReads",
    "ReadRefused",
    "ReadService",
    "ServiceReads",
    "StoredMessage",
    "StreamReads",
    "StreamState",
    "jetstream_api",
    "may_read",
    "may_read_filter",
    "readable_filters",
]

_log = structlog.get_logger("lintas.reads")

# An answer stays well under nats-server's default max_payload (1 MB) once base64'd.
_MAX_ANSWER_BYTES = 512 * 1024
_QUEUE = "lintas-read"
OPERATOR = "operator"
"""The one identity besides the agencies the service answers, and only ``oldest-unacked``
and ``stream-state``."""
_CONCURRENCY = 64
_PER_ASKER = 8
"""Requests of one asker answered at once; the rest of its requests wait their turn. A
request may hold its place up to a second (custody waits for the next registry read a
made-up key id allows): one agency's flood then holds at most these of the
``_CONCURRENCY`` places, never every agency's reads."""
_PER_ASKER_WAITING = 4096
"""Requests of one asker waiting their turn beyond which more are refused at once (429):
a flood costs the service this much memory, not whatever the flood sends."""
_NO_RESPONDERS_WAIT_S = 0.1
_STOP_S = 5.0
# A request not answered yet is asked again after these pauses (ServiceReads._request).
_HEDGE_FIRST_S = 0.25
_HEDGE_MAX_S = 1.0


class ReadRefused(PermanentError):
    """The read service will not show this message to the agency asking (or the request is
    malformed): asking again cannot help."""


@dataclass(frozen=True, slots=True)
class CaseHead:
    """A case's last stored message: its sequence, hash, and, if the reader may know them
    (an event it published, one addressed to it, or a broadcast), its event id, subject
    and body (what the Publisher's consent gate folds when only the head is new to it)."""

    seq: int = 0
    hash: str | None = None
    event_id: str | None = None
    subject: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class StreamState:
    """How much a stream holds, as its info tells it: numbers, never a subject."""

    messages: int
    bytes: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    subject: str
    data: bytes


class StreamReads(Protocol):
    """The reads a publisher and a consumer need, whoever makes them."""

    async def head(self, case_id: str) -> CaseHead: ...

    async def message(self, seq: int) -> bytes: ...

    async def last_on(self, subject: str) -> tuple[int, str | None] | None: ...

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]: ...


def readable_filters(agency: str) -> list[str]:
    """What an agency's own consumers deliver: addressed to it, broadcast, its own."""
    return [*inbound_filters(agency), outbound_filter(agency)]


def may_read_filter(agency: str, subject_filter: str) -> bool:
    """Whether every subject ``subject_filter`` matches is one of ``agency``'s: one of its
    :func:`readable_filters`, or one of them narrowed to a single case
    (``lintas.*.all.*.*.<case>``: the case's broadcasts, which the consent gate folds)."""
    if subject_filter in readable_filters(agency):
        return True
    narrowed = parse_filter(subject_filter)
    if narrowed is None or not is_case_id(narrowed.case_id):
        return False
    return narrowed.source == agency or narrowed.target in (agency, BROADCAST)


def may_read(agency: str, subject: str) -> bool:
    """Whether ``subject`` is one of ``agency``'s: from it, to it, or to everyone."""
    addressed = addressing(subject)
    return addressed is not None and (addressed[0] == agency or addressed[1] in (agency, BROADCAST))


def jetstream_api(js: Any) -> tuple[Any, str] | None:
    """The client and the JetStream API prefix behind ``js``, for requests made on the API
    directly, where the context shows them (nats-py's does); else None."""
    nc, prefix = getattr(js, "_nc", None), getattr(js, "_prefix", None)
    if nc is None or not isinstance(prefix, str):
        return None
    return nc, prefix


class DirectReads:
    """The reads, made on the stream itself: for identities allowed to read it.

    nats-py's errors pass through unchanged: each caller names what it was doing (and
    tells a closed client from an unreachable bus) in its own terms."""

    def __init__(self, js: Any, stream: str) -> None:
        self._js = js
        self.stream = stream
        # nats-py's get_msg parses each message's headers with the standard library's
        # email parser, which heads and walks never need: about a third of a head read's
        # client CPU, measured (PERFORMANCE.md). They ask the API themselves, as get_msg
        # would, where the context shows how (nats-py's); anything else goes through it.
        api = jetstream_api(js)
        self._api = (
            (api[0], f"{api[1]}.STREAM.MSG.GET.{stream}", float(getattr(js, "_timeout", 5)))
            if api is not None
            else None
        )

    async def _msg_get(self, request: dict[str, Any]) -> StoredMessage:
        """The stream's leader's answer to ``request`` (``STREAM.MSG.GET``); raises as
        nats-py's ``get_msg`` does (``NotFoundError`` when there is no such message)."""
        if self._api is None:
            raw = await self._js.get_msg(
                self.stream,
                seq=request.get("seq"),
                subject=request.get("last_by_subj") or request.get("next_by_subj"),
                next="next_by_subj" in request,
            )
            if raw.seq is None:  # as get_msg has it; never from a server
                raise nats.js.errors.NotFoundError
            return StoredMessage(int(raw.seq), raw.subject or "", bytes(raw.data or b""))
        nc, subject, timeout = self._api
        try:
            reply = await nc.request(subject, json.dumps(request).encode(), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise nats.js.errors.ServiceUnavailableError from None
        answer = json.loads(reply.data)
        if "error" in answer:
            raise nats.js.errors.APIError.from_error(answer["error"])
        message = answer["message"]
        data = message.get("data")
        return StoredMessage(int(message["seq"]), message["subject"], _unb64(data) if data else b"")

    async def _head_raw(self, case_id: str) -> StoredMessage | None:
        try:
            return await self._msg_get({"last_by_subj": case_filter(case_id)})
        except nats.js.errors.NotFoundError:
            return None

    async def head(self, case_id: str) -> CaseHead:
        raw = await self._head_raw(case_id)
        return CaseHead() if raw is None else _head_of(raw, visible=True)

    async def message(self, seq: int) -> bytes:
        raw = await self._js.get_msg(self.stream, seq=seq)
        return bytes(raw.data or b"")

    async def last_on(self, subject: str) -> tuple[int, str | None] | None:
        try:
            raw = await self._js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        return int(raw.seq or 0), (raw.headers or {}).get("Nats-Msg-Id")

    async def oldest_unacknowledged(self, consumer: str) -> datetime | None:
        """When the oldest message ``consumer`` has not acknowledged was stored (None: it
        has none). Raises nats-py's ``NotFoundError`` when there is no such consumer."""
        return await oldest_unacknowledged(self._js, self.stream, consumer)

    async def stream_state(self) -> StreamState:
        """How much the stream holds. Raises nats-py's ``NotFoundError`` when there is no
        such stream."""
        state = (await self._js.stream_info(self.stream)).state
        return StreamState(
            messages=int(state.messages or 0),
            bytes=int(state.bytes or 0),
            first_seq=int(state.first_seq or 0),
            last_seq=int(state.last_seq or 0),
        )

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        cursor = first
        while cursor <= last and len(found) < limit:
            try:
                # From the stream's leader, not by direct get: any replica answers a direct
                # get from its own store (ADR-31: no read-after-write coherency), and one
                # not yet at ``last`` would say "nothing more" early. The consent gate's
                # walk and a consumer's gap fill would then miss events that are stored.
                raw = await self._msg_get({"seq": cursor, "next_by_subj": subject_filter})
            except nats.js.errors.NotFoundError:
                break
            if raw.seq > last:
                break
            found.append(raw)
            cursor = raw.seq + 1
        return found


async def oldest_unacknowledged(js: Any, stream: str, consumer: str) -> datetime | None:
    """When the oldest message ``consumer`` has not acknowledged was stored: the first
    message after its ack floor on one of its filters (None when it holds nothing)."""
    info = await js.consumer_info(stream, consumer)
    if not (info.num_pending or info.num_ack_pending):
        return None
    config = info.config
    filters = config.filter_subjects or [config.filter_subject or ">"]
    after = (info.ack_floor.stream_seq or 0) + 1
    oldest: Any = None
    for subject in filters:
        try:
            raw = await js.get_msg(stream, seq=after, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            continue
        if raw.seq is not None and (oldest is None or raw.seq < oldest.seq):
            oldest = raw
    if oldest is None or oldest.time is None:
        return None
    stored: datetime = oldest.time
    return stored


def _head_of(raw: StoredMessage, *, visible: bool) -> CaseHead:
    doc = parse_message(raw.data)  # once: for its id and its hash
    event_id = doc.get("id") if visible and isinstance(doc, dict) else None
    if not visible:
        return CaseHead(raw.seq, message_hash(raw.data, doc))
    return CaseHead(raw.seq, message_hash(raw.data, doc), event_id, raw.subject, raw.data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


# -- the service ---------------------------------------------------------------------------


class _Refusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# Matched whole (fullmatch): with re.match, "$" also matches before a trailing newline, and
# a name ending in one breaks the protocol line of the request made with it.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")  # a JetStream durable's name, as a subject token


def _int(request: dict[str, Any], name: str) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Refusal(400, f"{name} must be a non-negative integer")
    return value


class _Turns:
    """One asker's requests: how many are in flight or waiting, and its places."""

    __slots__ = ("count", "places")

    def __init__(self) -> None:
        self.count = 0
        self.places = asyncio.Semaphore(_PER_ASKER)


class ReadService:
    """Answers agencies' reads on ``lintas_read.<agency>.<operation>`` (a queue group:
    run as many as you like). ``start`` subscribes, ``stop`` drains.

    ``verifier``: the openings, assignments and erasures that decide a case's owner and
    its keys count only signed by their source, as the record counts them (without one,
    every one that decodes)."""

    def __init__(self, nc: Any, js: Any, stream: str, *, verifier: Verifier | None = None) -> None:
        self._nc = nc
        self._verifier = verifier
        self._reads = DirectReads(js, stream)
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._turns: dict[str, _Turns] = {}
        """Each asker's requests in flight or waiting their turn (:data:`_PER_ASKER`)."""
        self._ops: dict[str, Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "head": self._op_head,
            "get": self._op_get,
            "last": self._op_last,
            "range": self._op_range,
            "owner": self._op_owner,
            "erase-keys": self._op_erase_keys,
            "revoke-keys": self._op_revoke_keys,
        }
        # Custody of case keys: the only writer of the store, and agencies' reads of it.
        self._custody = Custody(js, verifier, lambda case_id: self._allowed(case_id, 2**63))
        self._ops |= {
            "key": self._custody.read,
            "make-key": self._custody.make,
            "wrap-key": self._custody.wrap,
        }
        self._operator_ops = {
            "oldest-unacked": self._op_oldest_unacked,
            "stream-state": self._op_stream_state,
        }

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(read_subject("*", "*"), queue=_QUEUE, cb=self._on_msg)
        # Started means subscribed: a request sent once this returns finds the service
        # (until the server has the subscription, requests go unanswered, or no responders).
        await self._nc.flush()

    @property
    def is_connected(self) -> bool:
        """Whether its connection is up (its process's readiness)."""
        return bool(self._nc.is_connected)

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):  # the connection may be going too
                await sub.unsubscribe()
        if self._tasks:
            # What is being answered gets its answer; a flood still waiting its turn is
            # not served out first (every asker asks again: ServiceReads does).
            _, left = await asyncio.wait(set(self._tasks), timeout=_STOP_S)
            await end_tasks(left)

    async def _on_msg(self, msg: Any) -> None:
        agency, op = parse_read_subject(msg.subject)
        if msg.reply and not (
            (is_agency_id(agency) or agency == OPERATOR)
            and is_own_reply(agency, msg.reply, imported=is_partner_abroad(agency))
        ):
            # The answer would be published with the platform's rights on a subject the
            # asker chose: its key registry, admission's leases, the JetStream API.
            _log.warning("reads.bad_reply", agency=agency)
            return
        # One task per request: a slow stream read must not hold up everyone else's.
        task = asyncio.get_running_loop().create_task(self._answer(msg, agency, op))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Any, agency: str, op: str) -> None:
        turns = self._turns.get(agency)
        if turns is None:
            turns = self._turns[agency] = _Turns()
        if turns.count >= _PER_ASKER_WAITING:
            _log.warning("reads.too_many_waiting", agency=agency)
            await self._respond(msg, {"error": "too many requests waiting", "code": 429})
            return
        turns.count += 1
        try:
            async with turns.places, self._slots:
                await self._answer_now(msg, agency, op)
        finally:
            turns.count -= 1
            if turns.count == 0:
                del self._turns[agency]

    @staticmethod
    async def _respond(msg: Any, answer: dict[str, Any]) -> None:
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):  # the asker is gone: it asks again
                await msg.respond(json.dumps(answer).encode())

    async def _answer_now(self, msg: Any, agency: str, op: str) -> None:
        try:
            ops = self._operator_ops if agency == OPERATOR else self._ops
            if not (is_agency_id(agency) or agency == OPERATOR) or op not in ops:
                raise _Refusal(400, f"no operation {op!r} for {agency!r}")
            try:
                request = json.loads(msg.data or b"{}")
            except ValueError:
                raise _Refusal(400, "the request is not JSON") from None
            if not isinstance(request, dict):
                raise _Refusal(400, "the request is not a JSON object")
            with bus_errors(f"reading {self._reads.stream} for {agency}"):
                answer = await ops[op](agency, request)
        except (_Refusal, CustodyRefused) as refusal:
            answer = {"error": str(refusal), "code": refusal.code}
        except BusUnavailable as exc:
            answer = {"error": str(exc), "code": 503}
        except Exception as exc:  # a bug here must not kill the service for everyone
            _log.exception("reads.failed", agency=agency, op=op)
            answer = {"error": f"the read service failed ({type(exc).__name__})", "code": 500}
        await self._respond(msg, answer)

    async def _op_head(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        case_id = request.get("case")
        if not isinstance(case_id, str) or not is_case_id(case_id):
            raise _Refusal(400, "case must be a lintas case id")
        raw = await self._reads._head_raw(case_id)
        if raw is None:
            return {"seq": 0, "hash": None, "id": None}
        head = _head_of(raw, visible=may_read(agency, raw.subject or ""))
        answer: dict[str, Any] = {"seq": head.seq, "hash": head.hash, "id": head.event_id}
        if head.subject:  # only what the agency may read: its own, its inbound, broadcasts
            answer |= {"subject": head.subject, "data": _b64(head.body)}
        return answer

    async def _op_get(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        seq = _int(request, "seq")
        try:
            raw = await self._reads._js.get_msg(self._reads.stream, seq=seq)
        except nats.js.errors.NotFoundError:
            raise _Refusal(404, f"no message at seq {seq}") from None
        if not may_read(agency, raw.subject or ""):
            raise _Refusal(403, f"seq {seq} is not addressed to {agency}")
        return {"seq": seq, "subject": raw.subject, "data": _b64(bytes(raw.data or b""))}

    async def _op_last(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        subject = request.get("subject")
        if not isinstance(subject, str) or "*" in subject or ">" in subject:
            raise _Refusal(400, "subject must be one literal subject")
        if not may_read(agency, subject):
            raise _Refusal(403, f"{subject} is not one of {agency}'s subjects")
        found = await self._reads.last_on(subject)
        if found is None:
            return {"seq": 0, "msg_id": None}
        return {"seq": found[0], "msg_id": found[1]}

    async def _op_range(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        subject_filter = request.get("filter")
        if not isinstance(subject_filter, str) or not may_read_filter(agency, subject_filter):
            raise _Refusal(403, f"{subject_filter!r} is not one of {agency}'s filters")
        first, last, limit = (_int(request, n) for n in ("first", "last", "limit"))
        assert isinstance(subject_filter, str)
        messages: list[dict[str, Any]] = []
        size = 0
        cursor = first
        while cursor <= last and len(messages) < limit and size < _MAX_ANSWER_BYTES:
            batch = await self._reads.between(subject_filter, cursor, last, 1)
            if not batch:
                break
            found = batch[0]
            messages.append({"seq": found.seq, "subject": found.subject, "data": _b64(found.data)})
            size += len(found.data) + len(found.subject)
            cursor = found.seq + 1
        truncated = size >= _MAX_ANSWER_BYTES and cursor <= last and len(messages) < limit
        return {"messages": messages, "complete": not truncated}

    async def _op_oldest_unacked(self, who: str, request: dict[str, Any]) -> dict[str, Any]:
        """A consumer's lag, for the operator: a time, never anything of the message."""
        consumer = request.get("consumer")
        if not isinstance(consumer, str) or not _NAME.fullmatch(consumer):
            raise _Refusal(400, "consumer must be a durable consumer's name")
        try:
            stored = await self._reads.oldest_unacknowledged(consumer)
        except nats.js.errors.NotFoundError:
            raise _Refusal(404, f"no consumer {consumer} on {self._reads.stream}") from None
        return {"stored": stored.isoformat() if stored is not None else None}

    async def _op_stream_state(self, who: str, request: dict[str, Any]) -> dict[str, Any]:
        """How much the stream holds, for the operator: four numbers, and no subject (a
        request names nothing: there is no filter to ask with)."""
        if request:
            raise _Refusal(400, "stream-state takes no arguments")
        try:
            state = await self._reads.stream_state()
        except nats.js.errors.NotFoundError:
            raise _Refusal(404, f"no stream {self._reads.stream}") from None
        return {
            "messages": state.messages,
            "bytes": state.bytes,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
        }

    # -- the case key store: what the log calls for, done as the platform ------------------

    async def _case_events(self, subject_filter: str, last: int) -> list[tuple[int, Event]]:
        """The case's events that keep their contracts (quarantined everywhere else), up
        to ``last``, each only if it holds its source's signature (with a verifier)."""
        events = []
        asked = time.monotonic()  # a key id unknown then is learned by one read, for the walk
        cursor = 1
        while cursor <= last:
            batch = await self._reads.between(subject_filter, cursor, last, 256)
            if not batch:
                break
            for found in batch:
                try:
                    event = decode(found.data, subject=found.subject)
                    if self._verifier is not None:
                        await self._verifier.check(found.data, event.envelope, asked=asked)
                except (ContractError, SignatureError):
                    continue
                events.append((found.seq, event))
            cursor = batch[-1].seq + 1
        return events

    async def _allowed(
        self, case_id: str, last: int
    ) -> list[tuple[int, Event, authority.CaseState]]:
        """The case's events up to ``last`` the authority policy allows, each with the
        case's state after it: what admission admits and every reader folds. What is on
        the log without that (written around admission) calls for nothing here."""
        return list(authority.allowed(await self._case_events(case_filter(case_id), last)))

    async def _op_owner(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        """The case's owner on the whole log up to ``upto``: only an agency id."""
        allowed = await self._allowed(_case_of(request), _int(request, "upto"))
        return {"owner": allowed[-1][2].owner if allowed else None}

    async def _op_erase_keys(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        """Erase a case's data keys, if a ``case.erased`` the authority policy allows (its
        owner's) is on the log: the erasure the record keeps."""
        case_id = _case_of(request)
        erasures = await self._reads.between(broadcast_filter(case_id, "case.erased"), 1, 2**63, 1)
        if not erasures:
            raise _Refusal(409, f"case {case_id} has no case.erased on the log: its keys stay")
        allowed = await self._allowed(case_id, 2**63)
        if not any(event.type == "case.erased" for _, event, _ in allowed):
            owner = allowed[-1][2].owner if allowed else None
            raise _Refusal(403, f"case {case_id} was not erased by its owner ({owner})")
        try:
            erased = await erase_case_keys(self._reads._js, case_id)
        except NoKeyStore as exc:
            raise _Refusal(409, str(exc)) from None
        _log.info("reads.keys_erased", agency=agency, case_id=case_id, entries=erased)
        return {"erased": erased}

    async def _op_revoke_keys(self, agency: str, request: dict[str, Any]) -> dict[str, Any]:
        """Erase the wraps of the agencies the withdrawal at ``seq`` no longer covers, if
        the authority policy allows that withdrawal (signed, by whoever recorded the
        consent or the case's owner)."""
        case_id, seq = _case_of(request), _int(request, "seq")
        try:
            raw = await self._reads._js.get_msg(self._reads.stream, seq=seq)
        except nats.js.errors.NotFoundError:
            raise _Refusal(404, f"no message at seq {seq}") from None
        if not matches(broadcast_filter(case_id, "consent.withdrawn"), raw.subject or ""):
            raise _Refusal(409, f"seq {seq} is no consent.withdrawn of case {case_id}")
        allowed = await self._allowed(case_id, seq)
        withdrawal = next((e for at, e, _ in allowed if at == seq), None)
        if withdrawal is None:
            raise _Refusal(
                403,
                f"the consent.withdrawn at seq {seq} of case {case_id} is not one the "
                "authority policy allows (signed by whoever recorded the consent, or the "
                "case's owner): no key is revoked for it",
            )
        book = gate.fold_all((at, event) for at, event, _ in allowed)
        lost = gate.lost_readers(book, seq, withdrawal.source)
        revoked = await revoke_case_keys(self._reads._js, case_id, lost) if lost else []
        _log.info("reads.keys_revoked", agency=agency, case_id=case_id, revoked=revoked)
        return {"revoked": revoked}


def _count(answer: dict[str, Any], name: str) -> int:
    value = answer.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is no count")
    return value


def _case_of(request: dict[str, Any]) -> str:
    case_id = request.get("case")
    if not isinstance(case_id, str) or not is_case_id(case_id):
        raise _Refusal(400, "case must be a lintas case id")
    return case_id


# -- an agency's side ------------------------------------------------------------------------


class ServiceReads:
    """The reads, asked of the read service as ``agency`` (or as the :data:`OPERATOR`,
    which the service answers :meth:`oldest_unacknowledged` and :meth:`stream_state`
    only)."""

    def __init__(self, nc: Any, agency: str, *, timeout: float = 5.0) -> None:
        if not (is_agency_id(agency) or agency == OPERATOR):
            raise ValueError(f"{agency!r} is not an agency id, nor the operator")
        self._nc = nc
        self.agency = agency
        self.timeout = timeout

    async def _request(self, subject: str, payload: bytes) -> Any:
        """The service's reply. Every operation may be asked twice (reads, and erasures
        that are done once done), so a request is asked again where another instance may
        answer, within twice ``timeout`` in all (two full tries, as long as it ever took):

        * while none is subscribed (they are reconnecting, after the bus came back), every
          so often for up to ``timeout``;
        * while no answer has come, a copy after 0.25 s, then after growing pauses (at most
          1 s), each copy waiting up to ``timeout`` beside the earlier ones, the first
          answer taken. The server hands each copy to any instance of the queue group: one
          that is frozen (stopped, swapping, in a long GC) but still connected gets its
          share until the server's pings give up on it, minutes later. Waiting for it would
          stall half the requests; hedging lets another instance answer, and a slow but
          healthy instance still answers the first copy."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + 2 * self.timeout
        asked: set[asyncio.Future[Any]] = set()
        pause = _HEDGE_FIRST_S
        last: Exception = nats.errors.TimeoutError()
        try:
            while (left := deadline - loop.time()) > 0:
                copy = self._nc.request(subject, payload, timeout=min(self.timeout, left))
                asked.add(asyncio.ensure_future(copy))
                wake = loop.time() + min(pause, left)
                pause = min(pause * 2, _HEDGE_MAX_S)
                while asked and (wait := wake - loop.time()) > 0:
                    done, asked = await asyncio.wait(
                        asked, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        try:
                            return task.result()
                        except nats.errors.NoRespondersError as exc:
                            if loop.time() + _NO_RESPONDERS_WAIT_S >= start + self.timeout:
                                raise
                            last = exc
                            wake = min(wake, loop.time() + _NO_RESPONDERS_WAIT_S)
                        except nats.errors.TimeoutError as exc:
                            last = exc
                if not asked:  # each copy failed at once: nobody there yet
                    await asyncio.sleep(max(0.0, wake - loop.time()))
            raise last
        finally:
            for task in asked:
                task.cancel()  # nats-py forgets a cancelled request's inbox

    async def _ask(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        subject = read_subject(self.agency, op)
        try:
            with bus_errors(f"asking the read service ({subject})", self._nc):
                reply = await self._request(subject, json.dumps(request).encode())
        except BusUnavailable as exc:
            if isinstance(exc.__cause__, nats.errors.NoRespondersError):
                raise BusUnavailable(
                    f"no read service answers on {subject}: the platform runs it (`lintas up`, "
                    "`lintas run reads`, or any embedded bus)"
                ) from None
            raise
        try:
            answer = json.loads(reply.data)
        except ValueError:
            raise BusUnavailable(f"the read service answered {subject} with non-JSON") from None
        if not isinstance(answer, dict):
            raise BusUnavailable(f"the read service answered {subject} with {answer!r}")
        code = answer.get("code")
        if code is None:
            return answer
        message = f"read service: {answer.get('error')}"
        if code in (503, 500, 429):
            raise BusUnavailable(message)
        raise ReadRefused(message)

    async def head(self, case_id: str) -> CaseHead:
        answer = await self._ask("head", {"case": case_id})
        return CaseHead(
            int(answer["seq"]),
            answer.get("hash"),
            answer.get("id"),
            answer.get("subject") or "",
            _unb64(answer["data"]) if answer.get("data") else b"",
        )

    async def message(self, seq: int) -> bytes:
        answer = await self._ask("get", {"seq": seq})
        return _unb64(answer["data"])

    async def last_on(self, subject: str) -> tuple[int, str | None] | None:
        answer = await self._ask("last", {"subject": subject})
        seq = int(answer["seq"])
        return None if seq == 0 else (seq, answer.get("msg_id"))

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]:
        found: list[StoredMessage] = []
        cursor = first
        while cursor <= last and len(found) < limit:
            answer = await self._ask(
                "range",
                {
                    "filter": subject_filter,
                    "first": cursor,
                    "last": last,
                    "limit": limit - len(found),
                },
            )
            messages: Sequence[dict[str, Any]] = answer.get("messages") or []
            for item in messages:
                found.append(StoredMessage(int(item["seq"]), item["subject"], _unb64(item["data"])))
            if answer.get("complete", True) or not messages:
                break
            cursor = found[-1].seq + 1
        return found

    async def oldest_unacknowledged(self, consumer: str) -> datetime | None:
        """When the oldest message ``consumer`` has not acknowledged was stored (None: it
        has none)."""
        answer = await self._ask("oldest-unacked", {"consumer": consumer})
        stored = answer.get("stored")
        return datetime.fromisoformat(stored) if isinstance(stored, str) else None

    async def stream_state(self) -> StreamState:
        """How much the stream holds (:class:`ReadRefused` when there is no stream)."""
        answer = await self._ask("stream-state", {})
        try:
            return StreamState(
                messages=_count(answer, "messages"),
                bytes=_count(answer, "bytes"),
                first_seq=_count(answer, "first_seq"),
                last_seq=_count(answer, "last_seq"),
            )
        except (TypeError, ValueError):
            raise BusUnavailable(f"the read service answered {answer!r} to stream-state") from None

    async def owner(self, case_id: str, upto: int) -> str | None:
        """The case's owner as its whole log says, up to sequence ``upto``."""
        answer = await self._ask("owner", {"case": case_id, "upto": upto})
        owner = answer.get("owner")
        return owner if isinstance(owner, str) else None

    async def erase_keys(self, case_id: str) -> int:
        """Have the platform erase the case's data keys (it checks the owner's
        ``case.erased`` is on the log); return how many entries it erased."""
        answer = await self._ask("erase-keys", {"case": case_id})
        return int(answer.get("erased", 0))

    async def case_key(self, key: str) -> bytes | None:
        """One entry of the case key store: a case marker, or this agency's own wrap."""
        answer = await self._ask("key", {"key": key})
        value = answer.get("value")
        return _unb64(value) if isinstance(value, str) else None

    async def make_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> str | None:
        """Have the platform store the case's first data key (``wrap``: this agency's own);
        the agency that made the case's key (another, if one came first)."""
        answer = await self._ask("make-key", {"case": case_id, "gen": gen, "wrap": wrap})
        creator = answer.get("creator")
        return creator if isinstance(creator, str) else None

    async def wrap_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> bool:
        """Have the platform store a wrap this agency made for another, as a consent allows
        (:class:`ReadRefused` if the log does not); False if it is stored already."""
        answer = await self._ask("wrap-key", {"case": case_id, "gen": gen, "wrap": wrap})
        return bool(answer.get("wrapped"))

    async def revoke_keys(self, case_id: str, seq: int) -> list[str]:
        """Have the platform erase the wraps the withdrawal at ``seq`` ends."""
        answer = await self._ask("revoke-keys", {"case": case_id, "seq": seq})
        return [str(a) for a in answer.get("revoked", [])]
