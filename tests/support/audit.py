"""What the audit tests share: chained, signed events on a real stream, and the CLI.

``ChainedAgencies`` publishes through the agencies' own Publishers, which chain each case's
events (``prevhash``) and sign them: the log an auditor meets.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, verify_stream
from lintas.cli import main
from lintas.contracts import encode, new_case_id
from lintas.infra.keys.signing import load_registry
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from tests.support.helpers import declare_record, publish_case, signed

pytestmark = pytest.mark.nats

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)

OPENED: dict[str, Any] = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
    "risk_level": "high",
}

CONSENT: dict[str, Any] = {
    "consent_id": "consent-1",
    "given_by": "parent",
    "child_assent": True,
    "scopes": ["services", "disclosure_to_agencies"],
    "agencies": ["kp2mi", "dukcapil", "kemensos"],
}

# One case's pathway: (source, target, type, data, hours after the case opened).
STEPS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("kemlu", "kp2mi", "case.opened", OPENED, 0),
    ("kemlu", "all", "consent.recorded", CONSENT, 0),
    ("kp2mi", "dukcapil", "document.requested", {"request_id": "doc-1", "kind": "nik"}, 1),
    (
        "dukcapil",
        "kp2mi",
        "document.issued",
        {
            "request_id": "doc-1",
            "kind": "nik",
            "number": "3525010101150001",
            "issuing_office": "Disdukcapil Kabupaten Gresik",
            "issued_on": "2025-03-02",
        },
        2,
    ),
    (
        "kp2mi",
        "kemensos",
        "referral.requested",
        {"referral_id": "ref-1", "service": "psychosocial_assessment"},
        3,
    ),
    ("kemensos", "kp2mi", "referral.accepted", {"referral_id": "ref-1"}, 4),
    # The owner closes it: kemlu opened it, and nobody assigned it on (the authority policy).
    ("kemlu", "kp2mi", "case.closed", {"reason": "reintegrated"}, 5),
]
AGENCIES = ("kemlu", "kp2mi", "dukcapil", "kemensos")


@dataclass(frozen=True, slots=True)
class Sent:
    seq: int
    case_id: str
    doc: dict[str, Any]


class ChainedAgencies:
    """Publishes as any of ``AGENCIES`` through its own Publisher (producers/), signed with
    its key in the data dir: each event chained to its case's previous one."""

    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self.publishers = {agency: signed(js, settings, agency) for agency in AGENCIES}

    async def publish(
        self,
        source: str,
        target: str,
        event_type: str,
        data: dict[str, Any],
        *,
        case_id: str,
        time: datetime,
    ) -> Sent:
        published = await self.publishers[source].publish(
            event_type, data, case_id=case_id, target=target, time=time
        )
        assert not published.duplicate
        return Sent(published.stream_seq, case_id, json.loads(encode(published.event.envelope)))

    async def cases(self, count: int, *, steps: int = len(STEPS)) -> list[Sent]:
        """``count`` cases, one day apart, their events interleaved in the stream: step 1
        of every case, then step 2 of every case, ..."""
        case_ids = [new_case_id() for _ in range(count)]
        sent: list[Sent] = []
        for source, target, event_type, data, hours in STEPS[:steps]:
            for index, case_id in enumerate(case_ids):
                sent.append(
                    await self.publish(
                        source,
                        target,
                        event_type,
                        data,
                        case_id=case_id,
                        time=T0 + index * DAY + timedelta(hours=hours),
                    )
                )
        return sent


async def cli(*argv: str) -> int:
    """``lintas ...`` as a user runs it (its own event loop, in a thread)."""
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture(name="cli_env")
def cli_env_fixture(
    nats_server: EmbeddedNats, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The CLI sees the test's data dir and bus."""
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LINTAS_NATS_URL", nats_server.url)
    monkeypatch.setenv("LINTAS_STREAM", settings.stream)
    return settings


async def test_chained_agencies_make_a_log_that_verifies(
    js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    sent = await ChainedAgencies(js, settings).cases(3)
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    verdict = await verify_stream(reader.events(cut), cut, load_registry(settings))
    assert verdict.ok, verdict.finding
    assert (verdict.events, verdict.cases, verdict.last_seq) == (len(sent), 3, len(sent))


async def test_the_publishers_chain_is_the_one_verify_checks(
    js: JetStreamContext, settings: Settings
) -> None:
    """The Publisher (producers/) chains each case's events: verify accepts what it writes."""
    await declare_record(js, settings)
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    first = await publish_case(kemlu, steps=2, kp2mi=kp2mi)
    await publish_case(kemlu, steps=1, kp2mi=kp2mi)
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    verdict = await verify_stream(reader.events(cut), cut, load_registry(settings))
    assert verdict.ok, verdict.finding
    case = StreamReader(js, settings.stream, case_id=first)
    verdict = await verify_stream(case.events(cut), cut, load_registry(settings), case_id=first)
    assert verdict.ok, verdict.finding
    assert verdict.events == 3
