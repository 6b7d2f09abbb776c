"""Reading a consumer's own messages straight from the stream, to close a gap.

After a crash, the dead instance's unacknowledged messages come back only after
``ack_wait``, and JetStream may first deliver newer ones to the restarted consumer. The
runner notices (the batch starts beyond its tracked position) and reads the messages in
between from the stream by subject, so it applies them first: the tracking position,
not JetStream's redelivery timing, decides what is next. Their redeliveries later find
them applied and are acknowledged without effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats.js.errors

from lintas.infra.errors import bus_errors

__all__ = ["StoredMessage", "StreamGapReader"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    subject: str
    data: bytes


class StreamGapReader:
    """Messages of ``filters`` in a range of stream sequences, by direct get."""

    def __init__(self, js: Any, stream: str, filters: Sequence[str]) -> None:
        self._js = js
        self.stream = stream
        self.filters = list(filters)

    async def between(self, first: int, last: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``first <= seq <= last``, in stream order."""
        found: list[StoredMessage] = []
        with bus_errors(f"reading {self.stream} {first}..{last}"):
            for subject_filter in self.filters:
                cursor = first
                taken = 0
                while cursor <= last and taken < limit:
                    try:
                        raw = await self._js.get_msg(
                            self.stream, seq=cursor, subject=subject_filter, next=True, direct=True
                        )
                    except nats.js.errors.NotFoundError:
                        break
                    if raw.seq is None or raw.seq > last:
                        break
                    found.append(StoredMessage(raw.seq, raw.subject or "", raw.data or b""))
                    cursor = raw.seq + 1
                    taken += 1
        found.sort(key=lambda m: m.seq)
        return found[:limit]
