"""The consumer edge meets a key its verifier lacks: it learns the registry afresh, then
applies in stream order what holds and quarantines what does not, each message once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from lintas.contracts import BROADCAST, Event, encode
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier
from lintas.infra.observability.tracing import STREAM_SEQ
from tests.support.events import CASE, OPENED, at, ev
from tests.support.runner import StubMsg, runner_for
from tests.support.tracing import SpanCapture

KEMLU = Signer("kemlu", Ed25519PrivateKey.generate())
KP2MI = Signer("kp2mi", Ed25519PrivateKey.generate())  # published after the start
STRANGER = Signer("kp2mi", Ed25519PrivateKey.generate())  # in no registry


def _entry(signer: Signer) -> KeyEntry:
    return KeyEntry(
        signer.agency, signer.keyid, signer._key.public_key(), datetime(2000, 1, 1, tzinfo=UTC)
    )


def _msg(seq: int, event: Event, signer: Signer) -> StubMsg:
    envelope = signer.sign(event.envelope)
    return StubMsg(seq, encode(envelope), envelope.nats_subject)


def _assigned(minutes: float) -> Event:
    # The coordinator hands the case back to the opener, which then closes it.
    data = {"owner": "kemlu", "officer_ref": "P2MI-7"}
    return ev(
        "case.assigned", data, source="kp2mi", target=BROADCAST, case_id=CASE, time=at(minutes)
    )


def _closed(minutes: float) -> Event:
    data = {"reason": "reintegrated"}
    return ev("case.closed", data, source="kemlu", target=BROADCAST, case_id=CASE, time=at(minutes))


async def test_a_key_learned_mid_batch_keeps_stream_order_and_one_span_each(
    tmp_path: Path,
) -> None:
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return Registry([_entry(KEMLU), _entry(KP2MI)])

    applied: list[int] = []
    runner, _ = runner_for(tmp_path, applied)
    runner.verifier = Verifier(Registry([_entry(KEMLU)]), refresh=refresh)
    capture = SpanCapture()
    runner._tracer = capture.provider.get_tracer("test")
    msgs = [
        _msg(1, OPENED, KEMLU),
        _msg(2, _assigned(1), KP2MI),  # unknown until learned
        _msg(3, _closed(2), KEMLU),
        _msg(4, _assigned(3), STRANGER),  # unknown for good
    ]
    with capture_logs() as logs:
        await runner.handle(msgs)
    assert applied == [1, 2, 3]
    assert reads == ["read"]
    rejected = [e for e in logs if e["event"] == "message.rejected"]
    assert [(e["stream_seq"], e["reason"]) for e in rejected] == [
        (4, f"key {STRANGER.keyid} is not in the registry")
    ]
    ended = sorted((s.attributes or {}).get(STREAM_SEQ) for s in capture.spans())
    assert ended == [1, 2, 3, 4]


async def test_a_key_published_just_after_the_verifier_s_read_is_waited_for(
    tmp_path: Path,
) -> None:
    """The verifier read the registry a moment before KP2MI's key was published (within
    its interval): the batch waits for the next read allowed and applies, rather than
    quarantining an admitted event."""
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        known = [_entry(KEMLU), _entry(KP2MI)] if len(reads) > 1 else [_entry(KEMLU)]
        return Registry(known)

    applied: list[int] = []
    runner, _ = runner_for(tmp_path, applied)
    runner.verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=0.2)
    assert await runner.verifier.learn()
    with capture_logs() as logs:
        await runner.handle([_msg(1, OPENED, KEMLU), _msg(2, _assigned(1), KP2MI)])
    assert applied == [1, 2]
    assert reads == ["read", "read"]
    assert not [e for e in logs if e["event"] == "message.rejected"]
