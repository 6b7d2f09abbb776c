"""A Verifier given a ``refresh`` learns keys published after it was built."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from lintas.contracts import BROADCAST, Envelope, build_data, encode, make_event, new_case_id
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, UnknownKey, Verifier

KEMLU = Signer("kemlu", Ed25519PrivateKey.generate())
ENTRY = KeyEntry("kemlu", KEMLU.keyid, KEMLU._key.public_key(), datetime(2000, 1, 1, tzinfo=UTC))


def _signed() -> tuple[bytes, Envelope]:
    event = make_event(
        build_data("case.closed", {"reason": "reintegrated"}),
        source="kemlu",
        target=BROADCAST,
        case_id=new_case_id(),
    )
    envelope = KEMLU.sign(event.envelope)
    return encode(envelope), envelope


def test_an_unknown_key_is_learned_once_per_interval() -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry([ENTRY]) if len(reads) > 1 else Registry()

    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=3600)
        with pytest.raises(UnknownKey):
            await verifier.check(body, envelope)
        with pytest.raises(UnknownKey):  # not read again within the interval
            await verifier.check(body, envelope)
        assert reads == ["read"]
        verifier._interval = 0
        with capture_logs() as logs:
            await verifier.check(body, envelope)
        assert reads == ["read", "read"]
        assert {"event": "keys.refreshed", "learned": 1, "log_level": "info"} in logs
        assert verifier.generation == 1
        await verifier.check(body, envelope)
        assert reads == ["read", "read"]  # known now: nothing read

    asyncio.run(run())


def test_a_key_published_just_after_a_read_is_learned_at_the_next_read_allowed() -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry([ENTRY]) if len(reads) > 1 else Registry()

    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=0.2)
        assert await verifier.learn()  # read just now, before the key was published
        assert await verifier.learn() is False  # too soon for another read
        assert await verifier.learn_waiting()  # waits for the next read allowed
        assert reads == ["read", "read"]
        verifier.verify(body, envelope)

    asyncio.run(run())


@pytest.mark.parametrize(
    "failure", [BusUnavailable("no answer"), ValueError("a bucket value that is not JSON")]
)
def test_a_refresh_that_fails_leaves_the_registry_and_refuses(failure: Exception) -> None:
    async def refresh() -> Registry:
        raise failure

    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry(), refresh=refresh)
        with capture_logs() as logs, pytest.raises(UnknownKey):
            await verifier.check(body, envelope)
        assert logs[0]["event"] == "keys.refresh_failed"
        assert logs[0]["error"] == type(failure).__name__
        assert verifier.generation == 0

    asyncio.run(run())


def test_without_a_refresh_nothing_is_read() -> None:
    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry())
        assert not verifier.refreshes
        assert await verifier.learn() is False
        with pytest.raises(UnknownKey):
            await verifier.check(body, envelope)
        Verifier(Registry([ENTRY])).verify(body, envelope)

    asyncio.run(run())
