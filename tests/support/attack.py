"""The attack suite's platform: a secured hub, admission running as ``admission``, and each
attacker connected as its own identity; builders of honest and forged events.

:class:`Platform` sends through the agencies' own path (:func:`lintas.producers._admit.send`:
an inbox of the sender's own, the intake subject of the sender's own) and answers whether
anything entered ``LINTAS``. A :class:`Case` remembers its head, so a test states only the
events that matter to it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors

from lintas.admission import AdmissionService
from lintas.contracts import Event, build_data, encode, make_event, new_case_id
from lintas.contracts.admission import REPLY_HEADER, Answer
from lintas.contracts.subjects import intake_subject
from lintas.infra.keys.signing import (
    Signer,
    Verifier,
    ensure_agency_key,
    load_registry,
    publish_registry,
)
from lintas.infra.nats.topology import declare_platform, deployment_consumers, intake_stream
from lintas.infra.privacy.sealing import seal_data
from lintas.infra.reads import ReadService
from lintas.producers._admit import send
from tests.support.helpers import AGENCIES
from tests.support.samples import SAMPLES, TEST_KEY
from tests.support.secured import Client, Hub, secured_hub

__all__ = ["Case", "Platform", "forge", "platform_running"]

WAIT_S = 20.0
"""How long a sender waits for admission's answer (an answer comes at once; a slow CI
machine gets room, and no test waits this long when all is well)."""


def forge(
    settings: Any,
    event_type: str,
    *,
    source: str,
    case_id: str,
    prev: str | None = None,
    target: str = "all",
    data: dict[str, Any] | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """An event as ``source`` would send it, its personal fields sealed and signed."""
    built = make_event(
        seal_data(
            build_data(event_type, data if data is not None else SAMPLES[event_type]),
            TEST_KEY,
            1,
            case_id=case_id,
        ),
        source=source,
        target=target,
        case_id=case_id,
        time=time or datetime.now(UTC),
        event_id=event_id,
    )
    envelope = built.envelope.model_copy(update={"prevhash": prev})
    return Event(Signer.load(settings, source).sign(envelope), built.data)


@dataclass
class Case:
    """One case as the platform has admitted it: its id and its head's hash."""

    id: str = field(default_factory=new_case_id)
    head: str | None = None


@dataclass
class Platform:
    hub: Hub
    service: AdmissionService
    reader: Client
    clients: dict[str, Client] = field(default_factory=dict)

    @property
    def settings(self) -> Any:
        return self.hub.settings

    async def client(self, identity: str) -> Client:
        """The connection of ``identity``, opened once."""
        if identity not in self.clients:
            self.clients[identity] = await Client.open(self.hub.url, self.settings, identity)
        return self.clients[identity]

    def event(self, case: Case, event_type: str, source: str, **kw: Any) -> Event:
        """The case's next event from ``source``, chained on the case's head."""
        kw.setdefault("prev", case.head)
        return forge(self.settings, event_type, source=source, case_id=case.id, **kw)

    async def send(self, event: Event, identity: str | None = None) -> Answer:
        """``event`` sent as ``identity`` (its source by default), the way agencies send."""
        client = await self.client(identity or event.source)
        return await send(
            client.conn,
            client.js(),
            event,
            stream=intake_stream(self.settings),
            wait_s=WAIT_S,
            what="attack test",
        )

    async def say(self, case: Case, event_type: str, source: str, **kw: Any) -> Answer:
        """An honest step: admitted, and the case's head moves on."""
        answer = await self.send(self.event(case, event_type, source, **kw))
        assert answer.admitted, answer
        case.head = answer.hash
        return answer

    async def opened(self, opener: str = "kemlu", **kw: Any) -> Case:
        case = Case()
        await self.say(case, "case.opened", opener, **kw)
        return case

    async def log_size(self) -> int:
        info = await self.reader.js().stream_info(self.settings.stream)
        return int(info.state.last_seq)

    async def refused(self, event: Event, code: str, identity: str | None = None) -> Answer:
        """``event`` is refused with ``code``, and nothing entered the log."""
        before = await self.log_size()
        answer = await self.send(event, identity)
        assert (answer.admitted, answer.code) == (False, code), answer
        assert answer.event_id in (event.id, None)
        assert await self.log_size() == before
        return answer

    async def refuse(
        self, case: Case, event_type: str, source: str, code: str, **kw: Any
    ) -> Answer:
        """The case's next event from ``source`` is refused with ``code``; nothing entered."""
        return await self.refused(self.event(case, event_type, source, **kw), code)

    async def send_raw(
        self, identity: str, body: bytes, case_id: str, *, reply: str | None = None
    ) -> Answer | None:
        """A body that is no event, on ``identity``'s own intake subject, answered on its own
        inbox (or ``reply``, which it may not read: then no answer)."""
        client = await self.client(identity)
        inbox = f"_INBOX.{identity}.{uuid.uuid4().hex}"
        sub = await client.conn.subscribe(inbox, max_msgs=1)
        try:
            await client.js().publish(
                intake_subject(identity, case_id),
                body,
                stream=intake_stream(self.settings),
                headers={REPLY_HEADER: reply or inbox},
                timeout=WAIT_S,
            )
            if reply is not None:
                return None
            msg = await sub.next_msg(timeout=WAIT_S)
        except nats.errors.TimeoutError:
            return None
        finally:
            await sub.unsubscribe()
        return Answer.model_validate_json(msg.data)

    async def publish_intake(self, identity: str, subject: str, event: Event) -> None:
        """A plain publish (no wait for the stream) as ``identity`` on ``subject``."""
        client = await self.client(identity)
        await client.conn.publish(subject, encode(event.envelope))
        await client.conn.flush()

    async def in_log(self, event_id: str) -> bool:
        """Whether an event of this id is in ``LINTAS`` (its subjects name the case only, so
        every message is looked at: the suite's log is small)."""
        js = self.reader.js()
        last = await self.log_size()
        for seq in range(1, last + 1):
            stored = await js.get_msg(self.settings.stream, seq=seq)
            if event_id.encode() in (stored.data or b""):
                return True
        return False


@asynccontextmanager
async def platform_running(
    tmp_path: Path, *, admitting: bool = True, reading: bool = False, **overrides: Any
) -> AsyncIterator[Platform]:
    """A secured hub with the platform declared, every agency's key registered and
    admission running as its own identity (unless not ``admitting``: then what is sent
    waits on the intake), and the read service as ``platform`` if ``reading``, until the
    block ends. ``overrides``: settings."""
    async with secured_hub(tmp_path, **overrides) as hub:
        settings = hub.settings
        operator = await Client.open(hub.url, settings, "platform")
        await declare_platform(operator.js(), settings, deployment_consumers(AGENCIES))
        for agency in (*AGENCIES, "admission", "watchdog"):
            ensure_agency_key(settings, agency)
        await publish_registry(operator.js(), load_registry(settings))
        writer = await Client.open(hub.url, settings, "admission")
        service = AdmissionService(
            writer.conn,
            writer.js(),
            settings,
            verifier=Verifier(load_registry(settings)),
            signer=Signer.load(settings, "admission"),
        )
        platform = Platform(hub, service, operator)
        if admitting:
            await service.start()
        reads: ReadService | None = None
        if reading:
            reader = platform.reader
            reads = ReadService(
                reader.conn,
                reader.js(),
                settings.stream,
                verifier=Verifier(load_registry(settings)),
            )
            await reads.start()
        try:
            yield platform
        finally:
            if reads is not None:
                await reads.stop()
            if admitting:
                await service.stop()
            for client in (*platform.clients.values(), writer, operator):
                await client.close()
