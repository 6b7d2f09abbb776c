"""The consumer edge when the server does not confirm a batch's acknowledgement: the batch
stays applied, nothing raises, and its redelivery is acknowledged without applying again.

Stand-ins replace nats-py's messages (their ack confirmation is what is made to fail);
the runner, the projection and the SQLite store are the real ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats.errors
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel
from structlog.testing import capture_logs

from lintas.consumers.projections import RecordProjection, load_record
from lintas.consumers.runner import ProjectionRunner
from lintas.contracts import encode
from lintas.infra.db import create_db_engine, read_position
from tests.unit.consumers.test_privacy_folds import CASE, CONSENT, OPENED


@dataclass
class _Msg:
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
        return SimpleNamespace(sequence=sequence, num_delivered=self.delivered)

    async def ack(self) -> None:
        self.acks.append("ack")
        if not self.confirm and self.fails is not None:
            raise self.fails

    async def ack_sync(self) -> None:
        self.acks.append("ack_sync")
        if not self.confirm:
            raise self.fails or nats.errors.TimeoutError


def _msgs(
    *, delivered: int = 1, confirm: bool = True, fails: type[Exception] | None = None
) -> list[_Msg]:
    return [
        _Msg(seq, encode(event.envelope), event.envelope.nats_subject, delivered, confirm, fails)
        for seq, event in ((1, OPENED), (2, CONSENT))
    ]


def _runner(tmp_path: Path, applied: list[int]) -> tuple[ProjectionRunner, Engine]:
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


async def test_an_unconfirmed_ack_leaves_the_batch_applied_and_its_redelivery_is_skipped(
    tmp_path: Path,
) -> None:
    applied: list[int] = []
    runner, engine = _runner(tmp_path, applied)
    first = _msgs(confirm=False)
    with capture_logs() as logs:
        await runner.handle(first)  # the server never confirms: no exception
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["batch.ack_unconfirmed"]
    assert [m.acks for m in first] == [["ack"], ["ack_sync"]]
    again = _msgs(delivered=2)
    await runner.handle(again)  # redelivered after ack_wait: acked, not applied again
    assert [m.acks for m in again] == [["ack"], ["ack_sync"]]
    assert applied == [1, 2]
    with Session(engine) as session:
        assert read_position(session, "record", "LINTAS").position == 2
        record = load_record(session, CASE)
    assert record is not None
    assert record.last_seq == 2


async def test_a_connection_lost_while_acking_leaves_the_batch_applied(tmp_path: Path) -> None:
    applied: list[int] = []
    runner, _ = _runner(tmp_path, applied)
    lost = _msgs(confirm=False, fails=nats.errors.ConnectionClosedError)
    with capture_logs() as logs:
        await runner.handle(lost)
    assert [e.get("error") for e in logs if e["event"] == "batch.ack_unconfirmed"] == [
        "ConnectionClosedError"
    ]
    assert applied == [1, 2]


async def test_an_ack_that_fails_for_a_bug_still_raises(tmp_path: Path) -> None:
    runner, _ = _runner(tmp_path, [])
    with pytest.raises(nats.errors.MsgAlreadyAckdError):
        await runner.handle(_msgs(confirm=False, fails=nats.errors.MsgAlreadyAckdError))
