"""The intake's limits on a secured bus, each party connected as itself: the server refuses
a message larger than the intake stores, and any message past the bytes it may hold, while
the ones waiting for admission are kept; the sender is told at once, not left waiting; an
intake declared without limits (by an earlier version) is brought to them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import nats.js.errors
import pytest
from nats.js.api import DiscardPolicy

from lintas.contracts import encode, new_case_id
from lintas.contracts.admission import MAX_BYTES, REPLY_HEADER
from lintas.contracts.subjects import intake_subject
from lintas.infra.nats.topology import (
    TopologyConflict,
    declare_platform,
    deployment_consumers,
    intake_config,
    intake_stream,
)
from lintas.infra.settings import INTAKE_HEADER_ROOM, Settings
from lintas.producers import Admission, IntakeFull, IntakeTooLarge
from tests.support.attack import forge, platform_running
from tests.support.helpers import AGENCIES
from tests.support.secured import Client, secured_hub, until

pytestmark = [pytest.mark.asyncio, pytest.mark.nats]

SENT_WITHIN_S = 5.0
"""A refused send is said at once; the senders below would wait 30 s for an answer."""


def _opened(settings: Settings) -> tuple[str, bytes]:
    """A new case's first event from kemlu: its intake subject and body."""
    event = forge(settings, "case.opened", source="kemlu", case_id=new_case_id())
    return intake_subject("kemlu", event.case_id), encode(event.envelope)


async def _fill(
    kemlu: Client, settings: Settings, inbox: str
) -> tuple[int, nats.js.errors.APIError]:
    """Events sent as kemlu until the intake refuses one: how many it took, and its refusal."""
    for queued in range(100):  # each event is over 500 bytes: 8 KiB fill long before
        subject, body = _opened(settings)
        try:
            await kemlu.js().publish(
                subject, body, stream=intake_stream(settings), headers={REPLY_HEADER: inbox}
            )
        except nats.js.errors.APIError as exc:
            return queued, exc
    raise AssertionError("the intake took 100 events within its 8 KiB")


async def test_the_intake_refuses_what_is_larger_than_it_stores(tmp_path: Path) -> None:
    async with platform_running(tmp_path) as platform:
        settings = platform.settings
        cfg = (await platform.reader.js().stream_info(intake_stream(settings))).config
        assert (cfg.retention, cfg.discard) == ("workqueue", "new")
        assert cfg.max_msg_size == MAX_BYTES + INTAKE_HEADER_ROOM == settings.intake_max_msg_size
        assert cfg.max_bytes == settings.intake_max_bytes

        # Just over admission's own limit: still admission's to refuse, with its code.
        just_over = b'{"x": "' + b"a" * (MAX_BYTES - 8) + b'"}'
        assert len(just_over) == MAX_BYTES + 1
        answer = await platform.send_raw("kemlu", just_over, new_case_id())
        assert answer is not None
        assert (answer.admitted, answer.code) == (False, "too_large")

        # Over the intake's limit: the server refuses it, to the agency as itself...
        kemlu = await platform.client("kemlu")
        huge = b"a" * settings.intake_max_msg_size
        with pytest.raises(nats.js.errors.BadRequestError) as refused:
            await kemlu.js().publish(
                intake_subject("kemlu", new_case_id()), huge, stream=intake_stream(settings)
            )
        assert refused.value.err_code == 10054
        # ...and the sender says so at once, as what retrying cannot mend.
        admission = Admission(kemlu.conn, kemlu.js(), intake_stream(settings), wait_s=30.0)
        async with asyncio.timeout(SENT_WITHIN_S):
            with pytest.raises(IntakeTooLarge, match="exceeds maximum"):
                await admission.send(huge, "kemlu", new_case_id(), "a huge event")
        info = await platform.reader.js().stream_info(intake_stream(settings))
        assert info.state.messages == 0


async def test_a_full_intake_refuses_new_messages_and_keeps_the_queued(tmp_path: Path) -> None:
    async with platform_running(tmp_path, admitting=False, intake_max_bytes=8 * 1024) as platform:
        settings = platform.settings
        kemlu = await platform.client("kemlu")
        inbox = f"_INBOX.kemlu.{new_case_id()}"
        queued, full = await _fill(kemlu, settings, inbox)
        assert isinstance(full, nats.js.errors.ServiceUnavailableError), full
        assert full.err_code == 10077
        assert "maximum bytes" in (full.description or "")
        assert queued > 0

        admission = Admission(kemlu.conn, kemlu.js(), intake_stream(settings), wait_s=30.0)
        async with asyncio.timeout(SENT_WITHIN_S):
            with pytest.raises(IntakeFull, match="maximum bytes exceeded"):
                await admission.send(_opened(settings)[1], "kemlu", new_case_id(), "one more")
        state = (await platform.reader.js().stream_info(intake_stream(settings))).state
        assert state.messages == queued
        assert state.bytes <= settings.intake_max_bytes

        # Once admission works through them, the intake takes events again.
        await platform.service.start()
        try:

            async def drained() -> bool:
                intake = await platform.reader.js().stream_info(intake_stream(settings))
                return intake.state.messages == 0

            await until(drained, "admission to work through the intake")
            event = forge(settings, "case.opened", source="kemlu", case_id=new_case_id())
            answer = await admission.send(encode(event.envelope), "kemlu", event.case_id, "t")
            assert answer.admitted, answer
        finally:
            await platform.service.stop()


async def test_an_intake_without_limits_is_brought_to_them(tmp_path: Path) -> None:
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform = await Client.open(hub.url, settings, "platform")
        try:
            js = platform.js()
            earlier = replace(
                intake_config(settings), discard=DiscardPolicy.OLD, max_msg_size=-1, max_bytes=-1
            )
            await js.add_stream(earlier)
            await js.publish(
                intake_subject("kemlu", new_case_id()), b"{}", stream=intake_stream(settings)
            )

            outcome = await declare_platform(js, settings, deployment_consumers(AGENCIES))
            assert outcome[intake_stream(settings)] == "updated"
            info = await js.stream_info(intake_stream(settings))
            assert (info.config.discard, info.config.max_bytes, info.config.max_msg_size) == (
                "new",
                settings.intake_max_bytes,
                settings.intake_max_msg_size,
            )
            assert info.state.messages == 1  # what waited is still there
            again = await declare_platform(js, settings, deployment_consumers(AGENCIES))
            assert again[intake_stream(settings)] == "unchanged"

            # Anything but the limits is still for an operator to change on purpose.
            await js.update_stream(replace(info.config, duplicate_window=2.0))
            with pytest.raises(TopologyConflict, match="duplicate_window"):
                await declare_platform(js, settings, deployment_consumers(AGENCIES))
        finally:
            await platform.close()
