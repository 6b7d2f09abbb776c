"""The platform's operator, connected as ``operator`` on a secured bus, trying to learn
more than a consumer's lag: it may read stream and consumer state, never what the log
says about a case.

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
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.reads import ReadRefused, ReadService, ServiceReads
from tests.support.attack import Platform, platform_running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(Path(tmp_path_factory.mktemp("operator"))) as platform:
        reader = platform.reader
        reads = ReadService(
            reader.conn,
            reader.js(),
            platform.settings.stream,
            verifier=Verifier(load_registry(platform.settings)),
        )
        await reads.start()
        try:
            yield platform
        finally:
            await reads.stop()


@pytest.mark.xfail(
    strict=True,
    reason="the operator may ask STREAM.INFO of LINTAS, whose subjects filter (in the "
    "request body, which permissions cannot see) lists every event's subject: who sent "
    "what to whom about which case (an escalation to KPAI, a repatriation from Malaysia), "
    "what the rules deny agencies for that very reason",
)
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
