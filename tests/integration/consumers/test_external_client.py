"""An agency system not written in Python, sending as docs/CONTRACTS.md and docs/ADMISSION.md
tell it to, on a bus with authorization on.

The external side uses no lintas code: its events are plain dicts built from the committed
JSON Schemas, put in the RFC 8785 canonical form by the few lines below (written from the
RFC's rules), signed with ``cryptography``'s Ed25519, chained, and sent with raw nats-py to
the intake, connected with an nkey the agency made itself; it reads its key id and the
admission's public key from the registry the platform publishes, learns a case's head from
a ``chain_moved`` refusal, and checks each receipt's signature. Two agencies send: the
Malaysian partner ``my-jkm`` from behind its own leaf node, and ``kemlu`` on the hub.

lintas runs only the platform's side: the bus, the identities and keys it registers, the
admission, and the consumers, which are asked afterwards what they applied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import nats
import nats.errors
import nkeys
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tests.support.paths import REPO

SCHEMAS = REPO / "contracts" / "schemas"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WAIT_S = 20.0
"""How long the client waits for one answer (it comes at once; a slow CI machine gets room)."""

pytestmark = pytest.mark.nats


# -- what any agency's system writes, from the documents alone ----------------------------------


def uuid7() -> str:
    """RFC 9562 UUIDv7 from the standard library, as any client would write it."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def case_id() -> str:
    value = uuid.UUID(uuid7()).int
    return "C" + "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _jcs_string(text: str) -> str:
    # RFC 8785 3.2.2.2: only '"', '\' and U+0000..U+001F escaped (short forms where
    # ECMAScript has them, else \u00xx in lowercase hex); everything else as it is.
    return (
        '"' + "".join(_SHORT.get(c) or (f"\\u{ord(c):04x}" if c < " " else c) for c in text) + '"'
    )


def jcs(value: Any) -> str:
    """RFC 8785 for what lintas documents hold: objects, arrays, strings, integers,
    booleans and null (no fractions: the contracts carry none)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # Integers ECMAScript holds exactly are written in decimal (3.2.2.3).
        assert abs(value) < 2**53, value
        return str(value)
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        # 3.2.3: members sorted by their names' UTF-16 code units (big-endian bytes compare
        # as the units do).
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        return "{" + ",".join(f"{_jcs_string(n)}:{jcs(value[n])}" for n in names) + "}"
    raise TypeError(f"{type(value).__name__} is not in a lintas document")


def canonical(doc: dict[str, Any]) -> bytes:
    return jcs(doc).encode()


def event_hash(envelope: dict[str, Any]) -> str:
    """What the case's next event names as ``prevhash`` (docs/ADMISSION.md, "Sending")."""
    return "sha256:" + hashlib.sha256(canonical(envelope)).hexdigest()


def schema(relpath: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / relpath).read_text())
    return loaded


def envelope(
    source: str, target: str, event_type: str, version: int, case: str, data: dict[str, Any]
) -> dict[str, Any]:
    data_schema = schema(f"{event_type}/v{version}.json")
    doc = {
        "specversion": "1.0",
        "id": uuid7(),
        "source": source,
        "type": event_type,
        "time": datetime.now(UTC).isoformat(),
        "subject": case,
        "datacontenttype": "application/json",
        "dataschema": data_schema["$id"],
        "dataversion": version,
        "target": target,
        "data": data,
    }
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(data_schema, format_checker=checker).validate(data)
    jsonschema.Draft202012Validator(schema("envelope.json"), format_checker=checker).validate(doc)
    return doc


def verify_signed(public_key: str, doc: dict[str, Any]) -> None:
    """A signed document (a receipt): Ed25519 over its RFC 8785 form without ``signature``."""
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    key = Ed25519PublicKey.from_public_bytes(unb64url(public_key))
    key.verify(unb64url(doc["signature"]), canonical(unsigned))


