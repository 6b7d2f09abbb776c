"""A Checkpointer's rounds: a checkpoint is logged by its range (never an event's content), a failed
round is logged and the next round checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from lintas.audit.checkpointer import Checkpointer
from lintas.audit.checkpoints import Checkpoint, CheckpointRaced
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import SigningKeyError
from lintas.infra.nats.outage import end_tasks


def _checkpoint(seq: int = 3) -> Checkpoint:
    return Checkpoint.from_doc(
        seq,
        {
            "type": "lintas.checkpoint",
            "stream": "LINTAS",
            "first_seq": 11,
            "last_seq": 20,
            "count": 10,
            "prev_digest": "sha256:" + "0" * 64,
            "digest": "sha256:" + "1" * 64,
            "signed_at": "2026-12-05T10:00:00+00:00",
            "signed_by": "watchdog",
            "keyid": "watchdog:0123456789abcdef",
            "signature": "c2ln",
        },
    )


def _rounds(*outcomes: Checkpoint | Exception | None) -> Callable[[], Awaitable[Checkpoint | None]]:
    """A checkpoint function whose rounds give ``outcomes`` in turn (an exception is raised)."""
    queue = list(outcomes)

    async def checkpoint() -> Checkpoint | None:
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return checkpoint


async def test_a_round_logs_the_checkpoint_by_its_range_and_hands_it_on() -> None:
    checkpointed: list[Checkpoint] = []
    checkpointer = Checkpointer(_rounds(_checkpoint(), None), 60, on_checkpoint=checkpointed.append)
    with capture_logs() as logs:
        assert await checkpointer.round() == _checkpoint()
        assert await checkpointer.round() is None  # nothing new: nothing said
    assert checkpointed == [_checkpoint()]
    assert logs == [
        {
            "event": "checkpoint.published",
            "log_level": "info",
            "stream": "LINTAS",
            "first_seq": 11,
            "last_seq": 20,
            "count": 10,
            "checkpoint_seq": 3,
            "signed_by": "watchdog",
        }
    ]


@pytest.mark.parametrize(
    ("error", "level", "event"),
    [
        (BusUnavailable("reading LINTAS: NATS unavailable"), "warning", "checkpoint.deferred"),
        (SigningKeyError("watchdog has no signing key"), "error", "checkpoint.failed"),
        (
            CheckpointRaced("another checkpointer checkpointed LINTAS after checkpoint 1 first"),
            "warning",
            "checkpoint.raced",
        ),
        (RuntimeError("a bug"), "error", "checkpoint.failed"),
    ],
)
async def test_a_failed_round_is_logged_and_returns_nothing(
    error: Exception, level: str, event: str
) -> None:
    checkpointer = Checkpointer(_rounds(error), 60)
    with capture_logs() as logs:
        assert await checkpointer.round() is None
    assert [(log["event"], log["log_level"]) for log in logs] == [(event, level)]
    assert str(error) in logs[0]["error"]


async def test_the_loop_checkpoints_again_after_failed_rounds() -> None:
    checkpointed = asyncio.Event()
    checkpointer = Checkpointer(
        _rounds(BusUnavailable("down"), SigningKeyError("no key"), _checkpoint()),
        0.001,
        on_checkpoint=lambda _checkpoint: checkpointed.set(),
    )
    with capture_logs() as logs:
        task = asyncio.create_task(checkpointer.run())
        try:
            async with asyncio.timeout(10):
                await checkpointed.wait()
        finally:
            await end_tasks([task])
    assert [log["event"] for log in logs] == [
        "checkpoint.deferred",
        "checkpoint.failed",
        "checkpoint.published",
    ]


async def test_a_failing_hand_on_is_logged_and_the_loop_goes_on() -> None:
    """``lintas checkpoint --every`` prints each checkpoint there: a closed stdout must not end
    checkpointing."""
    handed: list[Checkpoint] = []

    def hand_on(checkpoint: Checkpoint) -> None:
        handed.append(checkpoint)
        if len(handed) == 1:
            raise BrokenPipeError("stdout closed")

    checkpointer = Checkpointer(_rounds(_checkpoint(1), _checkpoint(2)), 60, on_checkpoint=hand_on)
    with capture_logs() as logs:
        assert await checkpointer.round() is None
        assert await checkpointer.round() == _checkpoint(2)
    assert [log["event"] for log in logs] == [
        "checkpoint.published",
        "checkpoint.failed",
        "checkpoint.published",
    ]
    assert handed == [_checkpoint(1), _checkpoint(2)]


@pytest.mark.parametrize("interval", [0, -1])
def test_a_checkpointer_needs_a_positive_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        Checkpointer(_rounds(), interval)
