"""The permissions lintas generates, enforced by a real nats-server: every violation tried is
refused, and every legitimate flow still works.

Each violation is a real attempt on a real connection as the identity that might try it.
A publish or subscribe the permissions forbid is refused by the server itself (it answers
"permissions violation", awaited here); what an account boundary hides simply has no
responder or no subscriber, and is checked by its effect (nothing stored, nothing seen).
Each test prints how many violations it tried and how many were refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import ConsumerConfig
from sqlmodel import Session
from structlog.testing import capture_logs

from lintas.admission import AdmissionService
from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.projections import load_worklist
from lintas.consumers.quarantine import delete_entry, list_entries
from lintas.consumers.runner import ProjectionRunner
from lintas.contracts import (
    BROADCAST,
    Event,
    GateRefused,
    Sealed,
    build_data,
    encode,
    make_event,
    message_hash,
    new_case_id,
)
from lintas.infra.deploy.certs import issue_certs
from lintas.infra.keys.exchange import Recipients, ensure_exchange_key, load_recipients
from lintas.infra.keys.signing import (
    Signer,
    Verifier,
    ensure_agency_key,
    load_registry,
    publish_registry,
    registry_from_kv,
)
from lintas.infra.nats.bus import AccessRefused, connect
from lintas.infra.nats.credentials import connect_options, create_seed
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.identities import accounts_path, ensure_local_identities
from lintas.infra.nats.topology import (
    CASE_KEYS_BUCKET,
    case_keys_stream,
    checkpoints_stream,
    declare_platform,
    deployment_consumers,
    intake_stream,
)
from lintas.infra.privacy.casekeys import case_keys_for, list_case_keys
from lintas.infra.reads import ReadRefused, ReadService, ServiceReads
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from lintas.producers._admit import send
from tests.support.audit import OPENED
from tests.support.helpers import Applied
from tests.support.secured import (
    AGENCIES,
    Client,
    Hub,
    Tally,
    agency_publisher,
    leafz,
    leaves_connected,
    partner_conf,
    secured_hub,
    shipped_single_node,
    start_leaf,
    stop_leaf,
    until,
)

pytestmark = pytest.mark.nats

REQUEST = {"request_id": "doc-1", "kind": "nik"}


NOW = datetime.now(UTC) - timedelta(minutes=1)
"""The events' time: within what admission accepts of the platform's clock."""


@dataclass
class _Services:
    """The platform's services on the hub, each as its own identity."""

    reads: ReadService
    admission: AdmissionService
    writer: Client
    """Admission's identity, the only one that may write the log: what a test uses to put
    there what admission would refuse (a compromised admission), for the readers to catch."""

    async def stop(self) -> None:
        await self.admission.stop()
        await self.reads.stop()
        await self.writer.close()


async def _platform(hub: Hub) -> tuple[Client, _Services]:
    """Declare everything, register every agency's signing key, run the read service and
    admission."""
    platform = await Client.open(hub.url, hub.settings, "platform")
    js = platform.js()
    await declare_platform(js, hub.settings, deployment_consumers(AGENCIES))
    for agency in (*AGENCIES, "admission"):
        ensure_agency_key(hub.settings, agency)
    await publish_registry(js, load_registry(hub.settings))
    reads = ReadService(
        platform.conn, js, hub.settings.stream, verifier=Verifier(load_registry(hub.settings))
    )
    await reads.start()
    writer = await Client.open(hub.url, hub.settings, "admission")
    admission = AdmissionService(
        writer.conn,
        writer.js(),
        hub.settings,
        verifier=Verifier(load_registry(hub.settings)),
        signer=Signer.load(hub.settings, "admission"),
    )
    await admission.start()
    return platform, _Services(reads, admission, writer)


async def _write_past_admission(services: _Services, subject: str, body: bytes) -> None:
    await services.writer.js().publish(subject, body, stream="LINTAS")


def _publisher(client: Client, settings: Settings) -> Publisher:
    publisher: Publisher = agency_publisher(client, settings)
    return publisher


async def _open(client: Client, settings: Settings, case_id: str, target: str) -> Any:
    """The case opened by the client's agency (nothing is admitted of a case never opened)."""
    return await _publisher(client, settings).publish(
        "case.opened", OPENED, case_id=case_id, target=target, time=NOW
    )


async def _consent_abroad(kemlu: Client, settings: Settings, case_id: str) -> None:
    """A parent's consent to disclose the case to the partner abroad: without it the
    consent gate lets nothing of the case go abroad."""
    await _publisher(kemlu, settings).publish(
        "consent.recorded",
        {
            "consent_id": "consent-abroad",
            "given_by": "parent",
            "child_assent": True,
            "scopes": ["disclosure_to_agencies"],
            "agencies": ["my-jkm"],
        },
        case_id=case_id,
        target="all",
        time=NOW,
    )


async def _stored(platform: Client, settings: Settings, subject: str) -> bool:
    try:
        await platform.js().get_last_msg(settings.stream, subject)
    except nats.js.errors.NotFoundError:
        return False
    return True