class Agency:
    """One agency's own system: its Ed25519 key and its nkey, made on its own machine; a raw
    nats-py connection as itself (to its leaf node, for a partner abroad); what it learned
    from the platform's registry (its key id, the admission's receipt keys) and from the
    answers (each case's head as far as it knows, its receipts)."""

    def __init__(self, name: str, js_api: str = "$JS.API") -> None:
        self.name = name
        self.js_api = js_api
        self.key = Ed25519PrivateKey.generate()
        self.nkey_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
        self.keyid: str | None = None
        self.admission_keys: dict[str, str] = {}
        self.heads: dict[str, str] = {}
        self.receipts: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.nc: Any = None
        self.js: Any = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_nkey(self) -> str:
        return str(nkeys.from_seed(bytearray(self.nkey_seed.encode())).public_key.decode())

    async def connect(self, url: str) -> None:
        self.nc = await nats.connect(
            url,
            nkeys_seed_str=self.nkey_seed,
            inbox_prefix=f"_INBOX.{self.name}",
            max_reconnect_attempts=1,
        )
        self.js = self.nc.jetstream(prefix=self.js_api)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def registered(self, holder: str) -> list[dict[str, Any]]:
        """``holder``'s entries in the platform's key registry (KV bucket ``LINTAS_KEYS``)."""
        msg = await self.js.get_last_msg("KV_LINTAS_KEYS", f"$KV.LINTAS_KEYS.{holder}")
        entries: list[dict[str, Any]] = json.loads(msg.data)
        return entries

    async def read_registry(self) -> None:
        mine = b64url(self.public_key)
        [entry] = [e for e in await self.registered(self.name) if e["public_key"] == mine]
        self.keyid = entry["keyid"]
        for entry in await self.registered("admission"):
            self.admission_keys[entry["keyid"]] = entry["public_key"]

    def sign(self, doc: dict[str, Any], prevhash: str | None) -> dict[str, Any]:
        keyed = {k: v for k, v in doc.items() if k not in ("signature", "prevhash", "keyid")}
        if prevhash is not None:
            keyed["prevhash"] = prevhash
        keyed["keyid"] = self.keyid
        return {**keyed, "signature": b64url(self.key.sign(canonical(keyed)))}

    async def send(self, signed: dict[str, Any]) -> dict[str, Any]:
        """The signed event to the intake, answered on an inbox of its own; with no answer
        in time the very same bytes again (docs/ADMISSION.md, "Sending")."""
        body = json.dumps(signed).encode()
        for _ in range(3):
            inbox = f"_INBOX.{self.name}.{uuid.uuid4().hex}"
            sub = await self.nc.subscribe(inbox, max_msgs=1)
            try:
                ack = await self.js.publish(
                    f"lintas_intake.{self.name}.{signed['subject']}",
                    body,
                    timeout=WAIT_S,
                    headers={"Lintas-Reply": inbox},
                )
                assert ack.stream == "LINTAS_INTAKE"
                msg = await sub.next_msg(timeout=WAIT_S)
            except nats.errors.TimeoutError:
                continue
            finally:
                await sub.unsubscribe()
            answer: dict[str, Any] = json.loads(msg.data)
            assert answer["event_id"] == signed["id"]
            return answer
        raise AssertionError(f"admission did not answer {self.name}'s {signed['type']}")

    async def say(self, doc: dict[str, Any]) -> None:
        """``doc`` chained on the case's head as this agency knows it. When it has not seen
        the case's last event, the ``chain_moved`` refusal names the head, and the event
        goes again on it (the same id: nothing of it entered the log)."""
        signed = self.sign(doc, self.heads.get(doc["subject"]))
        answer = await self.send(signed)
        if not answer["admitted"]:
            self.refused.append(answer["code"])
            assert answer["code"] == "chain_moved", answer
            assert answer["head"]["seq"] > 0
            signed = self.sign(doc, answer["head"]["hash"])
            answer = await self.send(signed)
        self.admitted(signed, answer)

    def admitted(self, signed: dict[str, Any], answer: dict[str, Any]) -> None:
        """An admitted answer, checked: its hash is the one the docs say, its receipt is
        signed with the admission's registered key and names this event."""
        assert answer["admitted"], answer
        assert answer["hash"] == event_hash(signed)
        receipt = answer["receipt"]
        assert (receipt["event_id"], receipt["case_id"], receipt["source"]) == (
            signed["id"],
            signed["subject"],
            signed["source"],
        )
        assert (receipt["seq"], receipt["hash"]) == (answer["seq"], answer["hash"])
        public_key = self.admission_keys[receipt["keyid"]]
        verify_signed(public_key, receipt)
        with pytest.raises(InvalidSignature):
            verify_signed(public_key, {**receipt, "seq": receipt["seq"] + 1})
        self.heads[signed["subject"]] = answer["hash"]
        self.receipts.append(receipt)


