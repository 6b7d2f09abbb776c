"""What a failed request on the bus is called: a refusal, a timeout, nothing answering, or
a bus that is away, each said as what it is (never "NATS unavailable" for a refusal)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from lintas.infra.errors import BusUnavailable, NotPermitted, bus_errors
from lintas.infra.nats.bus import connect
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from tests.support.secured import Hub, secured_hub

pytestmark = pytest.mark.nats


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with secured_hub(tmp_path) as hub:
        yield hub


async def test_a_refusal_a_timeout_and_no_responders_are_told_apart(hub: Hub) -> None:
    settings = hub.settings
    platform = await connect(hub.url, "t-platform", settings=settings, identity="platform")
    operator = await connect(hub.url, "t-operator", settings=settings, identity="operator")
    try:
        await declare_platform(platform.jetstream(), settings, deployment_consumers(["kp2mi"]))
        # The operator may not read the event stream: the server refuses, the request times
        # out, and the error says which of the two it was.
        # (The request waits out its timeout, whose length only needs to outlast the
        # server's -ERR on a busy machine.)
        js = operator.jetstream(timeout=3)
        with pytest.raises(NotPermitted) as refused, bus_errors("reading seq 1", js):
            await js.get_msg(settings.stream, 1)
        said = str(refused.value)
        assert said.startswith("reading seq 1: the server refused it as not permitted")
        assert "$js.api.stream.msg.get.lintas" in said.lower()
        assert "NATS unavailable" not in said

        # What it may read still reads, on the same client, and a plain timeout is a timeout.
        with bus_errors("reading a consumer's state", js):
            assert (await js.consumer_info(settings.stream, "agency-kp2mi")).num_pending == 0
        sub = await platform.subscribe("lintas_read.operator.oldest-unacked")  # never answers
        await platform.flush()
        # The interest reaches the operator's account in the server's own time (seen to
        # answer the first request with no responders on a busy machine): ask until the
        # request waits out its timeout, a few times at most.
        slow = await _ask_until(operator, "no answer in time", wait_s=0.2)
        assert not isinstance(slow, NotPermitted)
        await sub.unsubscribe()
        await platform.flush()

        # The server drops the interest in its own time after the unsubscribe (it was seen
        # to answer one more request with silence on a busy machine): ask until it says
        # that nothing answers, a few times at most.
        await _ask_until(operator, "nothing answers the request", wait_s=2)
    finally:
        await operator.close()
        await platform.close()


async def _ask_until(operator: NATS, wanted: str, *, wait_s: float) -> BusUnavailable:
    """Ask the operator's read subject, a few times at most, until the error says
    ``wanted``: the server changes a subject's interest in its own time."""
    said: list[str] = []
    for _ in range(5):
        with pytest.raises(BusUnavailable) as failed, bus_errors("asking", operator):
            await operator.request("lintas_read.operator.oldest-unacked", b"{}", timeout=wait_s)
        said.append(str(failed.value))
        if wanted in said[-1]:
            return failed.value
    raise AssertionError(f"never {wanted!r}: {said}")