async def _request_refused(client: Client, subject: str, body: bytes = b"") -> bool:
    """A request the server refuses: the violation is reported and no answer comes."""
    try:
        await client.conn.request(subject, body, timeout=0.5)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        pass
    else:
        return False
    return await client.refused(subject)


async def _no_answer(client: Client, subject: str, body: bytes = b"") -> bool:
    """A request nothing answers (behind an account boundary): refused by absence."""
    try:
        msg = await client.conn.request(subject, body, timeout=1.0)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    # JetStream answering "not enabled for this account" is a refusal too.
    return b"not enabled for account" in (msg.data or b"")


async def test_agencies_auditor_operator_and_platform_stay_in_their_lanes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        clients = {a: await Client.open(hub.url, settings, a) for a in AGENCIES}
        auditor = await Client.open(hub.url, settings, "auditor")
        operator = await Client.open(hub.url, settings, "operator")
        kemlu, dukcapil, desa = clients["kemlu"], clients["dukcapil"], clients["desa-3525012001"]
        databases = Databases(settings)
        broker = create_broker(hub.url, settings, "dukcapil")
        applied = Applied()
        attach_agency(
            broker,
            databases,
            settings,
            "dukcapil",
            verifier=Verifier(load_registry(settings)),
            on_commit=[applied],
            via_read_service=True,
        )
        try:
            await broker.start()
            # -- legitimate: publish as itself, chained through the read service ------------
            case_id = new_case_id()
            await _open(kemlu, settings, case_id, "kp2mi")
            opened = await _publisher(kemlu, settings).publish(
                "document.requested", REQUEST, case_id=case_id, target="dukcapil", time=NOW
            )
            answer = await _publisher(dukcapil, settings).publish(
                "document.requested", REQUEST, case_id=case_id, target="kemlu", time=NOW
            )
            first = await platform.js().get_msg(settings.stream, seq=opened.stream_seq)
            assert answer.event.envelope.prevhash == message_hash(first.data)
            # ...and consume what is addressed to it, through its own durables
            await applied.wait_for(2)
            with Session(databases.for_consumer("worklist-dukcapil")[0]) as session:
                assert [item.case_id for item in load_worklist(session, "dukcapil")] == [case_id]
            # ...close a gap through the read service: its own filters only
            reads = ServiceReads(dukcapil.conn, "dukcapil")
            got = await reads.between("lintas.*.dukcapil.>", 1, answer.stream_seq, 10)
            assert [m.seq for m in got] == [opened.stream_seq]
            # ...the head of a case it takes part in: sequence and hash, id when readable
            head = await reads.head(case_id)
            assert (head.seq, head.event_id) == (answer.stream_seq, answer.event.id)
            elsewhere = new_case_id()
            await _open(clients["kp2mi"], settings, elsewhere, "kemlu")
            kp2mi_event = await _publisher(clients["kp2mi"], settings).publish(
                "document.requested", REQUEST, case_id=elsewhere, target="kemlu", time=NOW
            )
            other_head = await ServiceReads(desa.conn, "desa-3525012001").head(elsewhere)
            assert other_head.seq == kp2mi_event.stream_seq
            assert other_head.hash is not None
            assert other_head.event_id is None
            # ...read the public-key registry (the operator too: `lintas dlq retry` checks
            # a retried message's signature)
            assert (await registry_from_kv(desa.js())).entries()
            assert (await registry_from_kv(operator.js())).entries()
            # ...quarantine what it cannot apply; the operator reads and removes it
            await _write_past_admission(
                service, f"lintas.kemlu.dukcapil.case.opened.{new_case_id()}", b"{not json"
            )

            async def quarantined() -> list[Any]:
                return [e async for e in list_entries(operator.js(), settings)]

            entries: list[Any] = []
            for _ in range(200):
                if entries := await quarantined():
                    break
                await asyncio.sleep(0.05)  # the consumer reports to no one: poll the stream
            assert [e.consumer for e in entries] == ["agency-dukcapil"]
            await delete_entry(operator.js(), settings, entries[0].id)
            assert await quarantined() == []
            # ...the auditor reads the log and the checkpoints; the operator reads status
            ajs = auditor.js()
            assert (await ajs.get_msg(settings.stream, seq=1, direct=True)).data
            assert (await ajs.stream_info(checkpoints_stream(settings))).state.messages == 0
            assert (await operator.js().consumer_info("LINTAS", "agency-dukcapil")).num_pending == 0
            # ...and how much the log holds from the read service, as `lintas status` does
            held = await ServiceReads(operator.conn, "operator").stream_state()
            assert held.last_seq == (await platform.js().stream_info("LINTAS")).state.last_seq

            # -- violations --------------------------------------------------------------
            # The detector first: what is allowed is not reported as refused.
            own = f"lintas_intake.kemlu.{case_id}"  # no reply inbox: admission drops it
            await kemlu.conn.publish(own, b"{}")
            assert not await kemlu.refused(own, within_s=0.5)
            assert not await _request_refused(desa, "lintas_read.desa-3525012001.head", b"{}")
            direct = f"lintas.kemlu.kp2mi.case.closed.{case_id}"
            await kemlu.conn.publish(direct, b"{}")
            tally("kemlu writes its own event to the log", await kemlu.refused(direct))
            sent_as = f"lintas_intake.dukcapil.{case_id}"
            await kemlu.conn.publish(sent_as, b"{}")
            tally("kemlu sends as dukcapil", await kemlu.refused(sent_as))
            forged = f"lintas.dukcapil.kp2mi.document.issued.{case_id}"
            await kemlu.conn.publish(forged, b"{}")
            tally("kemlu publishes as dukcapil", await kemlu.refused(forged))
            tally("  ...and nothing is stored", not await _stored(platform, settings, forged))

            seen: list[str] = []

            async def spy(msg: Any) -> None:
                seen.append(msg.subject)

            for pattern in ("lintas.*.dukcapil.>", "lintas.>", ">", "_INBOX.dukcapil.>"):
                await desa.conn.subscribe(pattern, cb=spy)
                tally(f"village subscribes to {pattern}", await desa.refused(pattern))
            await _publisher(kemlu, settings).publish(
                "document.requested", REQUEST, case_id=case_id, target="dukcapil", time=NOW
            )
            await desa.conn.flush()
            tally("  ...and sees nothing of dukcapil's", seen == [])

            create = json.dumps(
                {
                    "stream_name": "LINTAS",
                    "config": {"durable_name": "mine", "filter_subject": "lintas.*.dukcapil.>"},
                }
            ).encode()
            for subject in (
                "$JS.API.CONSUMER.CREATE.LINTAS",
                "$JS.API.CONSUMER.CREATE.LINTAS.mine",
                "$JS.API.CONSUMER.CREATE.LINTAS.mine.lintas.*.dukcapil.>",
                "$JS.API.CONSUMER.DURABLE.CREATE.LINTAS.mine",
            ):
                tally(
                    f"village creates a consumer ({subject})",
                    await _request_refused(desa, subject, create),
                )
            with contextlib.suppress(Exception):
                await desa.js().add_consumer(
                    "LINTAS",
                    ConsumerConfig(durable_name="steal", filter_subject="lintas.*.dukcapil.>"),
                    timeout=0.5,
                )
            tally("village creates a consumer (nats-py)", await desa.refused("lintas.steal"))
            names = [c.name for c in await platform.js().consumers_info(settings.stream)]
            tally("  ...and no consumer was made", "mine" not in names and "steal" not in names)
            for subject, body in (
                ("$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-dukcapil", b'{"batch":1}'),
                ("$JS.API.CONSUMER.INFO.LINTAS.agency-dukcapil", b""),
                ("$JS.API.DIRECT.GET.LINTAS", b'{"seq":1}'),
                (f"$JS.API.DIRECT.GET.LINTAS.lintas.*.*.*.*.{case_id}", b""),
                ("$JS.API.STREAM.MSG.GET.LINTAS", b'{"seq":1}'),
                ("$JS.API.STREAM.INFO.LINTAS", b'{"subjects_filter":">"}'),
                ("lintas_read.dukcapil.get", b'{"seq":1}'),
                ("$JS.API.STREAM.DELETE.LINTAS", b""),
            ):
                tally(f"village requests {subject}", await _request_refused(desa, subject, body))
            village = ServiceReads(desa.conn, "desa-3525012001")
            for what, attempt in (
                ("village asks the read service for dukcapil's message", village.message(1)),
                (
                    "village asks for dukcapil's filter",
                    village.between("lintas.*.dukcapil.>", 1, 100, 10),
                ),
                (
                    "village asks for the last message on dukcapil's subject",
                    village.last_on(forged),
                ),
            ):
                try:
                    await attempt
                except ReadRefused:
                    tally(what, True)
                else:
                    tally(what, False)

            for who, client in (("auditor", auditor), ("operator", operator)):
                subject = f"lintas.kemlu.dukcapil.case.opened.{case_id}"
                await client.conn.publish(subject, b"{}")
                tally(f"the {who} publishes an event", await client.refused(subject))
            await auditor.conn.publish("lintas_checkpoints.LINTAS", b"{}")
            tally(
                "the auditor publishes a checkpoint",
                await auditor.refused("lintas_checkpoints.lintas"),
            )
            tally(
                "the auditor creates a consumer",
                await _request_refused(auditor, "$JS.API.CONSUMER.CREATE.LINTAS.x", create),
            )
            tally(
                "the operator reads the event stream",
                await _request_refused(operator, "$JS.API.DIRECT.GET.LINTAS", b'{"seq":1}'),
            )
            tally(
                "the operator lists the event stream's subjects",
                await _request_refused(
                    operator, "$JS.API.STREAM.INFO.LINTAS", b'{"subjects_filter":">"}'
                ),
            )
            tally(
                "the operator deletes the stream",
                await _request_refused(operator, "$JS.API.STREAM.DELETE.LINTAS"),
            )
            subject = f"lintas.kp2mi.kemlu.case.closed.{case_id}"
            await platform.conn.publish(subject, b"{}")
            tally("the platform publishes an event", await platform.refused(subject))
            tally(
                "the platform deletes the event stream",
                await _request_refused(platform, "$JS.API.STREAM.DELETE.LINTAS"),
            )
            tally(
                "  ...which is still there", (await platform.js().stream_info("LINTAS")) is not None
            )
            # The partner abroad connected to the hub directly lands in its own account.
            partner = clients["my-jkm"]
            await partner.conn.publish(forged, b"{}")
            tally("the partner publishes as dukcapil (hub)", await partner.refused(forged))
        finally:
            await broker.stop()
            databases.dispose()
            await service.stop()
            for client in [*clients.values(), auditor, operator, platform]:
                await client.close()
    with capsys.disabled():
        print("\n" + tally.summary("agencies, auditor, operator, platform"))
    assert tally.allowed == []
    assert len(tally.tried) >= 25