# -- the platform's side (lintas) ----------------------------------------------------------


def register_identities(tmp_path: Path, agencies: list[Agency]) -> None:
    """The platform registers each agency's own public nkey (``lintas agency add --nkey``)
    before its bus starts: no seed of theirs is ever made or kept by the platform."""
    from lintas.infra.nats.identities import add_identity
    from lintas.infra.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")  # the data dir secured_hub then uses
    for agency in agencies:
        add_identity(settings, agency.name, nkey=agency.public_nkey)


def register_signing_keys(settings: Any, agencies: list[Agency]) -> None:
    """Each agency's public Ed25519 key into the platform's registry, valid from now."""
    from lintas.infra.keys.registry import read_document, write_document
    from lintas.infra.keys.signing import KeyEntry, Registry, key_id, local_registry_path

    path = local_registry_path(settings)
    registry = Registry.from_json(read_document(path))
    for agency in agencies:
        public = agency.key.public_key()
        registry.add(
            KeyEntry(
                agency=agency.name,
                keyid=key_id(agency.name, public),
                public_key=public,
                valid_from=datetime.now(UTC).replace(microsecond=0),
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_document(path, registry.to_json())


async def test_an_agency_without_lintas_sends_through_admission(tmp_path: Path) -> None:
    from sqlmodel import Session

    from lintas.admission.running import admission_key
    from lintas.consumers.projections import load_record, load_records, load_worklist
    from lintas.infra.keys.signing import register_keys, trusted_registry
    from lintas.infra.nats.bus import platform_services
    from lintas.infra.nats.topology import declare_platform, deployment_consumers
    from tests.support.secured import (
        Client,
        leaves_connected,
        partner_conf,
        secured_hub,
        start_leaf,
        stop_leaf,
    )

    jkm, kemlu = Agency("my-jkm", js_api="lintas_api"), Agency("kemlu")
    register_identities(tmp_path, [jkm, kemlu])
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        operator = await Client.open(hub.url, settings, "platform")
        leaf = None
        try:
            leaf = start_leaf(tmp_path / "leaf", partner_conf(hub, "my-jkm"))
            await declare_platform(operator.js(), settings, deployment_consumers(["kemlu"]))
            register_signing_keys(settings, [jkm, kemlu])
            admission_key(settings)  # made here on first use, as lintas up does
            await register_keys(settings, operator.js())
            # The read service and admission, as every deployment runs them.
            async with platform_services(settings, hub.url):
                await leaves_connected(leaf)
                await jkm.connect(leaf.url)
                await kemlu.connect(hub.url)
                for agency in (jkm, kemlu):
                    await agency.read_registry()
                case, _ = await _send_the_story(jkm, kemlu)
                registry = await trusted_registry(settings, operator.js())
                admitted = len(jkm.receipts) + len(kemlu.receipts)
                databases = await _consume(hub.url, settings, registry, kemlu, admitted)
        finally:
            for agency in (jkm, kemlu):
                await agency.close()
            if leaf is not None:
                stop_leaf(leaf)
            await operator.close()

    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
        main = load_record(session, case)
    engine, _ = databases.for_consumer("worklist-kemlu")
    with Session(engine) as session:
        items = load_worklist(session, "kemlu")
    databases.dispose()
    # kemlu learnt the case's head from admission's refusal; my-jkm knew each head.
    assert (jkm.refused, kemlu.refused) == ([], ["chain_moved"])
    assert [r["seq"] for r in jkm.receipts + kemlu.receipts] == list(range(1, 7))
    assert len(records) == 2
    assert main is not None
    assert (main.situation, main.jurisdiction, main.whereabouts) == (
        "undocumented_abroad",
        "MY",
        "MY-12, MY",
    )
    assert [e.type for e in main.timeline] == [
        "case.opened",
        "consent.recorded",
        "referral.requested",
        "referral.accepted",
        "document.requested",
    ]
    assert [e.refused for e in main.timeline] == [None] * 5  # every disclosure consented
    old = next(r for r in records.values() if r.case_id != case)
    assert (old.situation, old.whereabouts) == ("stateless_risk", "MY-13, MY")
    assert [(i.requester, i.request_id, i.status) for i in items] == [
        ("my-jkm", "jkm-77", "accepted")
    ]


async def _consume(url: str, settings: Any, registry: Any, kemlu: Agency, admitted: int) -> Any:
    """lintas' consumers apply what admission admitted: the record (the platform's) and
    kemlu's worklist, connected with the nkey kemlu made; both check the agencies'
    signatures against the registry the platform keeps."""
    from lintas.consumers.app import Databases, attach_agency, attach_record, create_broker
    from lintas.infra.files import write_private
    from lintas.infra.keys.signing import Verifier
    from lintas.infra.nats.credentials import seed_path
    from tests.support.helpers import Applied

    write_private(seed_path(settings, "kemlu"), kemlu.nkey_seed)
    record_applied, worklist_applied = Applied(), Applied()
    databases = Databases(settings)
    record = create_broker(url, settings, "platform")
    worklist = create_broker(url, settings, "kemlu")
    verifier = Verifier(registry)
    attach_record(record, databases, settings, on_commit=[record_applied], verifier=verifier)
    attach_agency(
        worklist,
        databases,
        settings,
        "kemlu",
        on_commit=[worklist_applied],
        verifier=verifier,
        via_read_service=True,
    )
    await record.start()
    await worklist.start()
    try:
        await record_applied.wait_for(admitted)
        # kemlu's inbox: both case.opened, the consent and the referral; its sent:
        # accepted, issued.
        await worklist_applied.wait_for(6)
    finally:
        await worklist.stop()
        await record.stop()
    return databases


async def _send_the_story(jkm: Agency, kemlu: Agency) -> tuple[str, str]:
    """my-jkm opens two cases (one on an older version of case.opened, with no free text:
    admission refuses an older version that carries some), records the parent's consent and
    refers the first to kemlu; kemlu accepts and issues a document."""
    case, older = case_id(), case_id()
    await jkm.say(
        envelope(
            "my-jkm",
            "kemlu",
            "case.opened",
            4,
            case,
            {
                "situation": "undocumented_abroad",
                "location": {"country": "MY", "subdivision": "MY-12"},
                "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYTWU"},
                "risk_level": "high",
            },
        ),
    )
    # An older client still on v2 of case.opened, for another case.
    await jkm.say(
        envelope(
            "my-jkm",
            "kemlu",
            "case.opened",
            2,
            older,
            {
                "situation": "stateless_risk",
                "location": {"country": "MY", "subdivision": "MY-13"},
                "jurisdiction": {"country": "MY"},
                "risk_level": "medium",
            },
        ),
    )
    # The parent's consent, recorded where the child was found, for everyone to see:
    # without it admission's consent gate would refuse the referral.
    await jkm.say(
        envelope(
            "my-jkm",
            "all",
            "consent.recorded",
            1,
            case,
            {
                "consent_id": "jkm-consent-1",
                "given_by": "parent",
                "child_assent": True,
                "scopes": ["services", "disclosure_to_agencies"],
                "agencies": ["kemlu", "kp2mi", "my-jkm"],
            },
        ),
    )
    await jkm.say(
        envelope(
            "my-jkm",
            "kemlu",
            "referral.requested",
            1,
            case,
            {"referral_id": "jkm-77", "service": "shelter", "due": "2030-01-31T00:00:00+08:00"},
        ),
    )
    # kemlu has seen none of the case's events: its first is refused chain_moved, with the
    # head it then chains on.
    await kemlu.say(
        envelope("kemlu", "my-jkm", "referral.accepted", 1, case, {"referral_id": "jkm-77"})
    )
    # (An older version whose personal fields travel in clear, document.issued v2 with its
    # number, is refused not_sealed: a client without the case's data key sends nothing
    # personal. tests/integration/attacks: test_a_personal_field_in_clear_...)
    await kemlu.say(
        envelope(
            "kemlu",
            "kp2mi",
            "document.requested",
            1,
            case,
            {"request_id": "kemlu-doc-1", "kind": "citizenship_confirmation"},
        ),
    )
    return case, older
