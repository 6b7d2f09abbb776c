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
  losing an event; quarantine is the reliability issue's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from lintas.contracts import ContractError, Event, decode
from lintas.infra.db import read_position, write_position

from .projections import Batch, Projection

__all__ = ["OnCommit", "ProjectionRunner"]

OnCommit = Callable[[Batch], None]

_log = structlog.get_logger("lintas.consumer")


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
    ) -> None:
        self.consumer = consumer
        self.stream = stream
        self.projection = projection
        self.engine = engine
        # Runners that share one database share one lock: SQLite has a single writer.
        self.lock = lock or asyncio.Lock()
        self.on_commit = list(on_commit)
        self.max_backoff_s = max_backoff_s

    async def handle(self, msgs: Sequence[Any]) -> None:
        """Apply one pulled batch of ``nats.aio.msg.Msg`` and acknowledge it."""
        if not msgs:
            return
        batch: list[tuple[int, Event]] = []
        rejected: list[int] = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            try:
                batch.append((seq, decode(msg.data, subject=msg.subject)))
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
        last = max(msg.metadata.sequence.stream for msg in msgs)
        applied = await self._commit_with_retry(batch, rejected, last, msgs)
        await self._ack(msgs)
        if applied:
            for callback in self.on_commit:
                callback(applied)

    async def _ack(self, msgs: Sequence[Any]) -> None:
        """Only after the commit: a crash before this line means redelivery, then a skip."""
        for msg in msgs[:-1]:
            await msg.ack()
        # Acks on one connection arrive in order: once the last is confirmed, all are.
        await msgs[-1].ack_sync()

    async def _commit_with_retry(
        self, batch: Batch, rejected: list[int], last: int, msgs: Sequence[Any]
    ) -> Batch:
        delay = 0.05
        attempt = 1
        while True:
            try:
                async with self.lock:
                    return await asyncio.to_thread(self._commit, batch, rejected, last)
            except Exception as exc:
                expected = isinstance(exc, OperationalError) or (
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

    def _commit(self, batch: Batch, rejected: list[int], last: int) -> Batch:
        with Session(self.engine) as session:
            tracking = read_position(session, self.consumer, self.stream)
            fresh = [(seq, event) for seq, event in batch if seq > tracking.position]
            if not fresh and last <= tracking.position:
                return []
            applied = self.projection.apply_batch(session, fresh)
            write_position(
                tracking,
                max(tracking.position, last),
                applied=applied,
                rejected=sum(1 for seq in rejected if seq > tracking.position),
            )
            session.commit()
            return fresh
