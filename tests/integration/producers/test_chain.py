"""Each case's events form a hash chain, kept under concurrent publishers."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.js import JetStreamContext

from lintas.contracts import (
    BROADCAST,
    ConsentMissing,
    build_data,
    case_filter,
    encode,
    make_event,
    message_hash,
    new_case_id,
)
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import declare_platform
from lintas.infra.settings import Settings
from tests.support.helpers import consent, signed

pytestmark = pytest.mark.nats

REQUEST = {"request_id": "doc-1", "kind": "nik"}  # needs no consent: it shares nothing


async def _case_messages(js: JetStreamContext, settings: Settings, case_id: str) -> list[bytes]:
    info = await js.stream_info(settings.stream)
    found = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(settings.stream, seq)
        if msg.subject and msg.subject.endswith(case_id):
            found.append(msg.data or b"")
    return found


async def test_concurrent_publishers_keep_each_case_chained(
    js: JetStreamContext, settings: Settings
) -> None:
    await declare_platform(js, settings, [])
    case_id, other = new_case_id(), new_case_id()
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    opened = await kemlu.publish(
        "case.opened",
        {
            "situation": "left_behind",
            "location": {"country": "ID"},
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
        },
        case_id=case_id,
        target="kp2mi",
    )
    assert opened.event.envelope.prevhash is None
    await consent(kemlu, case_id, ["kemensos"], scopes=["services"])

    async def requests(publisher: object, prefix: str, case: str) -> None:
        for n in range(15):
            await publisher.publish(  # type: ignore[attr-defined]
                "document.requested" if prefix == "k" else "referral.requested",
                {"request_id": f"{prefix}{n}", "kind": "kk"}
                if prefix == "k"
                else {"referral_id": f"{prefix}{n}", "service": "shelter"},
                case_id=case,
                target="kemlu" if prefix == "k" else "kemensos",
            )

    # Two agencies race on one case (and one more on another): no event lost, each chained.
    await asyncio.gather(
        requests(kp2mi, "k", case_id), requests(kemlu, "r", case_id), requests(kp2mi, "k", other)
    )
    chain = await _case_messages(js, settings, case_id)
    assert len(chain) == 32
    docs = [json.loads(raw) for raw in chain]
    assert docs[0].get("prevhash") is None
    for previous, doc in zip(chain, docs[1:], strict=False):
        assert doc["prevhash"] == message_hash(previous)
    assert len({d["id"] for d in docs}) == 32


async def test_a_retried_publish_returns_what_was_stored(
    js: JetStreamContext, settings: Settings
) -> None:
    from lintas.contracts import uuid7

    await declare_platform(js, settings, [])
    kemlu = signed(js, settings, "kemlu")
    case_id, event_id = new_case_id(), str(uuid7())
    data = {"reason": "no_longer_needed"}
    first = await kemlu.publish(
        "case.closed", data, case_id=case_id, target="all", event_id=event_id
    )
    again = await kemlu.publish(
        "case.closed", data, case_id=case_id, target="all", event_id=event_id
    )
    assert (again.duplicate, again.stream_seq) == (True, first.stream_seq)
    assert again.event.envelope == first.event.envelope
    assert len(await _case_messages(js, settings, case_id)) == 1


async def test_a_publish_conditional_on_the_head_is_a_compare_and_set(
    js: JetStreamContext, settings: Settings
) -> None:
    """Two publishers decide on the same head: one event is appended, the other refused."""
    from lintas.producers import HeadMoved

    await declare_platform(js, settings, [])
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    case_id = new_case_id()
    # A referral needs a consent covering the agency referred to (the consent gate).
    await consent(kemlu, case_id, ["kemensos"], scopes=["services"])
    head = await kp2mi.head(case_id)
    assert head.seq == 1

    async def publish(publisher: object, referral_id: str) -> object:
        try:
            return await publisher.publish(  # type: ignore[attr-defined]
                "referral.requested",
                {"referral_id": referral_id, "service": "shelter"},
                case_id=case_id,
                target="kemensos",
                expected_head=head,
            )
        except HeadMoved as exc:
            return exc

    outcomes = await asyncio.gather(publish(kemlu, "a"), publish(kp2mi, "b"))
    assert sorted(type(o).__name__ for o in outcomes) == ["HeadMoved", "Published"]
    chain = await _case_messages(js, settings, case_id)
    assert len(chain) == 2
    assert json.loads(chain[1])["prevhash"] == message_hash(chain[0])
    # The head moved: the same head no longer admits anything, not even a retry.
    with pytest.raises(HeadMoved):
        await kp2mi.publish(
            "referral.requested",
            {"referral_id": "c", "service": "shelter"},
            case_id=case_id,
            target="kemensos",
            expected_head=head,
        )
    assert len(await _case_messages(js, settings, case_id)) == 2


async def _hpub(url: str, subject: str, header_lines: list[str], body: bytes) -> None:
    """Publish with a header block written out, as no client's dict of headers can: a key
    said twice. Then PING: once PONG is back, the server has taken the publish."""
    host, _, port = url.removeprefix("nats://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        block = ("NATS/1.0\r\n" + "".join(f"{line}\r\n" for line in header_lines) + "\r\n").encode()
        writer.write(f"HPUB {subject} {len(block)} {len(block) + len(body)}\r\n".encode())
        writer.write(block + body + b"\r\nPING\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == b"PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_head_whose_hold_is_said_twice_is_not_taken_at_its_word(
    js: JetStreamContext, settings: Settings, nats_server: EmbeddedNats
) -> None:
    """A head's stored expected-sequence headers are no proof that nothing of the case lies
    before it: the server checks the first of a repeated header (the true one here), and
    nats-py's dict keeps the last, which names the event the gate knows, as if the
    withdrawal stored between were not there. The gate reads the case, and refuses."""
    await declare_platform(js, settings, [])
    case_id = new_case_id()
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    await consent(kemlu, case_id, ["kp2mi", "kemensos"])
    referral = {"referral_id": "ref-1", "service": "shelter"}
    known = await kp2mi.publish("referral.requested", referral, case_id=case_id, target="kemensos")
    withdrawn = await kemlu.publish(
        "consent.withdrawn",
        {"consent_id": "consent-1", "notified": ["kemensos"]},
        case_id=case_id,
        target=BROADCAST,
    )
    envelope = make_event(
        build_data("document.requested", REQUEST),
        source="kemlu",
        target="dukcapil",
        case_id=case_id,
    ).envelope
    envelope = Signer.load(settings, "kemlu").sign(envelope)
    before = (await js.stream_info(settings.stream)).state.last_seq
    await _hpub(
        nats_server.url,
        envelope.nats_subject,
        [
            f"Nats-Msg-Id: {envelope.id}",
            f"Nats-Expected-Last-Subject-Sequence: {withdrawn.stream_seq}",
            f"Nats-Expected-Last-Subject-Sequence: {known.stream_seq}",
            f"Nats-Expected-Last-Subject-Sequence-Subject: {case_filter(case_id)}",
        ],
        encode(envelope),
    )
    stored = await js.get_msg(settings.stream, subject=case_filter(case_id))
    if stored.seq != before + 1 or (stored.headers or {}).get(
        "Nats-Expected-Last-Subject-Sequence"
    ) != str(known.stream_seq):
        pytest.skip("this nats-server or nats-py reads a repeated header otherwise")
    with pytest.raises(ConsentMissing):
        await kp2mi.publish(
            "referral.requested",
            {"referral_id": "ref-2", "service": "shelter"},
            case_id=case_id,
            target="kemensos",
        )
