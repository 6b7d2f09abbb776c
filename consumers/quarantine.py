"""The quarantine stream: messages a consumer could not apply, kept with the reason.

JetStream has no dead-letter queue. A consumer that meets a message it can never apply
(broken contract, unknown version, a handler that always fails, too many deliveries)
publishes a copy here (the original bytes, with where it came from, which consumer, how
many attempts and why, as headers) and acknowledges the original only after this
stream has stored the copy. Nothing is dropped silently and the consumer keeps going.

One message per (consumer, stream sequence, build): ``Nats-Msg-Id`` is built from them, so
a consumer that crashes after quarantining and quarantines again stores one copy. The
build (``Lintas-Build``: when the consumer's projection was last built from the log, see
:mod:`.rebuild`) tells an entry of an earlier build: a rebuild judges every message again
(it applies it, or quarantines it anew as an entry of its own build), so ``lintas dlq
retry`` drops such an entry instead of applying it a second time (:mod:`.retry`).
Operators list, show and retry entries (``lintas dlq``); a retried entry is deleted. The
stream itself is declared with the others, in :mod:`lintas.infra.nats.topology`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats.js.errors

from lintas.contracts.subjects import quarantine_filter, quarantine_subject
from lintas.infra.errors import bus_errors
from lintas.infra.nats.topology import quarantine_stream
from lintas.infra.settings import Settings

__all__ = ["QuarantineEntry", "delete_entry", "get_entry", "list_entries", "put"]

_H = "Lintas-"
_ORIGINAL = "Lintas-Orig-"


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    consumer: str
    stream: str
    stream_seq: int
    subject: str
    attempts: int
    reason: str
    body: bytes
    original_headers: Mapping[str, str] = field(default_factory=dict)
    quarantined_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None  # its sequence in the quarantine stream, once stored
    build: str | None = None
    """When the consumer's projection was built (None: an entry from before builds were)."""

    def headers(self) -> dict[str, str]:
        built = f":{self.build}" if self.build else ""
        headers = {
            "Nats-Msg-Id": f"q:{self.stream}:{self.stream_seq}:{self.consumer}{built}",
            f"{_H}Consumer": self.consumer,
            f"{_H}Stream": self.stream,
            f"{_H}Stream-Seq": str(self.stream_seq),
            f"{_H}Subject": self.subject,
            f"{_H}Attempts": str(self.attempts),
            # Headers are one line; reasons name types, versions and fields, never values.
            f"{_H}Reason": " ".join(self.reason.split())[:500],
            f"{_H}Quarantined-At": self.quarantined_at.isoformat(),
        }
        if self.build:
            headers[f"{_H}Build"] = self.build
        for name, value in self.original_headers.items():
            headers[f"{_ORIGINAL}{name}"] = value
        return headers

    @classmethod
    def from_stored(cls, seq: int, headers: Mapping[str, str], body: bytes) -> QuarantineEntry:
        return cls(
            consumer=headers.get(f"{_H}Consumer", "?"),
            stream=headers.get(f"{_H}Stream", "?"),
            stream_seq=int(headers.get(f"{_H}Stream-Seq", "0")),
            subject=headers.get(f"{_H}Subject", "?"),
            attempts=int(headers.get(f"{_H}Attempts", "0")),
            reason=headers.get(f"{_H}Reason", "?"),
            body=body,
            original_headers={
                k.removeprefix(_ORIGINAL): v for k, v in headers.items() if k.startswith(_ORIGINAL)
            },
            quarantined_at=datetime.fromisoformat(
                headers.get(f"{_H}Quarantined-At", "1970-01-01T00:00:00+00:00")
            ),
            id=seq,
            build=headers.get(f"{_H}Build"),
        )


async def put(js: Any, settings: Settings, entry: QuarantineEntry) -> int:
    """Store ``entry``; return its id. Only then may the original be acknowledged."""
    with bus_errors(f"quarantining {entry.stream} seq {entry.stream_seq}", js):
        ack = await js.publish(
            quarantine_subject(settings.stream, entry.consumer),
            entry.body,
            stream=quarantine_stream(settings),
            headers=entry.headers(),
        )
    return int(ack.seq)


async def get_entry(js: Any, settings: Settings, entry_id: int) -> QuarantineEntry | None:
    with bus_errors(f"reading quarantine entry {entry_id}", js):
        try:
            raw = await js.get_msg(quarantine_stream(settings), seq=entry_id)
        except nats.js.errors.NotFoundError:
            return None
    return QuarantineEntry.from_stored(entry_id, raw.headers or {}, raw.data or b"")


async def list_entries(js: Any, settings: Settings) -> AsyncIterator[QuarantineEntry]:
    """Every entry still in quarantine, oldest first."""
    name = quarantine_stream(settings)
    with bus_errors(f"reading {name}", js):
        try:
            state = (await js.stream_info(name)).state
        except nats.js.errors.NotFoundError:
            return
    if not state.messages:
        return
    seq = state.first_seq
    while seq <= state.last_seq:
        with bus_errors(f"reading {name}", js):
            try:
                raw = await js.get_msg(
                    name, seq=seq, subject=quarantine_filter(settings.stream), next=True
                )
            except nats.js.errors.NotFoundError:
                return
        if raw.seq is None:
            return
        yield QuarantineEntry.from_stored(raw.seq, raw.headers or {}, raw.data or b"")
        seq = raw.seq + 1


async def delete_entry(js: Any, settings: Settings, entry_id: int) -> None:
    with bus_errors(f"deleting quarantine entry {entry_id}", js):
        await js.delete_msg(quarantine_stream(settings), entry_id)
