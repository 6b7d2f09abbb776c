"""A case's log held in memory, for the unit tests of what a recipient checks of a wrap's
grant (:class:`lintas.infra.privacy.custody.GrantCheck`): signed events at the stream
sequences a test chooses, read as :class:`lintas.infra.reads.DirectReads` reads them."""

from __future__ import annotations

from typing import Any

from lintas.contracts import BROADCAST, encode
from lintas.contracts.subjects import matches
from lintas.infra.keys.signing import Signer
from lintas.infra.reads import StoredMessage
from tests.support.events import at, ev


class MemoryLog:
    def __init__(self) -> None:
        self.messages: dict[int, StoredMessage] = {}
        self.reads = 0

    def add(
        self,
        seq: int,
        signer: Signer,
        event_type: str,
        data: dict[str, Any],
        *,
        case_id: str,
        target: str = BROADCAST,
    ) -> None:
        """The event ``signer``'s agency published at ``seq``, signed by ``signer``."""
        event = ev(
            event_type, data, source=signer.agency, target=target, case_id=case_id, time=at(seq)
        )
        envelope = signer.sign(event.envelope)
        self.messages[seq] = StoredMessage(seq, envelope.nats_subject, encode(envelope))

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> list[StoredMessage]:
        self.reads += 1
        found = [
            m
            for seq, m in sorted(self.messages.items())
            if first <= seq <= last and matches(subject_filter, m.subject)
        ]
        return found[:limit]


def consent(agencies: list[str], consent_id: str = "consent-1") -> dict[str, Any]:
    return {
        "consent_id": consent_id,
        "given_by": "parent",
        "child_assent": True,
        "scopes": ["services", "disclosure_to_agencies"],
        "agencies": agencies,
    }
