"""The Publisher's cached consent books: when the case's head is enough, and when the
case's broadcasts must be read again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lintas.contracts import (
    BROADCAST,
    ContractError,
    build_data,
    decode,
    encode,
    make_event,
    message_hash,
    new_case_id,
)
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier
from lintas.infra.reads import CaseHead, StoredMessage
from lintas.producers._gate import NotAuthorised, PublishGate

CASE = new_case_id()


class _Log:
    """A case's messages, and the reads a PublishGate makes of them (counted)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str, bytes]] = []
        self.walks = 0
        """Reads of the case's broadcasts (a read may take more than one)."""

    def add(
        self,
        seq: int,
        event_type: str,
        data: dict[str, Any],
        source: str,
        target: str,
        prevhash: str | None = None,
        signer: Signer | None = None,
    ) -> CaseHead:
        """Stored at ``seq``, chained onto the case's last message unless ``prevhash``;
        signed by ``signer`` (if any)."""
        if prevhash is None and self.messages:
            prevhash = message_hash(self.messages[-1][2])
        event = make_event(build_data(event_type, data), source=source, target=target, case_id=CASE)
        envelope = event.envelope.model_copy(update={"prevhash": prevhash})
        body = encode(signer.sign(envelope) if signer is not None else envelope)
        subject = event.envelope.nats_subject
        self.messages.append((seq, subject, body))
        return CaseHead(seq, message_hash(body), event.id, subject, body)

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]:
        self.walks += 1
        return [
            StoredMessage(seq, subject, body)
            for seq, subject, body in self.messages
            if first <= seq <= last and _matches(subject_filter, subject)
        ][:limit]


def _matches(subject_filter: str, subject: str) -> bool:
    wanted, tokens = subject_filter.split("."), subject.split(".")
    return len(wanted) == len(tokens) and all(
        w in ("*", t) for w, t in zip(wanted, tokens, strict=True)
    )


def _consent(
    log: _Log,
    seq: int,
    signer: Signer | None = None,
    *,
    source: str = "kemlu",
    consent_id: str = "c-1",
    agencies: tuple[str, ...] = ("kp2mi", "kemensos"),
) -> CaseHead:
    data = {
        "consent_id": consent_id,
        "given_by": "parent",
        "child_assent": True,
        "scopes": ["services"],
        "agencies": list(agencies),
    }
    return log.add(seq, "consent.recorded", data, source, BROADCAST, signer=signer)


def _withdrawal(log: _Log, seq: int, signer: Signer | None = None) -> CaseHead:
    return log.add(
        seq,
        "consent.withdrawn",
        {"consent_id": "c-1", "notified": ["kemensos"]},
        "kemlu",
        BROADCAST,
        signer=signer,
    )


def _assignment(log: _Log, seq: int, prevhash: str | None = None) -> CaseHead:
    data = {"owner": "kp2mi", "officer_ref": "OFF-1"}
    return log.add(seq, "case.assigned", data, "kemlu", "kp2mi", prevhash)


def _privacy(log: _Log, verifier: Verifier | None = None) -> PublishGate:
    return PublishGate(None, "kp2mi", "LINTAS", None, reads=log, verifier=verifier)  # type: ignore[arg-type]


KEMLU = Signer("kemlu", Ed25519PrivateKey.generate())
KP2MI = Signer("kp2mi", Ed25519PrivateKey.generate())
IMPOSTOR = Signer("kemlu", Ed25519PrivateKey.generate())  # kemlu's name, not its key
STRANGER = Signer("kp2mi", Ed25519PrivateKey.generate())  # a kp2mi key the registry lacks
VERIFIER = Verifier(
    Registry(
        KeyEntry(s.agency, s.keyid, s._key.public_key(), datetime(2000, 1, 1, tzinfo=UTC))
        for s in (KEMLU, KP2MI)
    )
)


def test_the_next_message_of_the_stream_is_folded_from_the_head_without_reading() -> None:
    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        book = await privacy.book(CASE, 10, "test", _consent(log, 10))  # first sight: read
        read = log.walks
        assert read > 0
        assert book.covering("services", "kemensos") is not None
        head = _withdrawal(log, 11)  # nothing at all stored between: the head is all
        book = await privacy.book(CASE, 11, "test", head)
        assert log.walks == read
        assert book.covering("services", "kemensos") is None

    asyncio.run(run())


