"""The platform's operator, connected as ``operator`` on a secured bus, trying to learn
more than a consumer's lag: it may read consumer state and how much the log holds, never
what the log says about a case, nor who wrote to whom about which case.

A stream info request takes a subjects filter in its body, which permissions cannot see,
and answers with every stored subject it matches: on ``LINTAS`` who sent what to whom
about which case (an escalation to KPAI, a repatriation from Malaysia), on the intake who
sent something about which case, in the case key store who holds which case's key. So the
operator may not ask for those streams' info at all; ``lintas status`` asks the read
service for the event stream's numbers instead.

One hub for the module (its tests share one event loop): each test opens its own cases.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
import pytest_asyncio

from lintas.contracts.subjects import read_subject
from lintas.infra.nats.topology import case_keys_stream, intake_stream
from lintas.infra.reads import ReadRefused, ServiceReads
from tests.support.attack import Platform, platform_running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(
        Path(tmp_path_factory.mktemp("operator")), reading=True
    ) as platform:
        yield platform


async def test_the_operator_cannot_list_who_wrote_what_to_whom_about_which_case(
    bus: Platform,
) -> None:
    case = await bus.opened("kemlu")
    operator = await bus.client("operator")
    try:
        info = await operator.js().stream_info(bus.settings.stream, subjects_filter=">")
    except (nats.errors.Error, TimeoutError):
        listed: list[str] = []
    else:
        listed = list(info.state.subjects or {})
    assert not [subject for subject in listed if case.id in subject]


@pytest.mark.parametrize("stream", ["event", "intake", "case keys"])
async def test_the_server_refuses_the_operator_the_info_of_every_stream_that_names_cases(
    bus: Platform, stream: str
) -> None:
    """Refused as a permissions violation (not merely unanswered), with or without a
    filter: the intake's subjects name the sender and the case, the key store's the case
    and the agencies holding its key."""
    await bus.opened("kemlu")
    name = {
        "event": bus.settings.stream,
        "intake": intake_stream(bus.settings),
        "case keys": case_keys_stream(),
    }[stream]
    operator = await bus.client("operator")
    subject = f"$JS.API.STREAM.INFO.{name}"
    for body in (b'{"subjects_filter":">"}', b""):
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await operator.conn.request(subject, body, timeout=0.5)
    assert await operator.refused(subject)


async def test_the_operator_lists_streams_without_their_subjects(bus: Platform) -> None:
    """What the operator keeps (stream names and lists: configurations and counts) shows no
    stored subject: a list request takes no subjects filter, the server refuses one."""
    case = await bus.opened("kp2mi")
    operator = await bus.client("operator")
    for body in ({"subjects_filter": ">"}, {"subject": "lintas.>", "subjects_filter": ">"}):
        answer = await operator.conn.request(
            "$JS.API.STREAM.LIST", json.dumps(body).encode(), timeout=5
        )
        assert json.loads(answer.data)["error"]["code"] == 400, answer.data
    listed = await operator.conn.request("$JS.API.STREAM.LIST", b"{}", timeout=5)
    streams = {s["config"]["name"]: s for s in json.loads(listed.data)["streams"]}
    assert bus.settings.stream in streams
    assert case.id not in listed.data.decode()
    assert all("subjects" not in s["state"] for s in streams.values())


async def test_the_operator_gets_the_event_stream_s_numbers_from_the_read_service(
    bus: Platform,
) -> None:
    case = await bus.opened("kemlu")
    operator = await bus.client("operator")
    state = await ServiceReads(operator.conn, "operator").stream_state()
    info = (await bus.reader.js().stream_info(bus.settings.stream)).state
    assert (state.messages, state.bytes, state.first_seq, state.last_seq) == (
        info.messages,
        info.bytes,
        info.first_seq,
        info.last_seq,
    )
    # Numbers only: nothing of a subject, whatever the request asks for.
    subject = read_subject("operator", "stream-state")
    answer = await operator.conn.request(subject, b"{}", timeout=10)
    assert set(json.loads(answer.data)) == {"messages", "bytes", "first_seq", "last_seq"}
    assert case.id not in answer.data.decode()
    asked = await operator.conn.request(subject, b'{"subjects_filter":">"}', timeout=10)
    assert json.loads(asked.data)["code"] == 400
    assert case.id not in asked.data.decode()


async def test_an_agency_is_not_told_the_event_stream_s_numbers(bus: Platform) -> None:
    """The operation is the operator's: an agency asking on its own subject is refused."""
    kemlu = await bus.client("kemlu")
    with pytest.raises(ReadRefused, match="no operation 'stream-state'"):
        await ServiceReads(kemlu.conn, "kemlu").stream_state()
