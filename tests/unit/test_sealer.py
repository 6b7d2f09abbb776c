"""A Sealer's rounds: a seal is logged by its range (never an event's content), a failed
round is logged and the next round seals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from lintas.audit.sealer import Sealer
from lintas.audit.seals import Seal, SealRaced
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import SigningKeyError


def _seal(seq: int = 3) -> Seal:
    return Seal.from_doc(
        seq,
        {
            "type": "lintas.seal",
            "stream": "LINTAS",
            "first_seq": 11,
            "last_seq": 20,
            "count": 10,
            "prev_digest": "sha256:" + "0" * 64,
            "digest": "sha256:" + "1" * 64,
            "sealed_at": "2026-12-05T10:00:00+00:00",
            "sealed_by": "watchdog",
            "keyid": "watchdog:0123456789abcdef",
            "signature": "c2ln",
        },
    )


def _rounds(*outcomes: Seal | Exception | None) -> Callable[[], Awaitable[Seal | None]]:
    """A seal function whose rounds give ``outcomes`` in turn (an exception is raised)."""
    queue = list(outcomes)

    async def seal() -> Seal | None:
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return seal


async def test_a_round_logs_the_seal_by_its_range_and_hands_it_on() -> None:
    sealed: list[Seal] = []
    sealer = Sealer(_rounds(_seal(), None), 60, on_seal=sealed.append)
    with capture_logs() as logs:
        assert await sealer.round() == _seal()
        assert await sealer.round() is None  # nothing new: nothing said
    assert sealed == [_seal()]
    assert logs == [
        {
            "event": "seal.published",
            "log_level": "info",
            "stream": "LINTAS",
            "first_seq": 11,
            "last_seq": 20,
            "count": 10,
            "seal_seq": 3,
            "sealed_by": "watchdog",
        }
    ]


@pytest.mark.parametrize(
    ("error", "level", "event"),
    [
        (BusUnavailable("reading LINTAS: NATS unavailable"), "warning", "seal.deferred"),
        (SigningKeyError("watchdog has no signing key"), "error", "seal.failed"),
        (SealRaced("another sealer sealed LINTAS after seal 1 first"), "warning", "seal.raced"),
        (RuntimeError("a bug"), "error", "seal.failed"),
    ],
)
async def test_a_failed_round_is_logged_and_returns_nothing(
    error: Exception, level: str, event: str
) -> None:
    sealer = Sealer(_rounds(error), 60)
    with capture_logs() as logs:
        assert await sealer.round() is None
    assert [(log["event"], log["log_level"]) for log in logs] == [(event, level)]
    assert str(error) in logs[0]["error"]


async def test_the_loop_seals_again_after_failed_rounds() -> None:
    sealed = asyncio.Event()
    sealer = Sealer(
        _rounds(BusUnavailable("down"), SigningKeyError("no key"), _seal()),
        0.001,
        on_seal=lambda _seal: sealed.set(),
    )
    with capture_logs() as logs:
        task = asyncio.create_task(sealer.run())
        try:
            async with asyncio.timeout(10):
                await sealed.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [log["event"] for log in logs] == ["seal.deferred", "seal.failed", "seal.published"]


async def test_a_failing_hand_on_is_logged_and_the_loop_goes_on() -> None:
    """``lintas seal --every`` prints each seal there: a closed stdout must not end sealing."""
    handed: list[Seal] = []

    def hand_on(seal: Seal) -> None:
        handed.append(seal)
        if len(handed) == 1:
            raise BrokenPipeError("stdout closed")

    sealer = Sealer(_rounds(_seal(1), _seal(2)), 60, on_seal=hand_on)
    with capture_logs() as logs:
        assert await sealer.round() is None
        assert await sealer.round() == _seal(2)
    assert [log["event"] for log in logs] == ["seal.published", "seal.failed", "seal.published"]
    assert handed == [_seal(1), _seal(2)]


@pytest.mark.parametrize("interval", [0, -1])
def test_a_sealer_needs_a_positive_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        Sealer(_rounds(), interval)
