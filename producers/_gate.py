"""What the Publisher does for a child's data, around each publish.

Before (every attempt, against the case's head, so the decision holds atomically with the
publish: a consent withdrawn after the head moved it, and JetStream refuses the publish)::

    consent.*, case.erased and    must be addressed to 'all' (every agency's gate needs them)
      case.assigned
    the gate                      consent covering scope and target, nothing personal for an
                                  erased case (lintas.contracts.gate)
    minimisation                  only declared fields to a partner abroad
    case.erased                   only by the case's owner
    case.assigned                 only by the case's owner or the coordinator (KemenP2MI)
    consent.withdrawn             'notified' = every agency that received the case's data
    sealing                       plaintext personal fields sealed with the case's data key
                                  (made now, for this agency alone, if the case has none)

After the event is stored (again on a retried publish, so a retry completes it)::

    consent.recorded / overridden   the data key wrapped for the agencies it covers, each
                                    wrap bound to this consent and signed (stored by the
                                    platform's custody service once it checks the log)
    consent.withdrawn               the wraps of agencies it no longer covers erased
    case.erased                     every data key of the case erased

The case's consent book is folded from its broadcast events, read from the stream and
cached per case: up to the head a publish was decided on, then past the event it stored
(which JetStream put right after that head). A publish reads the stream for it only when
more than the head came in since; the head itself is already at hand.

Where it reads, and who changes the key store, follows the Publisher's ``reads``:

* none (this client reads the stream: the platform, tests, a bus without permissions):
  the case's events on the stream, and the key store's erasures and revocations made
  here;
* :class:`~lintas.infra.reads.ServiceReads` (an agency on a bus with permissions): what
  the read service discloses to the agency, no more. The consent book needs only the
  case's broadcasts, which every agency may read, and the head's body comes only when the
  head is one of them (or the agency's own, or addressed to it); a head the agency may not
  read is no broadcast, so it changes no book. The owner check of ``case.erased`` and
  ``case.assigned`` asks the read service, which sees the whole log; the ``notified`` list
  of ``consent.withdrawn`` sees the case's events the agency may read.
  Erasing and revoking keys are asked of the read service, which does them as the
  platform once it finds on the log the event that calls for them.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import structlog

from lintas.contracts import (
    BROADCAST,
    ContractError,
    Event,
    GateRefused,
    SignatureError,
    case_filter,
    decode,
    encode,
    parse_message,
)
from lintas.contracts import gate as gate_rules
from lintas.contracts.agencies import is_partner_abroad
from lintas.contracts.families import case, consent
from lintas.contracts.subjects import broadcast_filter, is_broadcast_subject
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import Verifier
from lintas.infra.privacy.casekeys import (
    CaseKeys,
    NoExchangeKey,
    NotAKeyHolder,
    erase_case_keys,
    revoke_case_keys,
)
from lintas.infra.privacy.sealing import seal_data
from lintas.infra.reads import DirectReads, ReadRefused, ServiceReads, StreamReads
from lintas.producers._wire import CaseHead

__all__ = ["NotAuthorised", "PublishGate"]

_log = structlog.get_logger("lintas.producer")

_BROADCAST_ONLY = gate_rules.CONSENT_TYPES | {"case.erased"}
# What grants or names the owner counts only signed (lintas.contracts.gate); what restricts
# (a withdrawal, an erasure) counts as soon as it decodes.
_VOUCHED = gate_rules.GRANTING | gate_rules.NAMING_OWNER


class NotAuthorised(GateRefused):
    """An agency that may not do this for the case: erase it, unless it owns it; assign
    it, unless it owns it or is the coordinator."""


class PublishGate:
    """The consent gate, minimisation, sealing and key handling of one agency's Publisher.

    ``keys`` is the agency's access to the case key store; without it, the Publisher can
    publish nothing that carries or grants a child's data (it says so)."""

    def __init__(
        self,
        js: Any,
        agency: str,
        stream: str,
        keys: CaseKeys | None,
        *,
        reads: StreamReads | None = None,
        verifier: Verifier | None = None,
        cached_cases: int = 4096,
    ) -> None:
        if keys is not None and keys.agency != agency:
            raise ValueError(f"{keys.agency}'s case keys cannot serve {agency}'s Publisher")
        self._js = js
        self.agency = agency
        self.stream = stream
        self.keys = keys
        self._reads: StreamReads = reads or DirectReads(js, stream)
        # Through the read service: only what it discloses, and key erasure asked of it.
        self._service = reads if isinstance(reads, ServiceReads) else None
        self._verifier = verifier
        self._cached = cached_cases
        # Per case: its book, the sequence it was folded to, and the verifier's generation
        # when the fold began (a consent ignored for want of a key learned since counts).
        self._books: OrderedDict[str, tuple[gate_rules.ConsentBook, int, int]] = OrderedDict()

    # -- reading the case ------------------------------------------------------------------

    async def _read(
        self,
        body: bytes,
        subject: str,
        seq: int,
        *,
        vouched: bool = True,
        asked: float | None = None,
    ) -> Event | None:
        """The stored event, or None where no gate may count it: it breaks its contract
        (every consumer quarantines it), or (``vouched``, with a ``verifier``) it would
        grant or authorise without its source's valid signature (a key id the verifier
        lacks, it looks up afresh first, as consumers do: ``asked``, when the walk it is
        part of began, see :meth:`~lintas.infra.keys.signing.Verifier.check`). A
        restriction still counts, so that a key missing here never lets data through."""
        try:
            doc = parse_message(body)
            event = decode(body, subject=subject, parsed=doc)
        except ContractError:
            return None
        if not vouched or self._verifier is None or event.type not in _VOUCHED:
            return event
        try:
            await self._verifier.check(body, event.envelope, parsed=doc, asked=asked)
        except SignatureError as exc:
            _log.warning(
                "gate.unsigned_event_ignored",
                agency=self.agency,
                event_type=event.type,
                case_id=event.case_id,
                stream_seq=seq,
                reason=str(exc),
            )
            return None
        return event

    async def _folded(
        self,
        book: gate_rules.ConsentBook,
        seq: int,
        body: bytes,
        subject: str,
        asked: float | None = None,
    ) -> gate_rules.ConsentBook:
        if not is_broadcast_subject(subject):
            return book  # only broadcast consents count, and only they are read
        event = await self._read(body, subject, seq, asked=asked)
        return book if event is None else gate_rules.fold(book, event, seq)

    async def _walk(
        self, subject_filter: str, first: int, last: int, what: str
    ) -> AsyncIterator[tuple[int, bytes, str]]:
        cursor = first
        while cursor <= last:
            with bus_errors(what):
                batch = await self._reads.between(subject_filter, cursor, last, 256)
            if not batch:
                return
            for found in batch:
                if found.seq > last or found.seq < cursor:
                    return
                yield found.seq, found.data, found.subject
            cursor = batch[-1].seq + 1

    async def book(
        self, case_id: str, head: int, what: str, last: CaseHead | None = None
    ) -> gate_rules.ConsentBook:
        """The case's consent book as of stream sequence ``head`` (its last event, ``last``
        when at hand)."""
        generation = self._generation()
        asked = time.monotonic()  # a key id unknown then is learned by one read, for the walk
        book, read, folded_in = self._books.pop(case_id, (gate_rules.ConsentBook(), 0, generation))
        if read > head or folded_in != generation:
            # read > head cannot happen on an append-only stream: start over, not guess.
            book, read = gate_rules.ConsentBook(), 0
        # Only the stream's order says nothing else is new: a head's ``prevhash`` is what
        # its publisher wrote, which no consumer checks and anyone may forge; nor are its
        # stored expected-sequence headers proof (PERFORMANCE.md: tried and dropped).
        if last is not None and last.seq == head and read == head - 1:
            # Only the head is new.
            book = await self._folded(book, head, last.body, last.subject, asked)
        else:
            async for seq, body, subject in self._walk(
                broadcast_filter(case_id),
                read + 1,
                head,
                f"{what}: reading the consents of {case_id}",
            ):
                book = await self._folded(book, seq, body, subject, asked)
        self._keep(case_id, book, max(read, head), generation)
        return book

    def _generation(self) -> int:
        return 0 if self._verifier is None else self._verifier.generation

    def _keep(self, case_id: str, book: gate_rules.ConsentBook, read: int, generation: int) -> None:
        self._books[case_id] = (book, read, generation)
        self._books.move_to_end(case_id)
        while len(self._books) > self._cached:
            self._books.popitem(last=False)

    async def stored(self, event: Event, head: CaseHead, seq: int) -> None:
        """``event`` was stored at ``seq`` right after ``head`` (the publish that held only
        if ``head`` was still the case's last event): the cached book moves past it.

        Other cases' events may lie between the two sequences; none of this case's can:
        the server held the publish to ``Nats-Expected-Last-Subject-Sequence``. ``event``
        is the event as stored (signed): with a ``verifier``, a grant of its own counts
        only as the consumers will count it, signed with a key of the registry."""
        cached = self._books.get(event.case_id)
        if cached is None or cached[1] != head.seq or seq <= head.seq:
            return
        # Only grants fold here.
        if self._verifier is not None and event.type in gate_rules.GRANTING:
            checked = await self._read(encode(event.envelope), event.envelope.nats_subject, seq)
            if self._books.get(event.case_id) is not cached:
                return  # folded or dropped meanwhile: read again when next needed
            if checked is None:
                self._books.pop(event.case_id)  # read again, as stored, when next needed
                return
        self._keep(event.case_id, gate_rules.fold(cached[0], event, seq), seq, cached[2])

    def _case_filters(self, case_id: str) -> list[str]:
        """The case's events this Publisher may read: all of them on the stream, or through
        the read service those from, to, or broadcast by anyone to, this agency."""
        if self._service is None:
            return [case_filter(case_id)]
        return [
            case_filter(case_id, source=self.agency),
            case_filter(case_id, target=self.agency),
            broadcast_filter(case_id),
        ]

    async def _case_events(
        self, case_id: str, head: int, what: str, *, vouched: bool
    ) -> list[Event]:
        """The case's events this Publisher may read, up to ``head``, that keep their
        contracts; ``vouched``: only those :meth:`_read` finds signed where it must."""
        found: dict[int, tuple[bytes, str]] = {}
        asked = time.monotonic()  # a key id unknown then is learned by one read, for the walk
        for subject_filter in self._case_filters(case_id):
            async for seq, body, subject in self._walk(
                subject_filter, 1, head, f"{what}: reading case {case_id}"
            ):
                found[seq] = (body, subject)
        events = []
        for seq in sorted(found):
            body, subject = found[seq]
            event = await self._read(body, subject, seq, vouched=vouched, asked=asked)
            if event is not None:
                events.append(event)
        return events

    # -- before ------------------------------------------------------------------------------

    async def prepare(self, event: Event, head: CaseHead, what: str) -> Event:
        """The event as it may be published on top of ``head``; raises what refuses it."""
        # Checked when an event is built too; here for an outbox row stored before that.
        misaddressed = gate_rules.misaddressed(event.type, event.target)
        if misaddressed is not None:
            raise misaddressed
        personal = gate_rules.carries_personal(event)
        needed = gate_rules.requirement(event.type, event.target, personal)
        if personal or needed is not None or event.type in _BROADCAST_ONLY:
            book = await self.book(event.case_id, head.seq, what, head)
            refused = gate_rules.refusal(
                book, event.type, event.source, event.target, personal=personal
            )
            if refused is not None:
                if book.erased() and self.keys is not None:
                    # Anything made before we saw it (best effort: the erasure's own
                    # publisher erased them already, and the refusal is what matters).
                    with contextlib.suppress(ReadRefused):
                        await self._erase_keys(event.case_id, head.seq, what)
                raise refused
        present = [k for k, v in event.envelope.data.items() if v is not None]
        refused_abroad = gate_rules.border_refusal(
            event.type, event.envelope.dataversion, present, event.target
        )
        if refused_abroad is not None:
            raise refused_abroad
        if isinstance(event.data, case.CaseErasedV2) and head.seq > 0:
            # With nothing of the case yet there is nothing to erase, and no owner to ask.
            await self._must_own(event, head, what, "erase")
        if isinstance(event.data, case.CaseAssignedV2) and self.agency != gate_rules.COORDINATOR:
            await self._must_own(event, head, what, "assign")
        if isinstance(event.data, consent.ConsentWithdrawnV2):
            event = await self._with_notified(event, head, what)
        if event.type in gate_rules.GRANTING:
            await self._can_grant(event)
        return await self._sealed(event, head)

    async def _must_own(self, event: Event, head: CaseHead, what: str, verb: str) -> None:
        if self._service is not None:
            # What this agency may read need not hold the opening (a case it was handed),
            # nor an assignment addressed to others: the platform looks at the whole log.
            with bus_errors(f"{what}: asking the owner of case {event.case_id}"):
                owner = await self._service.owner(event.case_id, head.seq)
        else:
            # The owner counts only as named with its source's signature.
            events = await self._case_events(event.case_id, head.seq, what, vouched=True)
            owner = gate_rules.owner_of(events)
        also = f" or {gate_rules.COORDINATOR}, which coordinates cases," if verb == "assign" else ""
        if owner is None:
            raise NotAuthorised(
                f"{event.type} from {self.agency}: no case.opened or case.assigned of case "
                f"{event.case_id} names its owner, and only the case's owner{also} may "
                f"{verb} it"
            )
        if owner != self.agency:
            raise NotAuthorised(
                f"{event.type} from {self.agency}: only the case's owner ({owner}){also} may "
                f"{verb} case {event.case_id}"
            )

    async def _with_notified(self, event: Event, head: CaseHead, what: str) -> Event:
        data = event.data
        assert isinstance(data, consent.ConsentWithdrawnV2)
        book = await self.book(event.case_id, head.seq, what, head)
        received = {
            e.target
            # Who is told: everyone the case's events went to, checked or not (telling
            # one agency too many restricts nothing).
            for e in await self._case_events(event.case_id, head.seq, what, vouched=False)
            if e.target != BROADCAST
        }
        covered = {
            agency for g in book.grants if g.consent_id == data.consent_id for agency in g.agencies
        }
        # Who was given the case's data key: the agency that made it, and every agency a
        # grant to read named (read from the book, not by listing the key store, which an
        # agency may not do).
        keyed = {a for g in book.grants if g.scopes & gate_rules.READ_SCOPES for a in g.agencies}
        creator = await self.keys.creator(event.case_id) if self.keys is not None else None
        holders = {a for a in keyed if not is_partner_abroad(a)}
        if creator is not None:
            holders.add(creator)
        told = (received | covered | holders | set(data.notified or ())) - {self.agency}
        notified = sorted(told)
        doc = {**event.envelope.data, "notified": notified}
        return Event(
            event.envelope.model_copy(update={"data": doc}),
            data.model_copy(update={"notified": notified}),
        )

    async def _can_grant(self, event: Event) -> None:
        data = event.data
        assert isinstance(data, consent.ConsentRecordedV1 | consent.ConsentOverriddenV3)
        # Partners abroad never get the key: a consent naming only them (and this agency)
        # gives it to no one, and needs no key here.
        readers = {a for a in data.agencies if not is_partner_abroad(a)} - {self.agency}
        if not set(data.scopes) & gate_rules.READ_SCOPES or not readers:
            return
        if self.keys is None:
            raise NotAKeyHolder(
                f"{event.type} gives {', '.join(sorted(readers))} the case's data key: publish "
                "it through a Publisher holding the agency's case keys"
            )
        missing = self.keys.missing_recipients(readers)
        if missing:
            raise NoExchangeKey(
                f"{event.type}: no X25519 public key is known for {', '.join(missing)}, so "
                "the case's data key cannot reach them (`lintas keys init AGENCY` there, "
                "then `lintas keys publish`)"
            )
        if await self.keys.holds(event.case_id) is False:
            raise NotAKeyHolder(
                f"{event.type} from {self.agency}: case {event.case_id}'s data key is held by "
                "other agencies; a consent is recorded by an agency that holds it (the one "
                "that opened the case, or one a consent already covers)"
            )

    async def _sealed(self, event: Event, head: CaseHead) -> Event:
        clear = event.data.clear_fields()
        if not clear:
            return event
        if self.keys is None:
            raise NotAKeyHolder(
                f"{event.type} carries personal data ({', '.join(clear)}), which is sealed "
                "with the case's data key: publish it through a Publisher holding the "
                "agency's case keys"
            )
        gen, key = await self.keys.sealing_key(event.case_id, new_case=head.seq == 0)
        data = seal_data(event.data, key, gen, case_id=event.case_id)
        doc = data.model_dump(mode="json", exclude_none=True)
        return Event(event.envelope.model_copy(update={"data": doc}), data)

    # -- after -------------------------------------------------------------------------------

    async def _erase_keys(self, case_id: str, upto: int, what: str, *, own: bool = False) -> None:
        """Erase the case's keys if its owner's erasure is on the log up to ``upto`` (the
        read service checks that itself); ``own``: it is this Publisher's stored erasure,
        which its gate let through only from the owner."""
        self._books.pop(case_id, None)
        if self.keys is not None:
            self.keys.forget(case_id)
        if self._service is not None:
            with bus_errors(f"{what}: erasing the keys of case {case_id}"):
                await self._service.erase_keys(case_id)
            return
        if not own:
            events = await self._case_events(case_id, upto, what, vouched=True)
            if gate_rules.owners_erasure(enumerate(events)) is None:
                return  # a case.erased from another agency than the owner: no key goes
        with bus_errors(f"{what}: erasing the keys of case {case_id}"):
            await erase_case_keys(self._js, case_id)

    async def after(self, event: Event, seq: int, what: str) -> None:
        """Grant, revoke or erase data keys as the stored event says (idempotent)."""
        data = event.data
        case_id = event.case_id
        if isinstance(data, case.CaseErasedV2):
            await self._erase_keys(case_id, seq, what, own=True)
            return
        if event.type not in gate_rules.CONSENT_TYPES:
            return
        book = await self.book(case_id, seq, what)
        if isinstance(data, consent.ConsentWithdrawnV2):
            with bus_errors(f"{what}: revoking data keys of case {case_id}"):
                if self._service is not None:
                    # The read service folds what the authority policy allows, where this
                    # book counts every restriction (a forged withdrawal before this one
                    # would leave nothing to revoke here): it decides whose wraps go.
                    await self._service.revoke_keys(case_id, seq)
                elif lost := gate_rules.lost_readers(book, seq, self.agency):
                    await revoke_case_keys(self._js, case_id, lost)
            return
        if self.keys is None or book.erased():
            return
        grant = next((g for g in book.grants if g.seq == seq), None)
        if grant is not None and grant.scopes & gate_rules.READ_SCOPES:
            await self.keys.grant(case_id, grant.agencies & book.readers(), grant.seq)
