"""Bodies that are JSON to Python but not the JSON other agencies' systems read, sent by an
agency on a secured bus as itself: an event on the log is read by every agency it is
addressed to, in whatever language its system is written, so admission takes JSON as RFC
8259 has it exchanged between systems: UTF-8, no byte order mark.

One hub for the module (its tests share one event loop): each test opens its own cases.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lintas.contracts import encode
from lintas.infra.keys.signing import Signer
from tests.support.attack import Case, Platform, platform_running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(Path(tmp_path_factory.mktemp("bodies"))) as platform:
        yield platform


@pytest.mark.parametrize(
    "encoded",
    [
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-32-be"),
        lambda text: codecs.BOM_UTF8 + text.encode(),
    ],
    ids=["utf-16", "utf-32", "utf-8-bom"],
)
async def test_an_event_not_in_plain_utf8_is_not_json(bus: Platform, encoded: object) -> None:
    case = Case()
    event = bus.event(case, "case.opened", "kemlu")
    text = json.dumps(json.loads(encode(event.envelope)), ensure_ascii=False)
    assert callable(encoded)
    before = await bus.log_size()
    answer = await bus.send_raw("kemlu", encoded(text), case.id)
    assert answer is not None
    assert (answer.admitted, answer.code) == (False, "not_json"), answer
    assert await bus.log_size() == before


async def test_a_line_break_in_the_trace_context_adds_no_header_to_the_stored_message(
    bus: Platform,
) -> None:
    case = Case()
    event = bus.event(case, "case.opened", "kemlu")
    injected = event.envelope.model_copy(
        update={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "lintas=1\r\nX-Injected-By-Kemlu: yes",
            "signature": None,
        }
    )
    signed = Signer.load(bus.settings, "kemlu").sign(injected)
    answer = await bus.send_raw("kemlu", encode(signed), case.id)
    assert answer is not None
    assert answer.admitted, answer  # the signed envelope keeps what its sender put there
    assert answer.seq is not None
    stored = await bus.reader.js().get_msg(bus.settings.stream, seq=answer.seq)
    headers = stored.headers or {}
    assert "X-Injected-By-Kemlu" not in headers
    assert "tracestate" not in headers
    assert headers["traceparent"] == injected.traceparent
