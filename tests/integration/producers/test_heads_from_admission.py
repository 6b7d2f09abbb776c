"""A Publisher that keeps writing a case chains each event to the head admission answered
for its last one, without reading the head first; when another agency's event came in
meanwhile, admission refuses ``chain_moved`` and the Publisher reads the head again, and
before each later event of that case (others write it too). A Publisher that finds
another's event at the head it reads keeps no head of that case either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lintas.contracts import message_hash, new_case_id
from lintas.infra.keys.signing import Signer, Verifier, load_registry
from lintas.infra.nats.bus import read_service
from lintas.infra.nats.topology import intake_stream
from lintas.infra.reads import CaseHead, ServiceReads
from lintas.producers import Admission, Publisher
from tests.support.attack import platform_running
from tests.support.audit import OPENED

pytestmark = pytest.mark.nats


class _CountedReads(ServiceReads):
    """The read service, counting the head reads asked of it."""

    heads = 0

    async def head(self, case_id: str) -> CaseHead:
        self.heads += 1
        return await super().head(case_id)


async def test_a_case_kept_written_reads_its_head_only_when_it_moved(tmp_path: Path) -> None:
    async with (
        platform_running(tmp_path) as platform,
        read_service(platform.settings, platform.hub.url),
    ):
        settings = platform.settings
        clients: list[Any] = []

        async def publisher(agency: str) -> tuple[Publisher, _CountedReads]:
            client = await platform.client(agency)
            clients.append(client.conn)
            reads = _CountedReads(client.conn, agency)
            return Publisher(
                client.js(),
                agency,
                stream=settings.stream,
                signer=Signer.load(settings, agency),
                reads=reads,
                verifier=Verifier(load_registry(settings)),
                admission=Admission(client.conn, client.js(), intake_stream(settings)),
            ), reads

        (kemlu, kemlu_reads), (kp2mi, kp2mi_reads) = (
            await publisher("kemlu"),
            await publisher("kp2mi"),
        )
        case_id = new_case_id()
        published = [await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi")]
        subscribed = clients[0]._sid  # nats-py's count of subscriptions made
        for n in range(3):
            published.append(
                await kemlu.publish(
                    "document.requested",
                    {"request_id": f"doc-{n}", "kind": "nik"},
                    case_id=case_id,
                    target="dukcapil",
                )
            )
        assert kemlu_reads.heads == 1  # the new case's, before its first event only

        # Another agency writes the case: kemlu's head is stale, admission says so, and
        # kemlu reads the head again and chains to kp2mi's event.
        theirs = await kp2mi.publish(
            "document.requested",
            {"request_id": "kp2mi-1", "kind": "kk"},
            case_id=case_id,
            target="kemlu",
        )
        last = await kemlu.publish(
            "document.requested",
            {"request_id": "doc-after", "kind": "nik"},
            case_id=case_id,
            target="dukcapil",
        )
        assert kemlu_reads.heads == 2
        assert platform.service.refusals["chain_moved"] == 1
        assert last.stream_seq == theirs.stream_seq + 1
        shared = await kemlu.publish(
            "document.requested",
            {"request_id": "doc-shared", "kind": "nik"},
            case_id=case_id,
            target="dukcapil",
        )
        assert kemlu_reads.heads == 3
        assert platform.service.refusals["chain_moved"] == 1
        # kp2mi read kemlu's event at the head before its own: it kept no head of the case.
        again = await kp2mi.publish(
            "document.requested",
            {"request_id": "kp2mi-2", "kind": "kk"},
            case_id=case_id,
            target="kemlu",
        )
        assert kp2mi_reads.heads == 2
        assert platform.service.refusals["chain_moved"] == 1

        assert clients[0]._sid == subscribed  # one took all of admission's answers

        chain = [*published, theirs, last, shared, again]
        js = platform.reader.js()
        stored = [(await js.get_msg(settings.stream, seq=p.stream_seq)).data for p in chain]
        assert [json.loads(raw).get("prevhash") for raw in stored] == [
            None,
            *(message_hash(raw) for raw in stored[:-1]),
        ]