async def test_a_partner_behind_its_leaf_node_sees_and_sends_only_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        kemlu = await Client.open(hub.url, settings, "kemlu")
        leaf = start_leaf(tmp_path / "leaf", partner_conf(hub, "my-jkm"))
        rogue = start_leaf(tmp_path / "rogue", partner_conf(hub, "my-jkm", tamper=True))
        wrong = start_leaf(
            tmp_path / "wrong", partner_conf(hub, "my-jkm", password="not-the-password")
        )
        clients: list[Client] = [kemlu, platform]
        try:
            await leaves_connected(leaf, rogue)
            partner = await Client.open(leaf.url, settings, "my-jkm")
            clients.append(partner)
            # -- legitimate: its events arrive through its own durable, via the leaf -------
            case_id = new_case_id()
            await _open(kemlu, settings, case_id, "kp2mi")
            await _consent_abroad(kemlu, settings, case_id)
            sent = await _publisher(kemlu, settings).publish(
                "document.requested", REQUEST, case_id=case_id, target="my-jkm", time=NOW
            )
            sub = await partner.js().pull_subscribe_bind("agency-my-jkm", stream="LINTAS")
            [consented, msg] = await sub.fetch(2, timeout=5)  # the consent is a broadcast
            assert consented.subject.endswith(f".all.consent.recorded.{case_id}")
            assert msg.subject == sent.event.envelope.nats_subject
            await consented.ack_sync()
            await msg.ack_sync()
            # ...it answers as itself, chained through the read service, via the leaf
            answer = await _publisher(partner, settings).publish(
                "document.requested", REQUEST, case_id=case_id, target="kemlu", time=NOW
            )
            first = await platform.js().get_msg(settings.stream, seq=sent.stream_seq)
            assert answer.event.envelope.prevhash == message_hash(first.data)
            assert (await registry_from_kv(partner.js())).entries()
            gap = await ServiceReads(partner.conn, "my-jkm").between(
                "lintas.my-jkm.>", 1, answer.stream_seq, 5
            )
            assert [m.seq for m in gap] == [answer.stream_seq]

            # -- violations, through the leaf as generated ------------------------------
            forged = f"lintas.kemlu.dukcapil.case.opened.{case_id}"
            await partner.conn.publish(forged, b"{}")
            tally("partner publishes as kemlu (leaf)", await partner.refused(forged))
            await partner.conn.subscribe(">")
            tally("partner subscribes to everything (leaf)", await partner.refused(">"))

            # -- violations, through a leaf the partner stripped of its permissions: the
            # hub's account boundary alone must hold -------------------------------------
            rogue_client = await Client.open(rogue.url, settings, "my-jkm")
            clients.append(rogue_client)
            seen: list[str] = []

            async def spy(msg: Any) -> None:
                seen.append(msg.subject)

            await rogue_client.conn.subscribe(">", cb=spy)
            await rogue_client.conn.flush()
            other_case = new_case_id()
            await _open(kemlu, settings, other_case, "kp2mi")
            await _publisher(kemlu, settings).publish(
                "document.requested", REQUEST, case_id=other_case, target="dukcapil", time=NOW
            )
            await rogue_client.conn.flush()
            tally(
                "rogue leaf sees other agencies' events",
                not any(s.startswith("lintas.") and "my-jkm" not in s for s in seen),
            )
            rjs = rogue_client.conn.jetstream(prefix="lintas_api")
            # The rogue leaf is connected and works for what is the partner's own...
            await _consent_abroad(kemlu, settings, other_case)
            mine = await _publisher(kemlu, settings).publish(
                "document.requested", REQUEST, case_id=other_case, target="my-jkm", time=NOW
            )
            own_sub = await rjs.pull_subscribe_bind("agency-my-jkm", stream="LINTAS")
            [own_consent, own_msg] = await own_sub.fetch(2, timeout=5)
            assert own_msg.subject == mine.event.envelope.nats_subject
            await own_consent.ack_sync()
            await own_msg.ack_sync()
            # ...and nothing else.
            with contextlib.suppress(Exception):
                await rjs.publish(forged, b"{}", timeout=0.5)
            tally("rogue leaf publishes as kemlu", not await _stored(platform, settings, forged))
            for subject, body in (
                ("lintas_api.CONSUMER.MSG.NEXT.LINTAS.agency-kemlu", b'{"batch":1}'),
                ("$JS.API.CONSUMER.MSG.NEXT.LINTAS.agency-kemlu", b'{"batch":1}'),
                ("lintas_api.DIRECT.GET.LINTAS", b'{"seq":1}'),
                ("$JS.API.DIRECT.GET.LINTAS", b'{"seq":1}'),
                ("$JS.API.STREAM.MSG.GET.LINTAS", b'{"seq":1}'),
                ("lintas_api.CONSUMER.CREATE.LINTAS.x", b"{}"),
                ("lintas_read.kemlu.get", b'{"seq":1}'),
                ("lintas_quarantine.agency-kemlu", b"poison"),
            ):
                tally(
                    f"rogue leaf requests {subject}", await _no_answer(rogue_client, subject, body)
                )
            # -- a leaf with the wrong password is not let in ----------------------------
            await until(lambda: "Authorization Violation" in wrong.log_text(), "the refusal")
            tally("leaf node with a wrong password", leafz(wrong.http_port) == [])
        finally:
            await service.stop()
            for client in clients:
                await client.close()
            for node in (leaf, rogue, wrong):
                stop_leaf(node)
    with capsys.disabled():
        print("\n" + tally.summary("partner abroad behind a leaf node"))
    assert tally.allowed == []
    assert len(tally.tried) >= 12


