"""The platform's operator, connected as ``operator`` on a secured bus, trying to learn
more than a consumer's lag: it may read stream and consumer state, never what the log
says about a case.

One hub for the module (its tests share one event loop): each test opens its own cases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
import pytest_asyncio

from tests.support.attack import Platform, platform_running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(Path(tmp_path_factory.mktemp("operator"))) as platform:
        yield platform


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
