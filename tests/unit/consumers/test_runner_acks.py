"""The consumer edge when the server does not confirm a batch's acknowledgement: the batch
stays applied, nothing raises, and its redelivery is acknowledged without applying again.

Stand-ins replace nats-py's messages (their ack confirmation is what is made to fail);
the runner, the projection and the SQLite store are the real ones."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import nats.errors
import pytest
from sqlmodel import Session
from structlog.testing import capture_logs

from lintas.consumers.projections import load_record
from lintas.contracts import encode
from lintas.infra.db import read_position
from tests.support.events import CASE, CONSENT, OPENED
from tests.support.runner import STORED_AT, StubMsg, runner_for


def _msgs(
    *, delivered: int = 1, confirm: bool = True, fails: type[Exception] | None = None
) -> list[StubMsg]:
    return [
        StubMsg(seq, encode(event.envelope), event.envelope.nats_subject, delivered, confirm, fails)
        for seq, event in ((1, OPENED), (2, CONSENT))
    ]


async def test_an_unconfirmed_ack_leaves_the_batch_applied_and_its_redelivery_is_skipped(
    tmp_path: Path,
) -> None:
    applied: list[int] = []
    runner, engine = runner_for(tmp_path, applied)
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
    runner, _ = runner_for(tmp_path, applied)
    lost = _msgs(confirm=False, fails=nats.errors.ConnectionClosedError)
    with capture_logs() as logs:
        await runner.handle(lost)
    assert [e.get("error") for e in logs if e["event"] == "batch.ack_unconfirmed"] == [
        "ConnectionClosedError"
    ]
    assert applied == [1, 2]


async def test_an_ack_that_fails_for_a_bug_still_raises(tmp_path: Path) -> None:
    runner, _ = runner_for(tmp_path, [])
    with pytest.raises(nats.errors.MsgAlreadyAckdError):
        await runner.handle(_msgs(confirm=False, fails=nats.errors.MsgAlreadyAckdError))


async def test_the_runner_counts_what_it_applied_and_knows_how_far_it_acknowledged(
    tmp_path: Path,
) -> None:
    # What a process's metrics read (lintas.consumers.metrics): counts, and stored times.
    applied: list[int] = []
    runner, _ = runner_for(tmp_path, applied)
    assert (runner.applied, runner.holding_since, runner.acked_through) == (0, None, None)
    await runner.handle(_msgs())
    assert runner.applied == 2
    assert runner.quarantined == 0
    assert runner.holding_since is None  # nothing in hand once acknowledged
    assert runner.acked_through == (STORED_AT + timedelta(seconds=2)).timestamp()
    await runner.handle(_msgs(delivered=2))  # a redelivery: acknowledged, not applied again
    assert runner.applied == 2