def _keyed_publisher(client: Client, settings: Settings, recipients: Recipients) -> Publisher:
    """An agency's Publisher holding its case keys, on its own connection."""
    keys = case_keys_for(client.js(), settings, client.identity, recipients)
    publisher: Publisher = agency_publisher(client, settings, keys=keys)
    return publisher


async def _open_with_child(publisher: Publisher, case_id: str, tag: str) -> Any:
    """A case opened for kp2mi with a child's identity (sealed: the opener makes its key)."""
    return await publisher.publish(
        "case.opened",
        {
            "situation": "undocumented_abroad",
            "location": {"country": "MY", "subdivision": "MY-12"},
            "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
            "risk_level": "high",
            "child": {"full_name": f"Wulan Sari-{tag}", "birth_date": "2014-02-03"},
        },
        case_id=case_id,
        target="kp2mi",
        time=NOW,
    )


async def test_an_agency_reads_its_own_wrapped_case_keys_and_no_one_elses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case key store under the generated permissions: an agency has no right on it;
    the custody service makes and wraps keys for it and reads it the case markers and its
    own wraps; listing, writing, deleting and reading another agency's wrap are refused;
    erasing and revoking go through the read service, which does only what the log calls
    for."""
    tally = Tally()
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        for agency in AGENCIES:
            ensure_exchange_key(settings, agency)
        recipients = load_recipients(settings)
        kemlu, kp2mi, dukcapil = [
            await Client.open(hub.url, settings, a) for a in ("kemlu", "kp2mi", "dukcapil")
        ]
        keys_of = {
            c.identity: case_keys_for(c.js(), settings, c.identity, recipients)
            for c in (kemlu, kp2mi, dukcapil)
        }
        try:
            # -- legitimate: the opener makes the key, a consent wraps it for kp2mi --------
            case_id = new_case_id()
            publisher = _keyed_publisher(kemlu, settings, recipients)
            opened = await _open_with_child(publisher, case_id, "ACCESS-TEST")
            assert isinstance(opened.event.data.child, Sealed)
            await publisher.publish(
                "consent.recorded",
                {
                    "consent_id": "consent-1",
                    "given_by": "parent",
                    "child_assent": True,
                    "scopes": ["services", "disclosure_to_agencies"],
                    "agencies": ["kp2mi"],
                },
                case_id=case_id,
                target=BROADCAST,
                time=NOW,
            )
            key = await keys_of["kemlu"].data_key(case_id)
            assert key is not None
            assert await keys_of["kp2mi"].data_key(case_id) == key  # its own wrap opens
            assert await keys_of["kp2mi"].creator(case_id) == "kemlu"  # a marker it may read
            assert await keys_of["dukcapil"].data_key(case_id) is None  # no wrap for it

            # -- violations ----------------------------------------------------------------
            stream, root = case_keys_stream(), f"$KV.{CASE_KEYS_BUCKET}"
            for what, subject, body in (
                (
                    "dukcapil direct-gets kp2mi's wrap",
                    f"$JS.API.DIRECT.GET.{stream}.{root}.{case_id}.1.kp2mi",
                    b"",
                ),
                (
                    "dukcapil direct-gets by sequence",
                    f"$JS.API.DIRECT.GET.{stream}",
                    b'{"seq":1}',
                ),
                (
                    "dukcapil stream-gets kp2mi's wrap",
                    f"$JS.API.STREAM.MSG.GET.{stream}",
                    json.dumps({"last_by_subj": f"{root}.{case_id}.1.kp2mi"}).encode(),
                ),
                (
                    "dukcapil lists the store's keys",
                    f"$JS.API.STREAM.INFO.{stream}",
                    b'{"subjects_filter":">"}',
                ),
                ("dukcapil deletes a wrap", f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq":2}'),
                ("dukcapil purges the store", f"$JS.API.STREAM.PURGE.{stream}", b"{}"),
            ):
                tally(what, await _request_refused(dukcapil, subject, body))
            marker = f"{root}.{case_id}.erased"
            await dukcapil.conn.publish(marker, b"{}")
            tally("dukcapil marks a case erased", await dukcapil.refused(marker))
            # No right to write the store at all: custody writes it, after its checks.
            for what, entry in (
                ("dukcapil replaces kp2mi's wrap", f"{root}.{case_id}.1.kp2mi"),
                ("dukcapil writes a wrap for itself", f"{root}.{case_id}.1.dukcapil"),
                ("dukcapil makes a case's key", f"{root}.{new_case_id()}.1"),
            ):
                await dukcapil.conn.publish(entry, b'{"forged":1}')
                tally(what, await dukcapil.refused(entry))
            assert await keys_of["kp2mi"].data_key(case_id) == key
            reads = ServiceReads(dukcapil.conn, "dukcapil")
            for what, attempt in (
                ("dukcapil has the keys of a case not erased, erased", reads.erase_keys(case_id)),
                (
                    "dukcapil revokes with no withdrawal",
                    reads.revoke_keys(case_id, opened.stream_seq),
                ),
            ):
                try:
                    await attempt
                except ReadRefused:
                    tally(what, True)
                else:
                    tally(what, False)
            assert await keys_of["kp2mi"].data_key(case_id) == key
            # A withdrawal of kemlu's consent by dukcapil, signed: admission refuses it, and
            # on the log all the same, the read service revokes no one's key for it.
            rogue = await _put_signed(
                service,
                dukcapil,
                settings,
                "consent.withdrawn",
                {"consent_id": "consent-1", "notified": ["kp2mi"]},
                case_id,
                code="not_recorder",
            )
            with pytest.raises(ReadRefused, match="not one the authority policy allows"):
                await reads.revoke_keys(case_id, rogue)
            tally("dukcapil revokes with its own withdrawal of kemlu's consent", True)
            assert await keys_of["kp2mi"].data_key(case_id) == key

            # -- legitimate: withdrawing revokes, erasing destroys, through the service -----
            await publisher.publish(
                "consent.withdrawn",
                {"consent_id": "consent-1", "reason": "the mother asked"},
                case_id=case_id,
                target=BROADCAST,
            )
            assert await keys_of["kp2mi"].data_key(case_id) is None
            assert await keys_of["kemlu"].data_key(case_id) == key
            await publisher.publish(
                "case.erased",
                {
                    "officer_role": "data_protection_officer",
                    "requested_by": "parent",
                    "legal_basis": ["UU 27/2022 Pasal 8"],
                    "reason": "subject_request",
                },
                case_id=case_id,
                target=BROADCAST,
            )
            left = await list_case_keys(platform.js(), case_id)
            assert [e.key for e in left] == [f"{case_id}.erased"]
            assert await keys_of["kemlu"].data_key(case_id) is None
        finally:
            await service.stop()
            for client in (kemlu, kp2mi, dukcapil, platform):
                await client.close()
    with capsys.disabled():
        print("\n" + tally.summary("the case key store"))
    assert tally.allowed == []
    assert len(tally.tried) >= 10


async def _put_signed(
    services: _Services,
    client: Client,
    settings: Settings,
    event_type: str,
    data: Any,
    case_id: str,
    code: str = "not_owner",
) -> int:
    """An event signed with the client's own key: admission refuses it (the authority
    policy, with ``code``), and the agency may not write the log itself; put there all the
    same (as a compromised admission could), the readers must still not act on it. Its
    sequence."""
    agency = client.identity
    event = make_event(
        build_data(event_type, data), source=agency, target=BROADCAST, case_id=case_id, time=NOW
    )
    head = await ServiceReads(client.conn, agency).head(case_id)
    chained = event.envelope.model_copy(update={"prevhash": head.hash})
    envelope = Signer.load(settings, agency).sign(chained)
    answer = await send(
        client.conn,
        client.js(),
        Event(envelope, event.data),
        stream=intake_stream(settings),
        wait_s=20,
        what="test",
    )
    assert (answer.admitted, answer.code) == (False, code), answer
    await client.conn.publish(envelope.nats_subject, encode(envelope))
    assert await client.refused(envelope.nats_subject)
    ack = await services.writer.js().publish(
        envelope.nats_subject,
        encode(envelope),
        stream=settings.stream,
        headers={"Nats-Msg-Id": envelope.id},
    )
    return int(ack.seq)


async def test_an_agency_cannot_make_itself_a_case_s_owner_to_erase_it(tmp_path: Path) -> None:
    """Only the owner or the coordinator assigns a case: Dukcapil's Publisher refuses to
    take it, and when Dukcapil signs the assignment and its erasure itself, the read
    service still erases no key, and the owner is still the opener (an unsigned assignment
    counts for no one). Handed the case by its owner, Dukcapil may hand it on, though it may
    not read the case's opening; and the owner then erases it, keys and all."""
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        for agency in AGENCIES:
            ensure_exchange_key(settings, agency)
        recipients = load_recipients(settings)
        kemlu, kp2mi, dukcapil = [
            await Client.open(hub.url, settings, a) for a in ("kemlu", "kp2mi", "dukcapil")
        ]
        try:
            case_id = new_case_id()
            opener = _keyed_publisher(kemlu, settings, recipients)
            await _open_with_child(opener, case_id, "OWNER-TEST")
            key = await case_keys_for(kemlu.js(), settings, "kemlu", recipients).data_key(case_id)
            assert key is not None
            taken = {"owner": "dukcapil", "officer_ref": "DUK-1"}
            # An assignment without its source's signature names no owner (consumers
            # quarantine it, and the record never sees it): here, the owner's own, unsigned.
            unsigned = make_event(
                build_data("case.assigned", taken),
                source="kemlu",
                target=BROADCAST,
                case_id=case_id,
                time=NOW,
            ).envelope
            await _write_past_admission(service, unsigned.nats_subject, encode(unsigned))
            refused = r"only the case's owner \(kemlu\) or kp2mi, which coordinates cases"
            with pytest.raises(GateRefused, match=refused):
                await _publisher(dukcapil, settings).publish(
                    "case.assigned", taken, case_id=case_id, target=BROADCAST
                )

            await _put_signed(service, dukcapil, settings, "case.assigned", taken, case_id)
            erasure = {
                "officer_role": "data_protection_officer",
                "requested_by": "parent",
                "legal_basis": ["UU 27/2022 Pasal 8"],
                "reason": "subject_request",
            }
            await _put_signed(service, dukcapil, settings, "case.erased", erasure, case_id)
            with pytest.raises(ReadRefused, match=r"not erased by its owner \(kemlu\)"):
                await ServiceReads(dukcapil.conn, "dukcapil").erase_keys(case_id)
            assert (
                await case_keys_for(kemlu.js(), settings, "kemlu", recipients).data_key(case_id)
                == key
            )
            with pytest.raises(GateRefused, match=r"only the case's owner \(kemlu\) may erase"):
                await _publisher(dukcapil, settings).publish(
                    "case.erased", erasure, case_id=case_id, target=BROADCAST
                )

            # The owner hands the case to Dukcapil, which hands it on, having never seen
            # the opening (kemlu -> kp2mi): the read service names the owner.
            await _publisher(kemlu, settings).publish(
                "case.assigned", taken, case_id=case_id, target=BROADCAST
            )
            await _publisher(dukcapil, settings).publish(
                "case.assigned",
                {"owner": "kemlu", "officer_ref": "KJRI-2"},
                case_id=case_id,
                target=BROADCAST,
            )
            # The coordinator takes the case on without being its owner (nor asking).
            await _publisher(kp2mi, settings).publish(
                "case.assigned",
                {"owner": "kp2mi", "officer_ref": "P2MI-7"},
                case_id=case_id,
                target=BROADCAST,
            )
            with pytest.raises(GateRefused, match=r"only the case's owner \(kp2mi\)"):
                await _publisher(kemlu, settings).publish(
                    "case.assigned", taken, case_id=case_id, target=BROADCAST
                )
            # Its owner now, KemenP2MI erases it: Dukcapil's erasure before, by no owner,
            # does not stand in the way, and the keys go.
            await _publisher(kp2mi, settings).publish(
                "case.erased", erasure, case_id=case_id, target=BROADCAST
            )
            assert [e.key for e in await list_case_keys(platform.js(), case_id)] == [
                f"{case_id}.erased"
            ]
        finally:
            await service.stop()
            for client in (kemlu, kp2mi, dukcapil, platform):
                await client.close()


