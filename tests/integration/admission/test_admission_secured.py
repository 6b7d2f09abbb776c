"""Admission on a bus with authorization on, each party connected as itself: an agency
sends and is answered on its own inbox; it cannot send in another agency's name, read the
intake or answer for admission; admission runs with its own narrow identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from lintas.contracts import encode, new_case_id
from lintas.infra.nats.topology import intake_stream
from lintas.producers._admit import send
from tests.support.attack import forge, platform_running
from tests.support.secured import Client

pytestmark = pytest.mark.asyncio


async def test_agencies_send_and_only_admission_writes(tmp_path: Path) -> None:
    async with platform_running(tmp_path) as platform:
        settings = platform.settings
        kemlu = await platform.client("kemlu")
        writer = await platform.client("admission")
        case_id = new_case_id()

        def opened() -> object:
            return forge(settings, "case.opened", source="kemlu", case_id=case_id)

        answer = await send(
            kemlu.conn, kemlu.js(), opened(), stream=intake_stream(settings), wait_s=20, what="t"
        )
        assert answer.admitted, answer
        stored = await platform.reader.js().get_msg(settings.stream, seq=answer.seq)
        assert stored.subject == f"lintas.kemlu.all.case.opened.{case_id}"

        # In another agency's name: the bus refuses the intake subject itself.
        other = f"lintas_intake.kp2mi.{case_id}"
        await kemlu.conn.publish(other, encode(opened().envelope))
        assert await kemlu.refused(other)
        # Reading the intake, or writing the answer of admission to another's inbox.
        await kemlu.conn.subscribe("lintas_intake.>")
        assert await kemlu.refused("lintas_intake.>")
        await kemlu.conn.publish("_INBOX.kp2mi.x", b"{}")
        assert await kemlu.refused("_INBOX.kp2mi.x")
        # Admission's own identity may not change the log's limits.
        await writer.conn.publish(f"$JS.API.STREAM.UPDATE.{settings.stream}", b"{}")
        assert await writer.refused("STREAM.UPDATE")
        # An answer to an inbox that is not the sender's own is never sent: a message
        # naming kp2mi's inbox as its reply gets no answer anywhere.
        spy: Client = await platform.client("kp2mi")
        sub = await spy.conn.subscribe("_INBOX.kp2mi.>")
        await kemlu.js().publish(
            f"lintas_intake.kemlu.{case_id}",
            encode(opened().envelope),
            stream=intake_stream(settings),
            headers={"Lintas-Reply": "_INBOX.kp2mi.stolen"},
        )
        # The same case's next message is judged after it (one writer, in order).
        again = await send(
            kemlu.conn, kemlu.js(), opened(), stream=intake_stream(settings), wait_s=20, what="t"
        )
        assert (again.admitted, again.code) == (False, "chain_moved")
        assert sub.pending_msgs == 0