def test_a_head_that_claims_to_follow_the_known_event_is_not_taken_at_its_word() -> None:
    """A message's prevhash is what its publisher wrote: one published without the
    expected-sequence header can name the event the book knows while a withdrawal lies
    between. The case is read, and the withdrawal counts."""

    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        known = _consent(log, 10)
        await privacy.book(CASE, 10, "test", known)
        read = log.walks
        _withdrawal(log, 20)
        assert known.hash is not None
        forged = _assignment(log, 30, prevhash=known.hash)  # no expected-sequence header
        book = await privacy.book(CASE, 30, "test", forged)
        assert log.walks > read
        assert book.covering("services", "kemensos") is None

    asyncio.run(run())


def test_after_its_own_publish_the_book_moves_past_it_whatever_lies_between() -> None:
    """The server held the publish to the case's head: no event of the case can lie
    between, however many of other cases do."""

    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        head = _consent(log, 10)
        await privacy.book(CASE, 10, "test", head)
        read = log.walks
        mine = _assignment(log, 57)  # other cases' events at 11-56
        await privacy.stored(decode(mine.body, subject=mine.subject), head, 57)
        book = await privacy.book(CASE, 57, "test", mine)
        assert log.walks == read
        assert book.covering("services", "kemensos") is not None

    asyncio.run(run())


def test_with_a_verifier_a_consent_not_signed_by_its_source_opens_nothing() -> None:
    async def run() -> None:
        log = _Log()
        forged = _consent(log, 10, IMPOSTOR)
        book = await _privacy(log, VERIFIER).book(CASE, 10, "test", forged)
        assert book.covering("services", "kemensos") is None
        unsigned = _Log()
        head = _consent(unsigned, 10)
        book = await _privacy(unsigned, VERIFIER).book(CASE, 10, "test", head)
        assert book.covering("services", "kemensos") is None
        signed = _Log()
        head = _consent(signed, 10, KEMLU)
        book = await _privacy(signed, VERIFIER).book(CASE, 10, "test", head)
        assert book.covering("services", "kemensos") is not None
        # Without a verifier, what decodes counts (as before this check).
        book = await _privacy(log).book(CASE, 10, "test", forged)
        assert book.covering("services", "kemensos") is not None

    asyncio.run(run())


def test_a_withdrawal_restricts_even_when_its_signature_does_not_hold() -> None:
    """Fail closed: a key missing from this registry must not let data through."""

    async def run() -> None:
        log = _Log()
        privacy = _privacy(log, VERIFIER)
        await privacy.book(CASE, 10, "test", _consent(log, 10, KEMLU))
        head = _withdrawal(log, 20, IMPOSTOR)
        book = await privacy.book(CASE, 20, "test", head)
        assert book.covering("services", "kemensos") is None

    asyncio.run(run())


def test_with_a_verifier_an_owner_named_without_its_source_s_key_may_not_erase() -> None:
    """Only the case's owner may erase it, and an assignment that says so counts only
    signed by its source."""

    async def run() -> None:
        log = _Log()
        owned = {"owner": "kemlu", "officer_ref": "OFF-1"}
        log.add(1, "case.assigned", owned, "kp2mi", BROADCAST, signer=KP2MI)
        taken = {"owner": "kp2mi", "officer_ref": "OFF-2"}
        head = log.add(2, "case.assigned", taken, "kemlu", "kp2mi", signer=IMPOSTOR)
        erasure = make_event(
            build_data(
                "case.erased",
                {
                    "officer_role": "data_protection_officer",
                    "requested_by": "parent",
                    "legal_basis": ["UU 27/2022 Pasal 8"],
                    "reason": "subject_request",
                },
            ),
            source="kp2mi",
            target=BROADCAST,
            case_id=CASE,
        )
        with pytest.raises(NotAuthorised, match=r"only the case's owner \(kemlu\)"):
            await _privacy(log, VERIFIER).prepare(erasure, head, "test")
        # Without a verifier the forged assignment counts.
        assert await _privacy(log).prepare(erasure, head, "test") is not None

    asyncio.run(run())


def test_its_own_grant_moves_the_verifying_book_only_if_the_registry_holds_its_key() -> None:
    """What it stored counts as the consumers will count it: signed with a key they know."""

    async def run() -> None:
        for signer, reread in ((KP2MI, False), (STRANGER, True)):
            log = _Log()
            privacy = _privacy(log, VERIFIER)
            head = _consent(log, 10, KEMLU)
            await privacy.book(CASE, 10, "test", head)
            walks = log.walks
            mine = _consent(
                log, 57, signer, source="kp2mi", consent_id="c-2", agencies=("kp2mi", "kpai")
            )
            await privacy.stored(decode(mine.body, subject=mine.subject), head, 57)
            book = await privacy.book(CASE, 57, "test", mine)
            assert (log.walks > walks) is reread
            assert (book.covering("services", "kpai") is None) is reread

    asyncio.run(run())