async def test_unknown_keys_and_wrong_passwords_cannot_connect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        stranger = settings.model_copy(update={"credentials_dir": tmp_path / "stranger"})
        create_seed(tmp_path / "stranger" / "kemlu.nk")  # a kemlu key the hub never saw
        for what, attempt in (
            ("an unknown nkey", connect(hub.url, "t", settings=stranger, identity="kemlu")),
            ("no credentials", connect(hub.url, "t")),
        ):
            try:
                nc = await attempt
            except AccessRefused:
                tally(what, True)
            else:
                await nc.close()
                tally(what, False)
        password = (settings.auth_dir / "leaf" / "my-jkm.password").read_text().strip()
        for what, user, secret in (
            ("a wrong password", "leaf-my-jkm", "wrong"),
            ("the leaf user as a client", "leaf-my-jkm", password),
        ):
            try:
                nc = await nats.connect(
                    hub.url, user=user, password=secret, max_reconnect_attempts=1,
                    allow_reconnect=False,
                )  # fmt: skip
            except nats.errors.Error:
                tally(what, True)
            else:
                await nc.close()
                tally(what, False)
        ok = await connect(hub.url, "t", settings=settings, identity="kemlu")
        await ok.close()
    with capsys.disabled():
        print("\n" + tally.summary("credentials"))
    assert tally.allowed == []


