"""The Publisher against a real JetStream: stored once, typed errors, nothing on bad input."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext

from lintas.contracts import (
    ContractError,
    InvalidEventData,
    PermanentError,
    SubjectError,
    new_case_id,
    uuid7,
)
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import ensure_stream
from lintas.infra.settings import Settings
from lintas.producers import BusUnavailable, Publisher, PublishRejected

pytestmark = pytest.mark.nats

REFERRAL = {"referral_id": "ref-1", "service": "psychosocial_assessment"}
REQUEST = {"request_id": "doc-1", "kind": "nik"}  # needs no consent: it shares nothing


async def _stored(js: JetStreamContext, settings: Settings) -> int:
    return (await js.stream_info(settings.stream)).state.messages


async def test_publish_stores_the_envelope_with_dedup_header(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    case_id = new_case_id()
    published = await Publisher(js, "kp2mi", stream=settings.stream).publish(
        "document.requested", REQUEST, case_id=case_id, target="dukcapil"
    )
    assert published.stream_seq == 1
    assert not published.duplicate
    stored = await js.get_msg(settings.stream, 1)
    assert stored.subject == f"lintas.kp2mi.dukcapil.document.requested.{case_id}"
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == published.event.id
    assert stored.data is not None
    body = json.loads(stored.data)
    assert body["id"] == published.event.id
    assert (body["source"], body["target"], body["subject"]) == ("kp2mi", "dukcapil", case_id)
    assert (body["type"], body["dataversion"]) == ("document.requested", 2)
    assert body["dataschema"] == "lintas:schemas/document.requested/v2.json"
    assert body["data"] == REQUEST


async def test_same_event_id_is_stored_once(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, settings)
    publisher = Publisher(js, "kp2mi", stream=settings.stream)
    event_id = str(uuid7())
    case_id = new_case_id()
    first = await publisher.publish(
        "document.requested", REQUEST, case_id=case_id, target="dukcapil", event_id=event_id
    )
    again = await publisher.publish(
        "document.requested", REQUEST, case_id=case_id, target="dukcapil", event_id=event_id
    )
    assert again.duplicate
    assert again.stream_seq == first.stream_seq
    assert await _stored(js, settings) == 1


@pytest.mark.parametrize(
    ("event_type", "data", "target", "error", "words"),
    [
        (
            "referral.requested",
            {"referral_id": "r", "service": "massage"},
            "kemenpppa",
            InvalidEventData,
            ["referral.requested v2", "'service'"],
        ),
        (
            "referral.requested",
            {"service": "shelter"},
            "kemenpppa",
            InvalidEventData,
            ["referral.requested v2", "'referral_id'"],
        ),
        (
            "referral.requested",
            {**REFERRAL, "child_name": "x"},
            "kemenpppa",
            InvalidEventData,
            ["'child_name'"],
        ),
        ("referral.requested", REFERRAL, "kp2mi", SubjectError, ["itself"]),
        ("referral.requested", REFERRAL, "nobody", SubjectError, ["nobody"]),
        ("referral.teleported", REFERRAL, "kemenpppa", ContractError, ["referral.teleported"]),
    ],
)
async def test_invalid_event_raises_contract_error_and_publishes_nothing(
    js: JetStreamContext,
    settings: Settings,
    event_type: str,
    data: dict[str, object],
    target: str,
    error: type[Exception],
    words: list[str],
) -> None:
    await ensure_stream(js, settings)
    with pytest.raises(error) as raised:
        await Publisher(js, "kp2mi", stream=settings.stream).publish(
            event_type, data, case_id=new_case_id(), target=target
        )
    for word in words:
        assert word in str(raised.value)
    assert await _stored(js, settings) == 0


async def test_broker_down_is_a_transient_bus_error(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    await nats_server.stop()
    publisher = Publisher(js, "kp2mi", stream=settings.stream, timeout=0.5)
    with pytest.raises(BusUnavailable, match=r"referral\.requested"):
        await publisher.publish(
            "referral.requested", REFERRAL, case_id=new_case_id(), target="kemenpppa"
        )


async def test_no_stream_is_a_bus_error_naming_the_stream(
    js: JetStreamContext, settings: Settings
) -> None:
    publisher = Publisher(js, "kp2mi", stream=settings.stream, timeout=2)
    with pytest.raises(BusUnavailable, match=r"no JetStream stream answers.*LINTAS"):
        await publisher.publish(
            "document.requested", REQUEST, case_id=new_case_id(), target="dukcapil"
        )


async def test_a_stream_that_refuses_is_a_permanent_rejection(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    publisher = Publisher(js, "kp2mi", stream="ELSEWHERE")  # the subject is LINTAS's
    with pytest.raises(PublishRejected, match="ELSEWHERE") as raised:
        await publisher.publish(
            "document.requested", REQUEST, case_id=new_case_id(), target="dukcapil"
        )
    assert isinstance(raised.value, PermanentError)
    assert await _stored(js, settings) == 0