def test_a_withdrawal_notifies_whom_unchecked_events_went_to() -> None:
    """The owner an erasure needs must be vouched for; whom a withdrawal tells need not:
    telling one agency too many restricts nothing."""

    async def run() -> None:
        log = _Log()
        assigned = {"owner": "kemlu", "officer_ref": "OFF-1"}
        log.add(1, "case.assigned", assigned, "kemlu", "dukcapil", signer=IMPOSTOR)
        head = _consent(log, 2, KEMLU)
        withdrawal = make_event(
            build_data("consent.withdrawn", {"consent_id": "c-1", "notified": []}),
            source="kp2mi",
            target=BROADCAST,
            case_id=CASE,
        )
        ready = await _privacy(log, VERIFIER).prepare(withdrawal, head, "test")
        assert "dukcapil" in ready.envelope.data["notified"]

    asyncio.run(run())


def test_only_the_owner_or_the_coordinator_may_assign_the_case() -> None:
    """Dukcapil may not take a case it does not own; the owner (kemlu, named by the
    coordinator) may hand it on; the coordinator assigns without reading the case."""

    async def run() -> None:
        log = _Log()
        owned = {"owner": "kemlu", "officer_ref": "OFF-1"}
        head = log.add(1, "case.assigned", owned, "kp2mi", BROADCAST, signer=KP2MI)

        def assignment(source: str, owner: str) -> Any:
            data = build_data("case.assigned", {"owner": owner, "officer_ref": "OFF-2"})
            return make_event(data, source=source, target=BROADCAST, case_id=CASE)

        def privacy(agency: str) -> PublishGate:
            return PublishGate(None, agency, "LINTAS", None, reads=log, verifier=VERIFIER)  # type: ignore[arg-type]

        with pytest.raises(NotAuthorised, match=r"only the case's owner \(kemlu\) or kp2mi"):
            await privacy("dukcapil").prepare(assignment("dukcapil", "dukcapil"), head, "test")
        assert await privacy("kemlu").prepare(assignment("kemlu", "kemensos"), head, "test")
        walks = log.walks
        assert await privacy("kp2mi").prepare(assignment("kp2mi", "kp2mi"), head, "test")
        assert log.walks == walks

    asyncio.run(run())


def test_a_consent_signed_with_a_key_published_later_counts_once_learned() -> None:
    """The gate's verifier, built before KemLu's key was published, reads it afresh."""

    async def run() -> None:
        log = _Log()
        head = _consent(log, 10, KEMLU)
        stale = Verifier(Registry(), refresh=_later(VERIFIER.registry))
        privacy = PublishGate(None, "kp2mi", "LINTAS", None, reads=log, verifier=stale)  # type: ignore[arg-type]
        book = await privacy.book(CASE, 10, "test", head)
        assert book.covering("services", "kemensos") is not None

    asyncio.run(run())


def test_a_consent_ignored_for_want_of_its_key_counts_once_a_key_is_learned() -> None:
    """The refresh came too soon to be made again: the consent is ignored, and the book
    that ignored it is not kept once the verifier has learned keys."""

    async def run() -> None:
        log = _Log()
        head = _consent(log, 10, KEMLU)
        stale = Verifier(Registry(), refresh=_later(Registry()), refresh_interval_s=3600)
        await stale.learn()  # found nothing new; no other read within the hour
        privacy = PublishGate(None, "kp2mi", "LINTAS", None, reads=log, verifier=stale)  # type: ignore[arg-type]
        assert (await privacy.book(CASE, 10, "test", head)).covering("services", "kemensos") is None
        stale._refresh, stale._refreshed_at = _later(VERIFIER.registry), None
        assert await stale.learn()  # as a consumer sharing the verifier would
        book = await privacy.book(CASE, 10, "test", head)
        assert book.covering("services", "kemensos") is not None

    asyncio.run(run())


def test_an_assignment_goes_to_everyone() -> None:
    async def run() -> None:
        log = _Log()
        head = log.add(
            1, "case.assigned", {"owner": "kemlu", "officer_ref": "OFF-3"}, "kp2mi", "all"
        )
        data = build_data("case.assigned", {"owner": "kemensos", "officer_ref": "OFF-2"})
        to_one = make_event(data, source="kp2mi", target="kemensos", case_id=CASE)
        with pytest.raises(ContractError, match="must go to everyone"):
            await _privacy(log).prepare(to_one, head, "test")

    asyncio.run(run())


def _later(registry: Registry) -> Any:
    async def refresh() -> Registry:
        return registry

    return refresh
