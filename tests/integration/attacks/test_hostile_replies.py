"""Attacks through the reply subjects the platform's services answer on, on a secured bus,
each attacker connected as its own identity.

A service that answers a request publishes on a subject the requester chose: the request's
reply subject (the read service) or its ``Lintas-Reply`` header (admission). It publishes
with its own permissions, wider than the requester's, so the subject must be one the
requester may read, and a subject at all (a header may hold what no NATS subject may).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lintas.contracts import new_case_id
from lintas.contracts.admission import REPLY_HEADER
from lintas.contracts.subjects import intake_subject, kv_subject, read_subject
from lintas.infra.keys.signing import registry_from_kv
from lintas.infra.nats.topology import ADMISSION_LEASES_BUCKET, KEYS_BUCKET, intake_stream
from lintas.producers._admit import send
from tests.support.attack import Case, Platform, platform_running

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.nats]


@pytest_asyncio.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Platform]:
    """The attack platform with the read service running as ``platform`` (one per test: a
    hole confirmed here may leave the platform broken for whatever runs after it)."""
    async with platform_running(tmp_path, reading=True) as platform:
        yield platform


async def _asked_with_reply(bus: Platform, identity: str, reply: str) -> None:
    """``identity`` asks the read service something, naming ``reply`` as where the answer
    goes; returns once the service has dealt with that request."""
    operation, request = (
        ("oldest-unacked", {"consumer": "record"})
        if identity == "operator"
        else ("head", {"case": "C00000000000000000000000000"})
    )
    hostile = await bus.client(identity)
    body = json.dumps(request).encode()
    await hostile.conn.publish(read_subject(identity, operation), body, reply=reply)
    # Answered after the hostile request (one subscription, its messages taken in order,
    # each answer a single round trip to the stream): by then the service has answered, or
    # refused to answer, the one before it.
    answer = await hostile.conn.request(read_subject(identity, operation), body, timeout=10)
    assert "code" not in json.loads(answer.data)
    await bus.reader.conn.flush()


@pytest.mark.parametrize("identity", ["kemlu", "desa-3525012001", "operator"])
async def test_a_reply_subject_in_the_key_registry_does_not_overwrite_an_agencys_keys(
    bus: Platform, identity: str
) -> None:
    before = {e.keyid for e in (await registry_from_kv(bus.reader.js())).entries()}
    await _asked_with_reply(bus, identity, kv_subject(KEYS_BUCKET, "kp2mi"))
    after = {e.keyid for e in (await registry_from_kv(bus.reader.js())).entries()}
    assert after == before


async def test_a_reply_subject_on_an_admission_lease_does_not_take_the_partition(
    bus: Platform,
) -> None:
    leases = await bus.reader.js().key_value(ADMISSION_LEASES_BUCKET)
    await _asked_with_reply(bus, "kemlu", kv_subject(ADMISSION_LEASES_BUCKET, "0"))
    held = await leases.get("0")
    assert bytes(held.value or b"") == bus.service.instance.encode()


async def test_a_reply_header_that_is_no_subject_does_not_cut_admission_off(
    bus: Platform,
) -> None:
    case = Case(new_case_id())
    kemlu = await bus.client("kemlu")
    await kemlu.js().publish(
        intake_subject("kemlu", case.id),
        b"{}",
        stream=intake_stream(bus.settings),
        headers={REPLY_HEADER: "_INBOX.kemlu.poison 0 0"},
    )
    # Another agency's honest event of the same case comes after it on the same partition.
    honest = bus.event(case, "case.opened", "kp2mi")
    client = await bus.client("kp2mi")
    answer = await send(
        client.conn,
        client.js(),
        honest,
        stream=intake_stream(bus.settings),
        wait_s=10,
        what="an honest opening after a poisoned reply header",
    )
    assert answer.admitted, answer
    assert bus.service.nc.stats["reconnects"] == 0
    info = await bus.reader.js().stream_info(intake_stream(bus.settings))
    assert info.state.messages == 0  # the poisoned one was answered nowhere and acknowledged


async def test_the_read_service_still_answers_an_agency_on_its_own_inbox(bus: Platform) -> None:
    """The honest path the fix above must keep: a request with the client's own inbox."""
    kemlu = await bus.client("kemlu")
    case = await bus.opened("kemlu")
    answer = await kemlu.conn.request(
        read_subject("kemlu", "head"), json.dumps({"case": case.id}).encode(), timeout=10
    )
    assert json.loads(answer.data)["hash"] == case.head
    operator = await bus.client("operator")
    lag = await operator.conn.request(
        read_subject("operator", "oldest-unacked"),
        json.dumps({"consumer": "record"}).encode(),
        timeout=10,
    )
    assert "stored" in json.loads(lag.data)


async def test_a_consumer_name_ending_in_a_newline_does_not_cut_the_read_service_off(
    bus: Platform,
) -> None:
    operator = await bus.client("operator")
    subject = read_subject("operator", "oldest-unacked")
    answer = await operator.conn.request(
        subject, json.dumps({"consumer": "record\n"}).encode(), timeout=10
    )
    assert bus.reader.conn.stats["reconnects"] == 0, json.loads(answer.data)
    assert json.loads(answer.data)["code"] == 400
    honest = await operator.conn.request(
        subject, json.dumps({"consumer": "record"}).encode(), timeout=10
    )
    assert "stored" in json.loads(honest.data)
    assert bus.reader.conn.stats["reconnects"] == 0
