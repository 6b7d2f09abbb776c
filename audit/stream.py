"""Reading the event stream in stream order, streamed, never the whole log in memory.

The whole log is read by sequence: direct gets of ``window`` consecutive sequences at a
time, answered in parallel and yielded in order, so memory stays at one window whatever
the length of the stream. One case is read through its subject filter
(``lintas.*.*.*.*.<case>``, next-by-subject gets), so its cost follows the case, not the
stream.

Both stop at the *cut*: the stream's last sequence when the read began; what is published
meanwhile belongs to the next audit. A direct get may be answered by a replica that lags
behind; "not found" is therefore confirmed by the stream leader before a sequence is
reported missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.js.errors

from lintas.contracts import PermanentError, case_filter
from lintas.infra.errors import bus_errors

from .events import StoredEvent

__all__ = ["NoSuchStream", "StreamCut", "StreamReader"]


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


class StreamReader:
    """The events of ``stream`` (or of one case) up to the cut, in stream order."""

    def __init__(self, js: Any, stream: str, *, case_id: str | None = None, window: int = 64):
        if window < 1:
            raise ValueError("window must be at least 1")
        self._js = js
        self.stream = stream
        self.case_id = case_id
        self.subject_filter = case_filter(case_id) if case_id is not None else None
        self.window = window

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
            async for stored in self._by_sequence(cut):
                yield stored
        else:
            async for stored in self._by_subject(cut, self.subject_filter):
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

    async def _by_sequence(self, cut: StreamCut) -> AsyncIterator[StoredEvent]:
        # From the stream's first sequence: if that is not 1, the checker says what is gone.
        start = max(cut.first_seq, 1)
        while start <= cut.last_seq:
            end = min(start + self.window - 1, cut.last_seq)
            with bus_errors(f"reading {self.stream} {start}..{end}"):
                found = await asyncio.gather(*(self._get(s) for s in range(start, end + 1)))
            for stored in found:
                if stored is not None:
                    yield stored
            start = end + 1

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

    async def _by_subject(self, cut: StreamCut, subject_filter: str) -> AsyncIterator[StoredEvent]:
        cursor = 1
        while cursor <= cut.last_seq:
            with bus_errors(f"reading {subject_filter} from {self.stream} at {cursor}"):
                raw = await self._next(cursor, subject_filter)
            if raw is None or raw.seq is None or raw.seq > cut.last_seq:
                return
            stored = _stored(raw)
            yield stored
            cursor = stored.seq + 1
