"""Admission on a bus with authorization on, each party connected as itself: an agency
sends and is answered on its own inbox; it cannot send in another agency's name, read the
intake or answer for admission; admission runs with its own narrow identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lintas.contracts import Event, encode, new_case_id
from lintas.infra.keys.signing import Signer, init_agency_key, load_registry, publish_registry
from lintas.infra.nats.topology import declare_platform, deployment_consumers, intake_stream
from lintas.producers._admit import send
from tests.support.attack import forge, platform_running
from tests.support.helpers import AGENCIES
from tests.support.secured import Client, admission_running, secured_hub

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


async def test_an_agency_s_first_event_right_after_its_key_is_published_is_admitted(
    tmp_path: Path,
) -> None:
    """The race of an agency that starts, publishes its key and sends its first event at
    once, a moment after admission's verifier read the registry (within the interval it
    reads no more often than): admission waits for the next read it allows, and admits,
    where a refusal (``unknown_key``) would be final."""
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        operator = await Client.open(hub.url, settings, "platform")
        kemlu = await Client.open(hub.url, settings, "kemlu")
        try:
            await declare_platform(operator.js(), settings, deployment_consumers(AGENCIES))
            async with admission_running(hub):
                # KemLu's own data directory, its key made there and not published yet.
                own = settings.model_copy(update={"data_dir": tmp_path / "kemlu"})
                init_agency_key(own, "kemlu")

                def opened(signer: Signer | None = None) -> Event:
                    event = forge(own, "case.opened", source="kemlu", case_id=new_case_id())
                    if signer is None:
                        return event
                    return Event(signer.sign(event.envelope), event.data)

                async def sent(event: Event) -> tuple[bool, str | None]:
                    answer = await send(
                        kemlu.conn,
                        kemlu.js(),
                        event,
                        stream=intake_stream(settings),
                        wait_s=20,
                        what="t",
                    )
                    return answer.admitted, answer.code

                # A key no registry holds: admission reads the registry now, and refuses.
                stranger = Signer("kemlu", Ed25519PrivateKey.generate())
                assert await sent(opened(stranger)) == (False, "unknown_key")
                # Within the second after that read: the key published, the event sent.
                await publish_registry(operator.js(), load_registry(own))
                assert await sent(opened()) == (True, None)
        finally:
            await kemlu.close()
            await operator.close()