async def test_a_tls_server_refuses_plain_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    certs = issue_certs(tmp_path / "certs")
    settings = Settings(data_dir=tmp_path / "data", agencies=("kemlu",), nats_tls_ca=certs.ca)
    ensure_local_identities(settings, settings.agencies)
    directory = tmp_path / "server"
    directory.mkdir()
    (directory / "accounts.conf").write_text(accounts_path(settings).read_text())
    key = certs.ca.with_name("server-key.pem")
    config = directory / "tls.conf"
    config.write_text(
        shipped_single_node() + f'\ntls {{\n  cert_file: "{certs.server}"\n  key_file: "{key}"\n  '
        f'ca_file: "{certs.ca}"\n}}\n'
    )
    server = EmbeddedNats(
        tmp_path / "store", config=config, client_options=connect_options(settings, "platform")
    )
    await server.start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        # A client speaking plain NATS gets no PONG: the server closes on it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        info = await reader.readline()
        assert b'"tls_required":true' in info
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        await writer.drain()
        answer = await reader.read(100)
        writer.close()
        tally("a plain-text client", b"PONG" not in answer)
        # nats-py, without the private CA, cannot verify the server: refused.
        try:
            nc = await nats.connect(server.url, max_reconnect_attempts=1, allow_reconnect=False)
        except (ssl.SSLError, nats.errors.Error, OSError):
            tally("a client that does not trust the private CA", True)
        else:
            await nc.close()
            tally("a client that does not trust the private CA", False)
        # With LINTAS_NATS_TLS_CA and its nkey, kemlu gets in and publishes.
        nc = await connect(server.url, "t", settings=settings, identity="kemlu")
        try:
            assert nc.connected_url is not None
            assert nc._server_info.get("tls_required")
        finally:
            await nc.close()
    finally:
        await server.stop()
    with capsys.disabled():
        print("\n" + tally.summary("TLS"))
    assert tally.allowed == []


