"""The admission service: the only writer of the event log.

Each intake partition has one durable consumer (``admission-<p>``) and, at any time, one
writer: the instance holding the partition's lease in ``LINTAS_ADMISSION_LEASES`` (a key
renewed every third of its lifetime; a crashed instance's lease ages out and another
instance takes the partition). The writer pulls the partition's messages in order and, for
each: judges it (:mod:`.judge`), writes it to ``LINTAS`` if admitted, acknowledges it on
the intake, and answers the sender.

Nothing is lost and nothing admitted twice, whatever crashes where:

* a message is acknowledged on the intake only after it is answered: a crash before that
  redelivers it, to this or the next writer, which finds the event already on the log
  (its id, with the same content) and answers as before;
* an id is reserved in ``LINTAS_ADMITTED_IDS`` (create-only) before the write, so the same
  id in another case is refused; a reservation whose write never happened (a crash in
  between) is found again for the same case and completed;
* the write itself carries ``Nats-Msg-Id`` and ``Nats-Expected-Last-Subject-Sequence``
  for the case: two writers of one partition (a lease lost without noticing) cannot fork
  a case or store an event twice. The loser reads the case again and judges again.

Every refusal is one answer to the sender and one log line (codes and ids, nothing
personal); nothing refused enters the log.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
import structlog

from lintas.admission.cases import Cases, after
from lintas.admission.judge import Verdict, decide, examine
from lintas.contracts import case_filter
from lintas.contracts.admission import (
    ADMITTED_AT_HEADER,
    ID_TAKEN,
    REPLY_HEADER,
    Answer,
    Head,
    Receipt,
)
from lintas.contracts.subjects import parse_intake_subject
from lintas.infra.keys.signing import Signer, Verifier
from lintas.infra.nats.access import is_own_reply
from lintas.infra.nats.outage import end_tasks
from lintas.infra.nats.topology import (
    ADMISSION_LEASE_S,
    ADMISSION_LEASES_BUCKET,
    ADMITTED_IDS_BUCKET,
    admission_consumer,
    intake_stream,
)
from lintas.infra.observability.tracing import envelope_headers
from lintas.infra.reads import DirectReads
from lintas.infra.settings import Settings

__all__ = ["AdmissionService"]

_log = structlog.get_logger("lintas.admission")

_WRONG_LAST_SEQUENCE = 10071
_UNDECLARED_POLL_S = 0.2
_RELEASE_S = 2.0


class AdmissionService:
    """Admits what agencies send, as one instance among any number."""

    def __init__(
        self,
        nc: Any,
        js: Any,
        settings: Settings,
        *,
        verifier: Verifier,
        signer: Signer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        instance: str | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._settings = settings
        self._verifier = verifier
        self._signer = signer
        self._clock = clock
        self.instance = instance or uuid.uuid4().hex[:12]
        self._cases = Cases(DirectReads(js, settings.stream), verifier)
        self._tasks: list[asyncio.Task[None]] = []
        self.held: set[int] = set()
        """The partitions this instance writes now."""
        self._ids: Any = None
        self._leases: Any = None
        self._tried: list[asyncio.Event] = []
        self.admissions = 0
        self.refusals: collections.Counter[str] = collections.Counter()
        """Answers since it started, refusals by code: its metrics (lintas.admission.metrics)."""

    @property
    def nc(self) -> Any:
        """The connection it writes and answers on (its health is admission's)."""
        return self._nc

    async def start(self) -> None:
        """Start writing, and return once each partition was tried: taken if its lease was
        free, else taken as soon as it is, and as soon as the intake is declared (a process
        may start admission before it declares the platform)."""
        partitions = range(self._settings.admission_partitions)
        self._tried = [asyncio.Event() for _ in partitions]
        self._tasks = [
            asyncio.create_task(self._partition(p), name=f"admission-{p}") for p in partitions
        ]
        await asyncio.gather(*(tried.wait() for tried in self._tried))

    async def _buckets(self) -> None:
        if self._ids is None:
            self._ids = await self._js.key_value(ADMITTED_IDS_BUCKET)
        if self._leases is None:
            self._leases = await self._js.key_value(ADMISSION_LEASES_BUCKET)

    async def stop(self) -> None:
        # Cancelled again until they end: a partition's fetch, or its lease's renewal, can
        # lose a cancellation (lintas.infra.nats.outage.end_tasks), and run on.
        await end_tasks(self._tasks)
        self._tasks = []
        held, self.held = set(self.held), set()
        if held and self._nc.is_connected:
            # Side by side and bounded: each release is a round trip, and a stopping
            # instance must not hold its supervisor up (a lease not released ages out).
            await asyncio.gather(*(self._release(p) for p in held))

    # -- leases --------------------------------------------------------------------------

    async def _acquire(self, partition: int) -> int | None:
        try:
            return int(await self._leases.create(str(partition), self.instance.encode()))
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:  # still ours, from before a failure of this instance's own
            entry = await self._leases.get(str(partition))
        except nats.js.errors.KeyNotFoundError:
            return None
        if bytes(entry.value or b"") == self.instance.encode():
            return await self._renew(partition, int(entry.revision or 0))
        return None

    async def _renew(self, partition: int, revision: int) -> int | None:
        try:
            return int(
                await self._leases.update(str(partition), self.instance.encode(), last=revision)
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def _release(self, partition: int) -> None:
        try:
            await asyncio.wait_for(self._leases.delete(str(partition)), _RELEASE_S)
        except Exception:  # best effort: the lease ages out anyway
            _log.debug("admission.release_failed", partition=partition)

    async def _hold(self, partition: int, revision: int) -> None:
        """Renew the partition's lease twice per renewal period until it is lost (another
        instance took it: this one had stalled past the lease) or cannot be renewed."""
        renew_every = ADMISSION_LEASE_S / 3
        held: int | None = revision
        while held is not None:
            await asyncio.sleep(renew_every / 2)  # a period, not a wait for an event
            held = await self._renew(partition, held)

    async def _partition(self, partition: int) -> None:
        """Hold the partition's lease when free, and write while holding it."""
        spec = admission_consumer(partition)
        renew_every = ADMISSION_LEASE_S / 3
        while True:
            try:
                await self._buckets()
                revision = await self._acquire(partition)
                self._tried[partition].set()
                if revision is None:
                    await asyncio.sleep(renew_every)  # poll: the holder may be gone
                    continue
                self.held.add(partition)
                _log.info("admission.partition_taken", partition=partition, instance=self.instance)
                sub = await self._js.pull_subscribe_bind(
                    spec.name, stream=intake_stream(self._settings)
                )
                # Renewed beside the work, not between batches: a batch that takes longer
                # than the lease (an overloaded instance) must not lose the partition, and
                # have every waiting sender time out and send again.
                holding = asyncio.create_task(self._hold(partition, revision))
                try:
                    while not holding.done():
                        try:
                            msgs = await sub.fetch(64, timeout=renew_every)
                        except (TimeoutError, nats.errors.TimeoutError):
                            msgs = []
                        await self._admit_batch(msgs, time.monotonic())
                finally:
                    await end_tasks([holding])
                    await sub.unsubscribe()
                self.held.discard(partition)
                _log.warning("admission.partition_lost", partition=partition)
            except asyncio.CancelledError:
                raise
            except nats.js.errors.NotFoundError:
                # Not declared yet (lintas up declares right after starting its services).
                self._tried[partition].set()
                self.held.discard(partition)
                _log.debug("admission.not_declared", partition=partition)
                await asyncio.sleep(_UNDECLARED_POLL_S)
            except Exception as exc:  # the bus went away: try again, never give up
                self._tried[partition].set()
                self.held.discard(partition)
                _log.warning(
                    "admission.partition_failed", partition=partition, error=type(exc).__name__
                )
                await asyncio.sleep(renew_every)

    # -- one message ---------------------------------------------------------------------

    async def _admit_batch(self, msgs: list[Any], fetched: float) -> None:
        """Each case's messages in the order they came, the cases side by side: a case is
        still decided by one writer, one message after the other, while the round trips
        of different cases (id reservations, writes) overlap.

        ``fetched``: when the batch came (:func:`time.monotonic`). Every message of it was on
        the intake by then, so one registry read begun since serves every key id the batch
        lacks (:meth:`~lintas.infra.keys.signing.Verifier.check`'s ``asked``): made-up key
        ids hold the batch up once, not once each, one after the other within a case, while
        every other case of the partition waits for the next batch."""
        by_case: dict[str, list[Any]] = {}
        for msg in msgs:
            where = parse_intake_subject(msg.subject)
            by_case.setdefault(where[1] if where else msg.subject, []).append(msg)
        if len(by_case) == 1:
            await self._admit_in_order(msgs, fetched)
            return
        done = await asyncio.gather(
            *(self._admit_in_order(each, fetched) for each in by_case.values()),
            return_exceptions=True,
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _admit_in_order(self, msgs: list[Any], fetched: float) -> None:
        for msg in msgs:
            await self._admit(msg, fetched)

    async def _admit(self, msg: Any, fetched: float) -> None:
        where = parse_intake_subject(msg.subject)
        reply = (msg.headers or {}).get(REPLY_HEADER)
        if where is None:  # the stream takes only intake subjects: never
            await msg.term()
            return
        agency, case_id = where
        if not reply or not is_own_reply(agency, reply):
            # No one to answer: a sender must say where its answer goes, inside its own
            # inbox (an answer must not land in another agency's inbox, nor anywhere else
            # admission may write; a header that is no subject would cut its connection).
            _log.info("admission.refused", code="bad_reply", agency=agency)
            self.refusals["bad_reply"] += 1
            await msg.ack()
            return
        try:
            answer = await self._decide(bytes(msg.data), agency, case_id, asked=fetched)
        except Exception as exc:  # the bus, mostly: the message comes again
            _log.warning("admission.deferred", agency=agency, error=type(exc).__name__)
            await msg.nak(delay=1)
            return
        await self._nc.publish(reply, answer.model_dump_json(exclude_none=True).encode())
        await msg.ack()

    async def _decide(
        self, raw: bytes, agency: str, case_id: str, *, asked: float | None = None
    ) -> Answer:
        examined = await examine(raw, agency, case_id, self._verifier, asked=asked)
        if examined.refusal is not None:  # before the case is read: junk costs no read
            return self._refused(Verdict(examined.event, refusal=examined.refusal), agency, None)
        for _ in range(3):
            state = await self._cases.get(case_id)
            verdict = decide(examined, state, self._clock())
            if verdict.refusal is not None:
                if verdict.refusal.code == "chain_moved" and await self._cases.stale(case_id):
                    continue  # what this instance held was old (it took the partition over)
                return self._refused(verdict, agency, state.head)
            assert verdict.event is not None
            assert verdict.hash is not None
            if verdict.admitted_before is not None:
                seq, digest = verdict.admitted_before
                at = await self._admitted_at(seq)
                return self._admitted(verdict, seq, digest, at, duplicate=True)
            taken = await self._reserve(verdict.event.id, case_id)
            if taken:
                return self._refused(Verdict(verdict.event, refusal=ID_TAKEN), agency, state.head)
            at = self._clock().isoformat()
            written = await self._write(raw, verdict, state.head.seq, at)
            if written is None:  # another writer got there first: read the case again
                self._cases.forget(case_id)
                continue
            self._cases.put(case_id, after(state, verdict.event, written, verdict.hash))
            return self._admitted(verdict, written, verdict.hash, at)
        self._cases.forget(case_id)
        raise RuntimeError(f"case {case_id} kept moving under admission")

    async def _reserve(self, event_id: str, case_id: str) -> bool:
        """Reserve the id for the case; whether another case holds it already."""
        try:
            await self._ids.create(event_id, case_id.encode())
            return False
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self._ids.get(event_id)
            return bytes(entry.value or b"").decode() != case_id

    async def _admitted_at(self, seq: int) -> str:
        """When the event stored at ``seq`` was admitted, as its receipt said: the time
        written with it, or (stored before admission wrote one) when the stream stored it."""
        stored = await self._js.get_msg(self._settings.stream, seq=seq)
        written = (stored.headers or {}).get(ADMITTED_AT_HEADER)
        if written:
            return str(written)
        at: datetime = stored.time or self._clock()
        return at.isoformat()

    async def _write(self, raw: bytes, verdict: Verdict, head_seq: int, at: str) -> int | None:
        event = verdict.event
        assert event is not None
        try:
            ack = await self._js.publish(
                event.envelope.nats_subject,
                raw,
                stream=self._settings.stream,
                headers={
                    "Nats-Msg-Id": event.id,
                    ADMITTED_AT_HEADER: at,
                    "Nats-Expected-Last-Subject-Sequence": str(head_seq),
                    "Nats-Expected-Last-Subject-Sequence-Subject": case_filter(event.case_id),
                    **envelope_headers(event.envelope),
                },
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    def _admitted(
        self, verdict: Verdict, seq: int, digest: str, at: str, *, duplicate: bool = False
    ) -> Answer:
        """The answer and its receipt; a duplicate's is the first admission's own (dated as
        stored), so the platform never signs two receipts of one admission that disagree."""
        event = verdict.event
        assert event is not None
        doc = self._signer.sign_document(
            {
                "event_id": event.id,
                "case_id": event.case_id,
                "source": event.source,
                "seq": seq,
                "hash": digest,
                "admitted_at": at,
            }
        )
        _log.info(
            "admission.admitted", event_id=event.id, seq=seq, type=event.type, duplicate=duplicate
        )
        self.admissions += 1
        return Answer(
            admitted=True,
            event_id=event.id,
            seq=seq,
            hash=digest,
            receipt=Receipt.model_validate(doc),
            duplicate=duplicate,
        )

    def _refused(self, verdict: Verdict, agency: str, head: Head | None) -> Answer:
        refusal = verdict.refusal
        assert refusal is not None
        event_id = verdict.event.id if verdict.event is not None else None
        _log.info("admission.refused", code=refusal.code, agency=agency, event_id=event_id)
        self.refusals[refusal.code] += 1
        return Answer.refused(
            refusal,
            event_id,
            head if refusal.code == "chain_moved" else None,
            stored=verdict.own,
        )
