"""Stand-ins for the consumer edge's unit tests: a message whose acknowledgement the test
controls, and the record projection's real runner on a real SQLite store (no broker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats.errors
from sqlalchemy import Engine
from sqlmodel import SQLModel

from lintas.consumers.projections import RecordProjection
from lintas.consumers.runner import ProjectionRunner
from lintas.infra.db import create_db_engine

__all__ = ["StubMsg", "runner_for"]


STORED_AT = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass
class StubMsg:
    """A pulled message as the runner reads it; its ack confirmation fails at will."""

    seq: int
    body: bytes
    subject: str
    delivered: int = 1
    confirm: bool = True
    fails: type[Exception] | None = None  # what the (unconfirmed) ack raises
    acks: list[str] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return self.body

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def metadata(self) -> Any:
        sequence = SimpleNamespace(stream=self.seq, consumer=self.seq)
        # Stored a second apart, in stream order, as JetStream's ack subject says.
        stored = STORED_AT + timedelta(seconds=self.seq)
        return SimpleNamespace(sequence=sequence, num_delivered=self.delivered, timestamp=stored)

    async def ack(self) -> None:
        self.acks.append("ack")
        if not self.confirm and self.fails is not None:
            raise self.fails

    async def ack_sync(self) -> None:
        self.acks.append("ack_sync")
        if not self.confirm:
            raise self.fails or nats.errors.TimeoutError


def runner_for(tmp_path: Path, applied: list[int]) -> tuple[ProjectionRunner, Engine]:
    """The record projection's runner on a fresh SQLite store; ``applied`` gets each
    committed batch's stream sequences."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'record.db'}")
    SQLModel.metadata.create_all(engine)
    runner = ProjectionRunner(
        consumer="record",
        stream="LINTAS",
        projection=RecordProjection(),
        engine=engine,
        on_commit=[lambda batch: applied.extend(seq for seq, _ in batch)],
    )
    return runner, engine
