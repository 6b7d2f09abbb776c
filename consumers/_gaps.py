"""Reading a consumer's own messages straight from the stream, to close a gap.

After a crash, the dead instance's unacknowledged messages come back only after
``ack_wait``, and JetStream may first deliver newer ones to the restarted consumer. The
runner notices (the batch starts beyond its tracked position) and reads the messages in
between from the stream by subject, so it applies them first: the tracking position,
not JetStream's redelivery timing, decides what is next. Their redeliveries later find
them applied and are acknowledged without effect.

Who reads: by default this client, by direct get on each filter (the platform's record
projector, or any consumer on a bus without permissions). An agency on a secured bus may
not read the stream itself and passes :class:`~lintas.infra.reads.ServiceReads`: the read
service returns the same messages, and only those of the agency's own filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lintas.infra.errors import bus_errors
from lintas.infra.reads import DirectReads, StoredMessage, StreamReads

__all__ = ["StoredMessage", "StreamGapReader"]


class StreamGapReader:
    """Messages of ``filters`` in a range of stream sequences."""

    def __init__(
        self, js: Any, stream: str, filters: Sequence[str], reads: StreamReads | None = None
    ) -> None:
        self.stream = stream
        self.filters = list(filters)
        self._reads = reads or DirectReads(js, stream)

    async def between(self, first: int, last: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``first <= seq <= last``, in stream order."""
        found: list[StoredMessage] = []
        with bus_errors(f"reading {self.stream} {first}..{last}"):
            for subject_filter in self.filters:
                found += await self._reads.between(subject_filter, first, last, limit)
        found.sort(key=lambda m: m.seq)
        return found[:limit]
