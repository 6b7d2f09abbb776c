"""A Verifier given a ``refresh`` learns keys published after it was built."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from lintas.contracts import (
    BROADCAST,
    Envelope,
    SignatureError,
    build_data,
    encode,
    make_event,
    new_case_id,
)
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, UnknownKey, Verifier

KEMLU = Signer("kemlu", Ed25519PrivateKey.generate())
ENTRY = KeyEntry("kemlu", KEMLU.keyid, KEMLU._key.public_key(), datetime(2000, 1, 1, tzinfo=UTC))


def _signed(signer: Signer = KEMLU, source: str = "kemlu") -> tuple[bytes, Envelope]:
    event = make_event(
        build_data("case.closed", {"reason": "reintegrated"}),
        source=source,
        target=BROADCAST,
        case_id=new_case_id(),
    )
    # Signed as ``signer`` whoever the source (Signer.sign refuses another's source).
    keyed = event.envelope.model_copy(update={"source": signer.agency})
    envelope = signer.sign(keyed).model_copy(update={"source": source})
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
    """A check meeting a key id within the interval after a read (the key published just
    after it) waits for the next read allowed, rather than refusing for good."""
    reads: list[float] = []

    async def refresh() -> Registry:
        reads.append(time.monotonic())
        return Registry([ENTRY]) if len(reads) > 1 else Registry()

    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=0.2)
        assert await verifier.learn()  # read just now, before the key was published
        assert await verifier.learn() is False  # too soon for another read
        await verifier.check(body, envelope)  # waits for the next read allowed
        assert len(reads) == 2
        assert reads[1] - reads[0] >= 0.2

    asyncio.run(run())


def test_a_document_s_key_published_just_after_a_read_is_learned_too() -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry([ENTRY]) if len(reads) > 1 else Registry()

    async def run() -> None:
        document = KEMLU.sign_document({"case": "C1", "gen": 1})
        verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=0.2)
        assert await verifier.learn()
        await verifier.check_document(document, signer="kemlu", at=datetime.now(UTC))
        assert reads == ["read", "read"]
        with pytest.raises(SignatureError, match="kp2mi's but is signed with kemlu's"):
            await verifier.check_document(document, signer="kp2mi", at=datetime.now(UTC))
        assert reads == ["read", "read"]  # a known key: nothing read

    asyncio.run(run())


def test_made_up_key_ids_read_the_registry_once_per_interval_however_many_wait() -> None:
    """Junk with random key ids, all at once: the checks that wait share one read; none
    reads more often than the interval allows, and each is refused."""
    reads: list[float] = []

    async def refresh() -> Registry:
        reads.append(time.monotonic())
        return Registry([ENTRY])

    async def run() -> None:
        verifier = Verifier(Registry([ENTRY]), refresh=refresh, refresh_interval_s=0.2)
        assert await verifier.learn()
        strangers = [Signer("kemlu", Ed25519PrivateKey.generate()) for _ in range(20)]
        junk = [_signed(stranger) for stranger in strangers]
        outcomes = await asyncio.gather(
            *(verifier.check(body, envelope) for body, envelope in junk),
            return_exceptions=True,
        )
        assert all(isinstance(o, UnknownKey) for o in outcomes)
        assert len(reads) == 2  # the first, and the one all twenty waited for
        for body, envelope in junk[:3]:  # one after another: each waits for the next read
            with pytest.raises(UnknownKey):
                await verifier.check(body, envelope)
        assert len(reads) == 5
        gaps = [b - a for a, b in itertools.pairwise(reads)]
        assert min(gaps) >= 0.2

    asyncio.run(run())


def test_a_walk_of_the_log_waits_for_one_read_whatever_it_meets() -> None:
    """Events written around admission with made-up key ids, met one after another in a
    walk of the log: one read begun after the walk began serves them all (every key id on
    the log then was registered by then), so the walk is held up once, not once each."""
    reads: list[float] = []

    async def refresh() -> Registry:
        reads.append(time.monotonic())
        return Registry([ENTRY])

    async def run() -> None:
        verifier = Verifier(Registry([ENTRY]), refresh=refresh, refresh_interval_s=0.2)
        assert await verifier.learn()
        walk = time.monotonic()
        for _ in range(5):
            body, envelope = _signed(Signer("kemlu", Ed25519PrivateKey.generate()))
            with pytest.raises(UnknownKey):
                await verifier.check(body, envelope, asked=walk)
        assert len(reads) == 2  # the first, and the one the walk waited for once

    asyncio.run(run())


def test_a_key_id_naming_another_holder_is_refused_without_a_read() -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry()

    async def run() -> None:
        body, envelope = _signed(Signer("kp2mi", Ed25519PrivateKey.generate()), source="kemlu")
        verifier = Verifier(Registry(), refresh=refresh)
        with pytest.raises(UnknownKey):
            await verifier.check(body, envelope)
        assert reads == []

    asyncio.run(run())


def test_the_next_read_further_off_than_wait_s_refuses_at_once() -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry([ENTRY])

    async def run() -> None:
        body, envelope = _signed()
        verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=3600, wait_s=0.1)
        verifier._refreshed_at = time.monotonic()  # read just now, the key not there yet
        started = time.monotonic()
        with pytest.raises(UnknownKey):
            await verifier.check(body, envelope)
        assert time.monotonic() - started < 1
        assert reads == []

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
