"""The consumer edge: a pulled batch in, one transaction, acknowledgements out.

Messages of one consumer are applied strictly in stream order, one batch per
transaction, so the events of a case are applied in the order they were published.
What the edge does with each outcome:

* applied, or already applied (sequence at or below the tracked position): ack;
* breaks its contract (not JSON, unknown type or version, wrong fields): not applied,
  logged with its stream sequence and reason, counted as rejected, ack;
* the commit fails (database locked or gone, or a bug): the batch is retried in place
  with back-off while the server is told the messages are still in progress. Never
  terminated, and no later message is applied first: letting the exception reach
  FastStream would leave the batch to redelivery while newer messages are pulled and
  applied, which breaks per-case order (and the tracking position would then skip the
  older ones). A failure that never clears stalls this consumer, loudly, rather than
  losing an event; quarantine is the reliability issue's job;
* the batch starts beyond the tracked position (a crashed instance left messages
  unacknowledged, and JetStream delivered newer ones first): the messages in between are
  read from the stream by subject and applied first (see :mod:`._gaps`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from lintas.contracts import ContractError, Event, TransientError, decode
from lintas.infra.db import read_position, write_position

from ._gaps import StoredMessage, StreamGapReader
from .projections import Batch, Projection

__all__ = ["OnCommit", "ProjectionRunner"]

OnCommit = Callable[[Batch], None]

_log = structlog.get_logger("lintas.consumer")

T = TypeVar("T")


class ProjectionRunner:
    def __init__(
        self,
        *,
        consumer: str,
        stream: str,
        projection: Projection,
        engine: Engine,
        lock: asyncio.Lock | None = None,
        on_commit: Sequence[OnCommit] = (),
        max_backoff_s: float = 5.0,
        gap_limit: int = 256,
    ) -> None:
        self.consumer = consumer
        self.stream = stream
        self.projection = projection
        self.engine = engine
        # Runners that share one database share one lock: SQLite has a single writer.
        self.lock = lock or asyncio.Lock()
        self.on_commit = list(on_commit)
        self.max_backoff_s = max_backoff_s
        self.gap_limit = gap_limit
        self._position: int | None = None  # tracked position, once read

    def _decode(
        self, items: Sequence[tuple[int, str, bytes]]
    ) -> tuple[list[tuple[int, Event]], list[int]]:
        batch: list[tuple[int, Event]] = []
        rejected: list[int] = []
        for seq, subject, data in items:
            try:
                batch.append((seq, decode(data, subject=subject)))
            except ContractError as exc:
                rejected.append(seq)
                _log.warning(
                    "message.rejected",
                    consumer=self.consumer,
                    stream_seq=seq,
                    reason=str(exc),
                    event_type=exc.event_type,
                    version=exc.version,
                    field=exc.field,
                )
            except Exception as exc:
                # Whatever a hostile body makes the decoder do, it is this message's fault:
                # raising here would leave the whole batch to redelivery behind newer ones.
                rejected.append(seq)
                _log.error(
                    "message.rejected",
                    consumer=self.consumer,
                    stream_seq=seq,
                    reason=f"decoder failed: {exc.__class__.__name__}",
                )
        return batch, rejected

    async def handle(self, msgs: Sequence[Any], gaps: StreamGapReader | None = None) -> None:
        """Apply one pulled batch of ``nats.aio.msg.Msg`` and acknowledge it.

        With ``gaps``, first apply what the stream holds for this consumer between the
        tracked position and the batch.
        """
        if not msgs:
            return
        seqs = [msg.metadata.sequence.stream for msg in msgs]
        if gaps is not None:
            await self._fill_gap(min(seqs), gaps, msgs)
        batch, rejected = self._decode(
            [(seq, msg.subject, msg.data) for seq, msg in zip(seqs, msgs, strict=True)]
        )
        applied = await self._commit_with_retry(batch, rejected, max(seqs), msgs)
        await self._ack(msgs)
        self._notify(applied)

    def _notify(self, applied: Batch) -> None:
        if applied:
            for callback in self.on_commit:
                callback(applied)

    async def _fill_gap(self, first: int, gaps: StreamGapReader, msgs: Sequence[Any]) -> None:
        if self._position is None:
            self._position = await asyncio.to_thread(self._read_position)
        while first > self._position + 1:
            start = self._position + 1

            async def read(start: int = start) -> list[StoredMessage]:
                return await gaps.between(start, first - 1, self.gap_limit)

            found = await self._with_retry(read, msgs)
            if not found:
                return
            batch, rejected = self._decode([(m.seq, m.subject, m.data) for m in found])
            applied = await self._commit_with_retry(batch, rejected, found[-1].seq, msgs)
            _log.info(
                "gap.filled",
                consumer=self.consumer,
                first=found[0].seq,
                last=found[-1].seq,
                count=len(found),
            )
            self._notify(applied)

    def _read_position(self) -> int:
        with Session(self.engine) as session:
            return read_position(session, self.consumer, self.stream).position

    async def _ack(self, msgs: Sequence[Any]) -> None:
        """Only after the commit: a crash before this line means redelivery, then a skip."""
        for msg in msgs[:-1]:
            await msg.ack()
        # Acks on one connection arrive in order: once the last is confirmed, all are.
        await msgs[-1].ack_sync()

    async def _commit_with_retry(
        self, batch: Batch, rejected: list[int], last: int, msgs: Sequence[Any]
    ) -> Batch:
        async def commit() -> Batch:
            async with self.lock:
                fresh, self._position = await asyncio.to_thread(self._commit, batch, rejected, last)
                return fresh

        return await self._with_retry(commit, msgs)

    async def _with_retry(self, step: Callable[[], Awaitable[T]], msgs: Sequence[Any]) -> T:
        last = msgs[-1].metadata.sequence.stream
        delay = 0.05
        attempt = 1
        while True:
            try:
                return await step()
            except Exception as exc:
                expected = isinstance(exc, OperationalError | TransientError) or (
                    isinstance(exc, DBAPIError) and exc.connection_invalidated
                )
                log = _log.warning if expected else _log.error
                log(
                    "projection.retry",
                    consumer=self.consumer,
                    attempt=attempt,
                    delay_s=delay,
                    error=exc.__class__.__name__,
                    stream_seqs=f"{msgs[0].metadata.sequence.stream}..{last}",
                    exc_info=not expected,
                )
                for msg in msgs:
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                attempt += 1

    def _commit(self, batch: Batch, rejected: list[int], last: int) -> tuple[Batch, int]:
        """Apply what is above the tracked position; return it and the new position."""
        with Session(self.engine) as session:
            tracking = read_position(session, self.consumer, self.stream)
            fresh = [(seq, event) for seq, event in batch if seq > tracking.position]
            if not fresh and last <= tracking.position:
                return [], tracking.position
            applied = self.projection.apply_batch(session, fresh)
            position = max(tracking.position, last)
            write_position(
                tracking,
                position,
                applied=applied,
                rejected=sum(1 for seq in rejected if seq > tracking.position),
            )
            session.commit()
            return fresh, position
