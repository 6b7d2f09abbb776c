"""The Publisher's cached consent books: when the case's head is enough, and when the
case's broadcasts must be read again."""

from __future__ import annotations

import asyncio
from typing import Any

from lintas.contracts import BROADCAST, build_data, encode, make_event, message_hash, new_case_id
from lintas.infra.reads import CaseHead, StoredMessage
from lintas.producers._privacy import Privacy

CASE = new_case_id()


class _Log:
    """A case's messages, and the reads a Privacy makes of them (counted)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str, bytes]] = []
        self.walks = 0
        """Reads of the case's broadcasts (a read may take more than one)."""

    def add(
        self, seq: int, event_type: str, data: dict[str, Any], source: str, target: str
    ) -> CaseHead:
        prevhash = message_hash(self.messages[-1][2]) if self.messages else None
        event = make_event(build_data(event_type, data), source=source, target=target, case_id=CASE)
        body = encode(event.envelope.model_copy(update={"prevhash": prevhash}))
        subject = event.envelope.nats_subject
        self.messages.append((seq, subject, body))
        return CaseHead(seq, message_hash(body), event.id, subject, body, prevhash)

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]:
        self.walks += 1
        return [
            StoredMessage(seq, subject, body)
            for seq, subject, body in self.messages
            if first <= seq <= last and subject.split(".")[2] == BROADCAST
        ][:limit]


def _consent(log: _Log, seq: int) -> CaseHead:
    data = {
        "consent_id": "c-1",
        "given_by": "parent",
        "child_assent": True,
        "scopes": ["services"],
        "agencies": ["kp2mi", "kemensos"],
    }
    return log.add(seq, "consent.recorded", data, "kemlu", BROADCAST)


def _withdrawal(log: _Log, seq: int) -> CaseHead:
    return log.add(
        seq,
        "consent.withdrawn",
        {"consent_id": "c-1", "notified": ["kemensos"]},
        "kemlu",
        BROADCAST,
    )


def _assignment(log: _Log, seq: int) -> CaseHead:
    return log.add(
        seq, "case.assigned", {"owner": "kp2mi", "officer_ref": "off-1"}, "kemlu", "kp2mi"
    )


def _privacy(log: _Log) -> Privacy:
    return Privacy(None, "kp2mi", "LINTAS", None, reads=log)  # type: ignore[arg-type]


def test_a_head_chained_onto_the_known_event_is_folded_without_reading_the_case() -> None:
    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        first = _consent(log, 10)
        book = await privacy.book(CASE, 10, "test", first)  # first sight: read
        read = log.walks
        assert read > 0
        assert book.covering("services", "kemensos") is not None
        # Other cases' events at 11-19; then only the withdrawal, chained onto seq 10.
        head = _withdrawal(log, 20)
        book = await privacy.book(CASE, 20, "test", head)
        assert log.walks == read  # the head was enough
        assert book.covering("services", "kemensos") is None  # and it was folded

    asyncio.run(run())


def test_two_new_events_of_the_case_are_read_whatever_the_head_says() -> None:
    """The head chains onto an event this Publisher never saw: the withdrawal before it
    must be read, or the gate would still let kemensos have the data."""

    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        await privacy.book(CASE, 10, "test", _consent(log, 10))
        read = log.walks
        _withdrawal(log, 20)
        head = _assignment(log, 30)  # not a broadcast: the head alone says nothing
        book = await privacy.book(CASE, 30, "test", head)
        assert log.walks > read
        assert book.covering("services", "kemensos") is None

    asyncio.run(run())


def test_a_case_first_seen_is_read_even_when_its_head_names_no_previous_event() -> None:
    """An event with no prevhash may still follow others (published before the chain):
    only a hash this Publisher knows lets it skip the read."""

    async def run() -> None:
        log = _Log()
        privacy = _privacy(log)
        _consent(log, 10)
        head = _assignment(log, 11)
        unchained = CaseHead(head.seq, head.hash, head.event_id, head.subject, head.body, None)
        book = await privacy.book(CASE, 11, "test", unchained)
        assert log.walks > 0
        assert book.covering("services", "kemensos") is not None

    asyncio.run(run())
