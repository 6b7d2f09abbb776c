"""What the audit tests share: chained, signed events in memory and on a real stream, the
CLI, and an exported archive edited as someone altering it would.

``ChainedAgencies`` publishes through the agencies' own Publishers, which chain each case's
events (``prevhash``) and sign them: the log an auditor meets.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext

from lintas.audit import StoredEvent, StreamReader, verify_stream
from lintas.audit.archive import parse_line
from lintas.cli import main
from lintas.contracts import encode, event_hash, make_event, message_hash, new_case_id
from lintas.infra.keys.signing import SEALER, KeyEntry, Registry, Signer, load_registry
from lintas.infra.settings import Settings
from tests.support.helpers import declare_record, publish_case, signed
from tests.support.samples import sealed

pytestmark = pytest.mark.nats

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)

OPENED: dict[str, Any] = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
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
            "issuing_office": "35.25",
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

# Agencies' keys for events signed in memory (the unit tests), and the registry of them.
SIGNERS = {
    agency: Signer(agency, Ed25519PrivateKey.generate()) for agency in ("kemlu", "kp2mi", SEALER)
}
REGISTRY = Registry(
    KeyEntry(agency, s.keyid, s._key.public_key(), valid_from=datetime(2000, 1, 1, tzinfo=UTC))
    for agency, s in SIGNERS.items()
)


class Log:
    """Signed, chained events in memory, numbered as a stream would."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.heads: dict[str, str] = {}

    def add(
        self,
        event_type: str,
        case_id: str,
        *,
        source: str = "kp2mi",
        target: str = "kemlu",
        minutes: int = 0,
        chain: bool = True,
    ) -> StoredEvent:
        event = make_event(
            sealed(event_type, case_id),
            source=source,
            target=target,
            case_id=case_id,
            time=T0 + timedelta(minutes=minutes),
        )
        envelope = event.envelope.model_copy(
            update={"prevhash": self.heads.get(case_id) if chain else None}
        )
        body = encode(SIGNERS[source].sign(envelope))
        self.heads[case_id] = event_hash(json.loads(body))
        stored = StoredEvent(len(self.events) + 1, envelope.nats_subject, body)
        self.events.append(stored)
        return stored

    def case(self, case_id: str, *, minutes: int = 0) -> None:
        self.add("case.opened", case_id, source="kemlu", target="kp2mi", minutes=minutes)
        self.add("document.requested", case_id, minutes=minutes + 1)
        self.add("case.assigned", case_id, minutes=minutes + 2)


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


async def written_past_admission(
    js: JetStreamContext,
    settings: Settings,
    after: Sent,
    source: str,
    event_type: str,
    data: dict[str, Any],
    *,
    time: datetime,
) -> Sent:
    """What a client with write access to the log could put there past admission and its
    Publisher's own checks: an event signed by ``source``, chained on ``after`` (the case's
    last event), straight onto its subject."""
    event = make_event(
        sealed(event_type, after.case_id, data),
        source=source,
        target="all",
        case_id=after.case_id,
        time=time,
    )
    envelope = event.envelope.model_copy(update={"prevhash": event_hash(after.doc)})
    body = encode(Signer.load(settings, source).sign(envelope))
    ack = await js.publish(envelope.nats_subject, body, stream=settings.stream)
    return Sent(ack.seq, after.case_id, json.loads(body))


async def cli(*argv: str) -> int:
    """``lintas ...`` as a user runs it (its own event loop, in a thread)."""
    return await asyncio.to_thread(main, list(argv))


class Tamper:
    """An exported archive directory, edited the way someone altering it would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = (path / "events.jsonl").read_bytes().splitlines(keepends=True)

    def line(self, seq: int) -> dict[str, Any]:
        return dict(json.loads(next(x for x in self.lines if json.loads(x)["seq"] == seq)))

    def index(self, seq: int) -> int:
        return next(i for i, x in enumerate(self.lines) if json.loads(x)["seq"] == seq)

    def save(self, *, fix_manifest: bool = False) -> None:
        (self.path / "events.jsonl").write_bytes(b"".join(self.lines))
        if fix_manifest:  # an attacker rewrites the (unsigned) manifest to match
            manifest = json.loads((self.path / "manifest.json").read_text())
            seqs = [json.loads(x)["seq"] for x in self.lines]
            manifest["events"].update(
                count=len(seqs),
                first_seq=seqs[0],
                last_seq=seqs[-1],
                sha256="sha256:" + hashlib.sha256(b"".join(self.lines)).hexdigest(),
            )
            manifest["cut"]["last_seq"] = max(manifest["cut"]["last_seq"], seqs[-1])
            keys = (self.path / "keys.json").read_bytes()
            manifest["keys"]["sha256"] = "sha256:" + hashlib.sha256(keys).hexdigest()
            # What the log held at each position, as the attacker would have it read.
            positions = b"".join(
                f"{json.loads(x)['seq']} {message_hash(parse_line(x).body)}\n".encode()
                for x in self.lines
            )
            (self.path / "positions.txt").write_bytes(positions)
            manifest["positions"]["sha256"] = "sha256:" + hashlib.sha256(positions).hexdigest()
            (self.path / "manifest.json").write_text(json.dumps(manifest, indent=2))

    def sign_manifest(self, signer: Signer) -> None:
        """Sign the manifest afresh: with a key of one's own, as an impostor would."""
        manifest = json.loads((self.path / "manifest.json").read_text())
        signed = signer.sign_document(manifest)
        (self.path / "manifest.json").write_text(json.dumps(signed, indent=2))


async def export(tmp_path: Path, *args: str, name: str = "archive") -> Path:
    """``lintas export`` into ``tmp_path / name``, which it returns."""
    out = tmp_path / name
    assert await cli("export", "--out", str(out), *args) == 0
    return out


async def keys_file(tmp_path: Path) -> Path:
    """``lintas keys export``: the platform's registry as it stands now, in a new file."""
    out = tmp_path / f"keys-{next(_KEY_FILES)}.json"
    assert await cli("keys", "export", "--out", str(out)) == 0
    return out


_KEY_FILES = itertools.count(1)


async def verify_archive_cli(tmp_path: Path, archive: Path, *args: str) -> int:
    """``lintas verify --archive`` against the platform's registry kept apart (``--keys``)."""
    keys = await keys_file(tmp_path)
    return await cli("verify", "--archive", str(archive), "--keys", str(keys), *args)


async def verify_fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``lintas verify`` fails: its output, unwrapped."""
    capsys.readouterr()
    assert await cli("verify", *args) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    return " ".join(out.split())  # unwrapped


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
