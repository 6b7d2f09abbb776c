"""Admission on a bus with authorization on, each party connected as itself: an agency
sends and is answered on its own inbox; it cannot send in another agency's name, read the
intake or answer for admission; admission runs with its own narrow identity."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lintas.admission import AdmissionService
from lintas.contracts import Event, build_data, encode, make_event, new_case_id
from lintas.infra.keys.signing import (
    Signer,
    Verifier,
    ensure_agency_key,
    load_registry,
    publish_registry,
)
from lintas.infra.nats.topology import declare_platform, deployment_consumers, intake_stream
from lintas.infra.privacy.sealing import seal_data
from lintas.producers._admit import send
from tests.support.helpers import AGENCIES
from tests.support.samples import SAMPLES, TEST_KEY
from tests.support.secured import Client, secured_hub

pytestmark = pytest.mark.asyncio


def opened(settings: object, source: str, case_id: str) -> Event:
    built = make_event(
        seal_data(build_data("case.opened", SAMPLES["case.opened"]), TEST_KEY, 1, case_id=case_id),
        source=source,
        target="all",
        case_id=case_id,
        time=datetime.now(UTC),
    )
    return Event(Signer.load(settings, source).sign(built.envelope), built.data)  # type: ignore[arg-type]


async def test_agencies_send_and_only_admission_writes(tmp_path: Path) -> None:
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform = await Client.open(hub.url, settings, "platform")
        await declare_platform(platform.js(), settings, deployment_consumers(AGENCIES))
        for agency in (*AGENCIES, "admission"):
            ensure_agency_key(settings, agency)
        await publish_registry(platform.js(), load_registry(settings))
        writer = await Client.open(hub.url, settings, "admission")
        service = AdmissionService(
            writer.conn,
            writer.js(),
            settings,
            verifier=Verifier(load_registry(settings)),
            signer=Signer.load(settings, "admission"),
        )
        kemlu = await Client.open(hub.url, settings, "kemlu")
        try:
            await service.start()
            case_id = new_case_id()
            answer = await send(
                kemlu.conn,
                kemlu.js(),
                opened(settings, "kemlu", case_id),
                stream=intake_stream(settings),
                wait_s=20,
                what="test",
            )
            assert answer.admitted, answer
            stored = await platform.js().get_msg(settings.stream, seq=answer.seq)
            assert stored.subject == f"lintas.kemlu.all.case.opened.{case_id}"
            assert writer.errors == []

            # In another agency's name: the bus refuses the intake subject itself.
            other = f"lintas_intake.kp2mi.{case_id}"
            await kemlu.conn.publish(other, encode(opened(settings, "kemlu", case_id).envelope))
            assert await kemlu.refused(other)
            # Reading the intake, or writing the answer of admission to another's inbox.
            await kemlu.conn.subscribe("lintas_intake.>")
            assert await kemlu.refused("lintas_intake.>")
            await kemlu.conn.publish("_INBOX.kp2mi.x", b"{}")
            assert await kemlu.refused("_INBOX.kp2mi.x")
            # Admission itself may not change the log's limits.
            await writer.conn.publish(f"$JS.API.STREAM.UPDATE.{settings.stream}", b"{}")
            assert await writer.refused("STREAM.UPDATE")
            # An answer to an inbox that is not the sender's own is never sent: a
            # message naming kp2mi's inbox as its reply gets no answer anywhere.
            spy = await Client.open(hub.url, settings, "kp2mi")
            sub = await spy.conn.subscribe("_INBOX.kp2mi.>")
            await kemlu.js().publish(
                f"lintas_intake.kemlu.{case_id}",
                encode(opened(settings, "kemlu", case_id).envelope),
                stream=intake_stream(settings),
                headers={"Lintas-Reply": "_INBOX.kp2mi.stolen"},
            )
            # The same case's next message is judged after it (one writer, in order).
            again = await send(
                kemlu.conn,
                kemlu.js(),
                opened(settings, "kemlu", case_id),
                stream=intake_stream(settings),
                wait_s=20,
                what="test",
            )
            assert (again.admitted, again.code) == (False, "chain_moved")
            assert sub.pending_msgs == 0
            await spy.close()
        finally:
            await service.stop()
            for client in (kemlu, writer, platform):
                await client.close()