class _DiesHoldingFirstBatch(ProjectionRunner):
    """Receives batches and has 'crashed': nothing committed, nothing acked."""

    held: ClassVar[list[int]] = []
    holding: ClassVar[asyncio.Event]

    async def handle(self, msgs: Sequence[Any], services: Any = None) -> None:
        type(self).held.extend(m.metadata.sequence.stream for m in msgs)
        type(self).holding.set()


async def test_an_agency_closes_a_gap_after_a_crash_through_the_read_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's own gap filling, as an agency that may not read the stream."""
    async with secured_hub(tmp_path) as hub:
        # ack_wait beyond the test: only reading the gap can apply the held messages first.
        settings = hub.settings.model_copy(update={"ack_wait_s": 120.0})
        platform, service = await _platform(hub)
        kemlu = await Client.open(hub.url, settings, "kemlu")
        publisher = _publisher(kemlu, settings)
        case_id = new_case_id()
        await _open(kemlu, settings, case_id, "kp2mi")

        async def request(n: int) -> None:
            await publisher.publish(
                "document.requested",
                {"request_id": f"doc-{n}", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=NOW,
            )

        verifier = Verifier(load_registry(settings))

        def consumer(on_commit: list[Any]) -> tuple[Any, Databases]:
            databases = Databases(settings)
            broker = create_broker(hub.url, settings, "dukcapil")
            attach_agency(
                broker, databases, settings, "dukcapil", verifier=verifier,
                on_commit=on_commit, via_read_service=True,
            )  # fmt: skip
            return broker, databases

        try:
            for n in range(3):
                await request(n)
            _DiesHoldingFirstBatch.held = []
            _DiesHoldingFirstBatch.holding = asyncio.Event()
            with monkeypatch.context() as patch:
                patch.setattr("lintas.consumers.app.ProjectionRunner", _DiesHoldingFirstBatch)
                broker, databases = consumer([])
                await broker.start()
                await asyncio.wait_for(_DiesHoldingFirstBatch.holding.wait(), 20)
                await broker.stop()
                databases.dispose()
            held = sorted(set(_DiesHoldingFirstBatch.held))
            assert held == list(range(2, len(held) + 2))  # 1: the opening, kp2mi's
            await request(3)
            applied = Applied()
            with capture_logs() as logs:
                broker, databases = consumer([applied])
                await broker.start()
                try:
                    await applied.wait_for(4)
                finally:
                    await broker.stop()
                    databases.dispose()
            assert [seq for seq, _ in applied.events] == [2, 3, 4, 5]
            filled = [e for e in logs if e["event"] == "gap.filled"]
            assert [(e["consumer"], e["first"]) for e in filled] == [("agency-dukcapil", 2)]
        finally:
            await service.stop()
            await kemlu.close()
            await platform.close()
