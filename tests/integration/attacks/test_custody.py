"""Custody of case keys (issue 23, item 1), tried by hostile identities on a real secured bus.

Every attempt is made on a connection as the identity that would try it: an agency, the
partner abroad behind its leaf node, and the platform's own identity broken into. What the
permissions refuse, the server refuses itself; what the custody service refuses, it says
so (``ReadRefused``); what a broken-into platform plants, the recipient refuses to open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from lintas.contracts import BROADCAST, new_case_id
from lintas.infra.keys.exchange import Recipients, ensure_exchange_key, load_recipients
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.topology import CASE_KEYS_BUCKET, case_keys_stream
from lintas.infra.privacy.casekeys import (
    CaseKeys,
    case_keys_for,
    list_case_keys,
    revoke_case_keys,
)
from lintas.infra.privacy.custody import WrapUnverified, make_wrap
from lintas.infra.privacy.sealing import new_data_key, wrap_key
from lintas.infra.reads import ReadRefused, ServiceReads
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.integration.infra.nats.test_access_enforced import (
    NOW,
    _keyed_publisher,
    _open_with_child,
    _platform,
)
from tests.support.secured import (
    Client,
    Hub,
    leaves_connected,
    partner_conf,
    secured_hub,
    start_leaf,
    stop_leaf,
)

pytestmark = pytest.mark.nats

ROOT = f"$KV.{CASE_KEYS_BUCKET}"


@dataclass
class _Bus:
    hub: Hub
    settings: Settings
    recipients: Recipients
    platform: Client
    clients: dict[str, Client]

    def keys(self, agency: str) -> CaseKeys:
        client = self.clients[agency]
        return case_keys_for(client.js(), self.settings, agency, self.recipients)

    def publisher(self, agency: str) -> Publisher:
        return _keyed_publisher(self.clients[agency], self.settings, self.recipients)

    def custody(self, agency: str) -> ServiceReads:
        return ServiceReads(self.clients[agency].conn, agency)

    def wrap(
        self, maker: str, key: bytes, case_id: str, recipient: str, grant: str
    ) -> dict[str, Any]:
        exchange = self.recipients.get(recipient)
        assert exchange is not None
        return make_wrap(
            Signer.load(self.settings, maker),
            key,
            exchange.public_key,
            kid=exchange.kid,
            case_id=case_id,
            gen=1,
            recipient=recipient,
            grant=grant,
        )

    async def stored(self, case_id: str) -> list[str]:
        return [e.key for e in await list_case_keys(self.platform.js(), case_id)]


@asynccontextmanager
async def _bus(tmp_path: Path, agencies: tuple[str, ...]) -> AsyncIterator[_Bus]:
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        for agency in ("kemlu", "kp2mi", "dukcapil", "my-jkm"):
            ensure_exchange_key(settings, agency)
        clients = {a: await Client.open(hub.url, settings, a) for a in agencies}
        try:
            yield _Bus(hub, settings, load_recipients(settings), platform, clients)
        finally:
            await service.stop()
            for client in (*clients.values(), platform):
                await client.close()


async def _consent(publisher: Publisher, case_id: str, agencies: list[str], cid: str) -> int:
    stored = await publisher.publish(
        "consent.recorded",
        {
            "consent_id": cid,
            "given_by": "parent",
            "child_assent": True,
            "scopes": ["services", "disclosure_to_agencies"],
            "agencies": agencies,
        },
        case_id=case_id,
        target=BROADCAST,
        time=NOW,
    )
    return int(stored.stream_seq)


async def _refused(attempt: Any, match: str = "") -> bool:
    try:
        await attempt
    except ReadRefused as exc:
        return match in str(exc)
    return False


async def test_a_wildcard_direct_get_returns_no_other_agency_s_wrap(tmp_path: Path) -> None:
    """A direct get whose subject ends in a literal ``>`` (or ``*``) token is a filter to
    the server (it returned kp2mi's wrap to dukcapil under the old permission for markers):
    no agency may direct-get the store at all now, and custody reads only exact keys."""
    async with _bus(tmp_path, ("kemlu", "dukcapil", "kp2mi")) as bus:
        case_id = new_case_id()
        publisher = bus.publisher("kemlu")
        await _open_with_child(publisher, case_id, "WILDCARD")
        await _consent(publisher, case_id, ["kp2mi"], "consent-1")
        assert await bus.keys("kp2mi").data_key(case_id) is not None
        dukcapil = bus.clients["dukcapil"]
        api = f"$JS.API.DIRECT.GET.{case_keys_stream()}.{ROOT}"
        leaked = []
        for tail in (f"{case_id}.>", f"{case_id}.*.*", f"{case_id}.1.*", "*.>", ">", "*.*.*"):
            subject = f"{api}.{tail}"
            try:
                msg = await dukcapil.conn.request(subject, b"", timeout=0.5)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                assert await dukcapil.refused(subject)
                continue
            leaked.append((tail, (msg.headers or {}).get("Nats-Subject", "")))
        assert leaked == []
        custody = bus.custody("dukcapil")
        for key in (f"{case_id}.1.kp2mi", f"{case_id}.>", f"{case_id}.1.*", f"{case_id}.*"):
            assert await _refused(custody.case_key(key)), key
        # Its markers and its own (absent) wrap it may read.
        assert await custody.case_key(f"{case_id}.1") is not None
        assert await custody.case_key(f"{case_id}.1.dukcapil") is None


async def test_an_agency_cannot_put_or_delete_in_the_key_store(tmp_path: Path) -> None:
    async with _bus(tmp_path, ("kemlu", "dukcapil", "kp2mi")) as bus:
        case_id = new_case_id()
        publisher = bus.publisher("kemlu")
        await _open_with_child(publisher, case_id, "PUT")
        await _consent(publisher, case_id, ["kp2mi"], "consent-1")
        before = await bus.stored(case_id)
        dukcapil = bus.clients["dukcapil"]
        for subject in (
            f"{ROOT}.{case_id}.1.kp2mi",
            f"{ROOT}.{case_id}.1.dukcapil",
            f"{ROOT}.{case_id}.erased",
            f"{ROOT}.{new_case_id()}.1",
        ):
            await dukcapil.conn.publish(subject, b"{}")
            assert await dukcapil.refused(subject)
        for subject, body in (
            (f"$JS.API.STREAM.MSG.DELETE.{case_keys_stream()}", b'{"seq":1}'),
            (f"$JS.API.STREAM.PURGE.{case_keys_stream()}", b"{}"),
        ):
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await dukcapil.conn.request(subject, body, timeout=0.5)
            assert await dukcapil.refused(subject)
        assert await bus.stored(case_id) == before


async def test_a_partner_abroad_cannot_plant_another_agency_s_wrap(tmp_path: Path) -> None:
    """The substitution seen: the partner abroad wrote kp2mi's wrap of a key of its own
    before the consent naming kp2mi was recorded; kp2mi would then have sealed under the
    partner's key. Through its leaf node, it can write nothing to the store, and custody
    stores no wrap it makes; kp2mi gets the case's real key once the consent names it."""
    async with _bus(tmp_path, ("kemlu", "kp2mi")) as bus:
        leaf = start_leaf(tmp_path / "leaf", partner_conf(bus.hub, "my-jkm"))
        try:
            await leaves_connected(leaf)
            partner = await Client.open(leaf.url, bus.settings, "my-jkm")
            bus.clients["my-jkm"] = partner
            case_id = new_case_id()
            publisher = bus.publisher("kemlu")
            await _open_with_child(publisher, case_id, "SUBSTITUTION")
            own = new_data_key()
            planted = bus.wrap("my-jkm", own, case_id, "kp2mi", "seq:1")
            # Straight into the store, through the leaf: not in its account at all.
            await partner.conn.publish(f"{ROOT}.{case_id}.1.kp2mi", json.dumps(planted).encode())
            # Through custody, as itself.
            custody = bus.custody("my-jkm")
            assert await _refused(custody.wrap_case_key(case_id, 1, planted))
            mine = bus.wrap("my-jkm", own, case_id, "my-jkm", "made")
            assert await _refused(custody.make_case_key(case_id, 1, mine), "never holds")
            # As kemlu's: custody stores only what the asker signed.
            assert await _refused(
                custody.wrap_case_key(case_id, 1, bus.wrap("kemlu", own, case_id, "kp2mi", "seq:1"))
            )
            assert f"{case_id}.1.kp2mi" not in await bus.stored(case_id)
            # The consent naming kp2mi: kp2mi gets kemlu's key, not the partner's.
            await _consent(publisher, case_id, ["kp2mi", "my-jkm"], "consent-1")
            real = await bus.keys("kemlu").data_key(case_id)
            assert real is not None
            assert await bus.keys("kp2mi").data_key(case_id) == real != own
            # And an agency abroad never holds the key, even named by a consent.
            assert await _refused(custody.case_key(f"{case_id}.1.kemlu"))
            assert await custody.case_key(f"{case_id}.1.my-jkm") is None
        finally:
            stop_leaf(leaf)


async def test_custody_wraps_only_for_an_admitted_grant_by_the_key_s_holder(
    tmp_path: Path,
) -> None:
    async with _bus(tmp_path, ("kemlu", "dukcapil", "kp2mi")) as bus:
        case_id = new_case_id()
        publisher = bus.publisher("kemlu")
        opened = await _open_with_child(publisher, case_id, "GRANTS")
        grant = await _consent(publisher, case_id, ["kp2mi"], "consent-1")
        key = await bus.keys("kemlu").data_key(case_id)
        assert key is not None
        kemlu = bus.custody("kemlu")
        # The holder, for a recipient no admitted consent names.
        for grant_named in (f"seq:{grant}", f"seq:{opened.stream_seq}", "seq:999"):
            wrap = bus.wrap("kemlu", key, case_id, "dukcapil", grant_named)
            assert await _refused(kemlu.wrap_case_key(case_id, 1, wrap)), grant_named
        # A non-holder, for a recipient a consent does name (kemlu's, or one of its own).
        dukcapil = bus.custody("dukcapil")
        forged = new_data_key()
        for grant_named in (f"seq:{grant}",):
            wrap = bus.wrap("dukcapil", forged, case_id, "kp2mi", grant_named)
            assert await _refused(dukcapil.wrap_case_key(case_id, 1, wrap), "does not hold")
        # A first key for a case on the log, by neither its opener nor its owner.
        mine = bus.wrap("dukcapil", forged, new_case_id(), "dukcapil", "made")
        wrap = bus.wrap("dukcapil", forged, case_id, "dukcapil", "made")
        assert await _refused(dukcapil.make_case_key(case_id, 1, wrap), "opener or owner")
        assert await dukcapil.make_case_key(mine["case"], 1, mine) == "dukcapil"  # a new case
        # A wrap that says one recipient and is stored for another is refused as malformed.
        wrap = bus.wrap("kemlu", key, case_id, "kp2mi", f"seq:{grant}")
        wrap["for"] = "dukcapil"
        assert await _refused(kemlu.wrap_case_key(case_id, 1, wrap))
        assert f"{case_id}.1.dukcapil" not in await bus.stored(case_id)
        # Once withdrawn, the consent justifies no wrap.
        await publisher.publish(
            "consent.withdrawn",
            {"consent_id": "consent-1", "reason": "the mother asked"},
            case_id=case_id,
            target=BROADCAST,
        )
        assert await bus.keys("kp2mi").data_key(case_id) is None  # revoked
        wrap = bus.wrap("kemlu", key, case_id, "kp2mi", f"seq:{grant}")
        assert await _refused(kemlu.wrap_case_key(case_id, 1, wrap), "withdrawn")
        assert await bus.keys("kp2mi").data_key(case_id) is None


async def test_a_recipient_refuses_a_wrap_a_broken_into_platform_planted(tmp_path: Path) -> None:
    """The platform's identity may write the store (custody runs as it). Broken into, it
    can plant a wrap of a key of the attacker's: kp2mi must refuse to open it, whether
    unsigned (as wraps were before custody), signed by a partner abroad, or signed by one
    agency in another's name."""
    async with _bus(tmp_path, ("kemlu", "kp2mi")) as bus:
        kp2mi = bus.recipients.get("kp2mi")
        assert kp2mi is not None
        attacker = new_data_key()

        def unsigned(case_id: str) -> dict[str, Any]:
            return wrap_key(
                attacker,
                kp2mi.public_key,
                case_id=case_id,
                gen=1,
                agency="kp2mi",
                grant="made",
                maker="kp2mi",
            )

        def abroad(case_id: str) -> dict[str, Any]:
            return bus.wrap("my-jkm", attacker, case_id, "kp2mi", "seq:2")

        def in_kemlu_s_name(case_id: str) -> dict[str, Any]:
            wrap = bus.wrap("dukcapil", attacker, case_id, "kp2mi", "seq:2")
            return wrap | {"maker": "kemlu"}

        def other_case(case_id: str) -> dict[str, Any]:
            return bus.wrap("kemlu", attacker, new_case_id(), "kp2mi", "seq:2")

        for plant in (unsigned, abroad, in_kemlu_s_name, other_case):
            # The store keeps one message per key: each forgery goes to a case of its own.
            case_id = new_case_id()
            await _open_with_child(bus.publisher("kemlu"), case_id, "PLANTED")
            await bus.platform.js().publish(
                f"{ROOT}.{case_id}.1.kp2mi", json.dumps(plant(case_id)).encode()
            )
            with pytest.raises(WrapUnverified):
                await bus.keys("kp2mi").data_key(case_id)


async def test_a_recipient_refuses_a_stolen_key_s_wrap_naming_a_seq_that_is_no_grant_of_it(
    tmp_path: Path,
) -> None:
    """The platform's identity broken into *and* a domestic agency's signing key stolen:
    the planted wrap is signed by an agency that may hold keys and names a real sequence
    of the log. kp2mi reads that event itself (through the read service, as itself) and
    refuses the wrap unless it is a consent or override of this case, signed by the wrap's
    maker, naming kp2mi with a reading scope and not withdrawn. The honest grant opens."""
    async with _bus(tmp_path, ("kemlu", "kp2mi")) as bus:
        attacker = new_data_key()
        kemlu = bus.publisher("kemlu")

        async def planted(case_id: str, maker: str, grant: int) -> None:
            wrap = bus.wrap(maker, attacker, case_id, "kp2mi", f"seq:{grant}")
            # Erased first, as the platform may: the store keeps one message per key.
            await revoke_case_keys(bus.platform.js(), case_id, ["kp2mi"])
            await bus.platform.js().publish(f"{ROOT}.{case_id}.1.kp2mi", json.dumps(wrap).encode())

        async def refused(case_id: str, match: str) -> None:
            with pytest.raises(WrapUnverified, match=match):
                await bus.keys("kp2mi").data_key(case_id)

        # Not a consent: the case's opening, signed by kemlu.
        case_id = new_case_id()
        opened = await _open_with_child(kemlu, case_id, "NOT-A-CONSENT")
        await planted(case_id, "kemlu", int(opened.stream_seq))
        await refused(case_id, "no admitted consent")
        # A consent of this case by kemlu that names dukcapil, not kp2mi.
        case_id = new_case_id()
        await _open_with_child(kemlu, case_id, "OTHERS")
        grant = await _consent(kemlu, case_id, ["dukcapil"], "consent-1")
        await planted(case_id, "kemlu", grant)
        await refused(case_id, "does not name kp2mi")
        # kemlu's consent naming kp2mi, but the wrap signed with dukcapil's stolen key
        # (custody stored kemlu's real wrap; the broken-into platform replaced it).
        case_id = new_case_id()
        await _open_with_child(kemlu, case_id, "ANOTHER-MAKER")
        grant = await _consent(kemlu, case_id, ["kp2mi"], "consent-1")
        assert await bus.keys("kp2mi").data_key(case_id) is not None  # the honest grant
        await planted(case_id, "dukcapil", grant)
        await refused(case_id, "given by kemlu, not dukcapil")
        # kemlu's consent naming kp2mi, of another case.
        elsewhere = new_case_id()
        await _open_with_child(kemlu, elsewhere, "ELSEWHERE")
        grant = await _consent(kemlu, elsewhere, ["kp2mi"], "consent-1")
        case_id = new_case_id()
        await _open_with_child(kemlu, case_id, "THIS-CASE")
        await planted(case_id, "kemlu", grant)
        await refused(case_id, "no admitted consent")
        # A withdrawn consent: its wrap, kept (or planted again) by the platform.
        case_id = new_case_id()
        await _open_with_child(kemlu, case_id, "WITHDRAWN")
        grant = await _consent(kemlu, case_id, ["kp2mi"], "consent-1")
        await kemlu.publish(
            "consent.withdrawn",
            {"consent_id": "consent-1", "reason": "the mother asked"},
            case_id=case_id,
            target=BROADCAST,
        )
        await planted(case_id, "kemlu", grant)
        await refused(case_id, "withdrawn")
        # And the honest path still opens: kemlu's real key, for its consent naming kp2mi.
        case_id = new_case_id()
        await _open_with_child(kemlu, case_id, "HONEST")
        await _consent(kemlu, case_id, ["kp2mi"], "consent-1")
        real = await bus.keys("kemlu").data_key(case_id)
        assert real is not None
        assert await bus.keys("kp2mi").data_key(case_id) == real
