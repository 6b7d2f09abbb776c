"""A child's data on a real bus: the consent gate at both ends, withdrawal, sealing, and
minimisation across the border (erasure: test_erasure.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from nats.js import JetStreamContext
from rich.console import Console
from sqlmodel import Session
from structlog.testing import capture_logs

from lintas.cli._dlq import dlq_retry
from lintas.consumers.app import Databases
from lintas.consumers.casefile import NOT_SHARED, read_case_file
from lintas.consumers.projections import load_worklist
from lintas.consumers.quarantine import list_entries
from lintas.consumers.worklist import NOTICE
from lintas.contracts import (
    BROADCAST,
    ConsentMissing,
    NotForAbroad,
    Sealed,
    build_data,
    decode,
    make_event,
    new_case_id,
)
from lintas.contracts.families.case import ChildIdentity
from lintas.infra.keys.exchange import load_exchange_key
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import (
    agency_consumer,
    agency_sent_consumer,
    case_keys_stream,
    declare_platform,
    record_consumer,
)
from lintas.infra.privacy.casekeys import NotAKeyHolder
from lintas.infra.privacy.sealing import SealBroken, open_field, seal_data, unwrap_key
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.bypass import CHILD, OPENED, REFERRAL, consumers, quarantined, raw_publish
from tests.support.helpers import T0, Applied, consent, forge_consent, signed

pytestmark = pytest.mark.nats


async def _declare(js: JetStreamContext, settings: Settings, agencies: Sequence[str]) -> None:
    specs = [record_consumer()]
    for agency in agencies:
        specs += [agency_consumer(agency), agency_sent_consumer(agency)]
    await declare_platform(js, settings, specs)


async def _messages(js: JetStreamContext, settings: Settings) -> int:
    return int((await js.stream_info(settings.stream)).state.messages)


def _worklist(databases: Databases, agency: str) -> list[Any]:
    engine, _ = databases.for_consumer(f"worklist-{agency}")
    with Session(engine) as session:
        return load_worklist(session, agency)


# -- the gate at both ends ----------------------------------------------------------------


async def test_a_referral_without_consent_is_refused_by_the_publisher_and_the_consumer(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await _declare(js, settings, ["kemensos"])
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    case_id = new_case_id()
    await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi", time=T0)

    # 1. The Publisher refuses, and nothing reaches the stream.
    before = await _messages(js, settings)
    with pytest.raises(ConsentMissing, match="scope 'services' covering kemensos"):
        await kp2mi.publish("referral.requested", REFERRAL, case_id=case_id, target="kemensos")
    assert await _messages(js, settings) == before

    # 2. A client that bypasses the Publisher: signed, valid, and quarantined by the
    #    receiving agency's consumer, which applies what follows.
    bypass = make_event(
        build_data("referral.requested", REFERRAL),
        source="kp2mi",
        target="kemensos",
        case_id=case_id,
        time=T0,
    )
    bypassed = await raw_publish(js, settings, bypass)
    await consent(kemlu, case_id, ["kp2mi", "kemensos"], at=T0)
    # 3. With the consent recorded, the same referral (a new one) passes both ends.
    later = await kp2mi.publish(
        "referral.requested",
        {**REFERRAL, "referral_id": "ref-2"},
        case_id=case_id,
        target="kemensos",
    )

    applied = Applied()
    async with consumers(nats_server.url, settings, ["kemensos"], applied) as databases:
        await applied.wait_for(2)  # the consent and the later referral, in stream order
        items = _worklist(databases, "kemensos")
    databases.dispose()
    assert later.stream_seq in {seq for seq, _ in applied.events}
    assert bypassed not in {seq for seq, _ in applied.events}
    reasons = quarantined([e async for e in list_entries(js, settings)], "agency-kemensos")
    assert list(reasons) == [bypassed]
    assert "needs consent for scope 'services' covering kemensos" in reasons[bypassed]
    assert [(i.request_id, i.status) for i in items] == [("ref-2", "requested")]

    # Retrying it changes nothing: the consent came after it, and covers only what follows.
    console = Console(record=True, width=200)
    assert await dlq_retry(console, js, settings, None) == 1
    assert "still refused by the consent gate" in console.export_text()
    assert [e.stream_seq async for e in list_entries(js, settings)] == [bypassed]


async def test_a_consent_signed_with_a_key_not_its_source_s_opens_no_verifying_gate(
    js: JetStreamContext, settings: Settings
) -> None:
    """As every consumer quarantines it, a Publisher given a verifier does not count it."""
    await _declare(js, settings, ["kemensos"])
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    case_id = new_case_id()
    await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi", time=T0)
    await forge_consent(js, settings, case_id, ["kp2mi", "kemensos"])
    verifying = signed(js, settings, "kp2mi", verify=True)
    before = await _messages(js, settings)
    refused = pytest.raises(ConsentMissing, match="scope 'services' covering kemensos")
    with capture_logs() as logs, refused:
        await verifying.publish("referral.requested", REFERRAL, case_id=case_id, target="kemensos")
    assert await _messages(js, settings) == before
    ignored = [e for e in logs if e["event"] == "gate.unsigned_event_ignored"]
    assert [(e["event_type"], e["log_level"]) for e in ignored] == [("consent.recorded", "warning")]
    assert "not in the registry" in ignored[0]["reason"]
    # Without a verifier the gate counts what decodes, forged or not.
    await kp2mi.publish("referral.requested", REFERRAL, case_id=case_id, target="kemensos")


async def test_a_verifying_publisher_s_own_consent_moves_its_book_without_a_read(
    js: JetStreamContext, settings: Settings
) -> None:
    """What it stored, signed, is what its book folds: checked as the consumers will
    check it, so the book moves past it with no read of the case."""
    await _declare(js, settings, [])
    verifying = signed(js, settings, "kemlu", verify=True)  # its key in the registry
    case_id = new_case_id()
    await verifying.publish("case.opened", OPENED, case_id=case_id, target="kp2mi", time=T0)
    walks = 0
    between = verifying.gate._reads.between

    async def counted(*args: Any) -> Any:
        nonlocal walks
        walks += 1
        return await between(*args)

    verifying.gate._reads.between = counted  # type: ignore[method-assign]
    seq = await consent(verifying, case_id, ["kp2mi", "kemensos"])
    assert verifying.gate._books[case_id][1] == seq
    assert walks == 0


# -- withdrawal -----------------------------------------------------------------------------


async def test_withdrawal_stops_sharing_at_once_and_notifies_every_agency_that_received_data(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    agencies = ["kp2mi", "kemensos", "kemenpppa"]
    await _declare(js, settings, agencies)
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    case_id = new_case_id()
    await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi", time=T0)
    await consent(kemlu, case_id, agencies, at=T0)
    notes = {**REFERRAL, "notes": "sleeps badly-PRIVACY-TEST"}
    await kp2mi.publish("referral.requested", notes, case_id=case_id, target="kemensos")
    kemensos_keys = signed(js, settings, "kemensos").gate.keys
    assert kemensos_keys is not None
    assert await kemensos_keys.data_key(case_id) is not None  # the consent gave it the key

    withdrawn = await kemlu.publish(
        "consent.withdrawn",
        {"consent_id": "consent-1", "reason": "the mother asked"},
        case_id=case_id,
        target=BROADCAST,
    )
    # Told: every agency that received the case's data (addressed, or given the key).
    assert withdrawn.event.envelope.data["notified"] == ["kemenpppa", "kemensos", "kp2mi"]
    # At once: kp2mi's Publisher read the case's consents a moment ago, and still refuses.
    with pytest.raises(ConsentMissing, match="the consent that covered it was withdrawn"):
        await kp2mi.publish(
            "referral.requested",
            {**REFERRAL, "referral_id": "ref-2"},
            case_id=case_id,
            target="kemensos",
        )
    # The key store no longer gives kemensos (or anyone it covered) the case's data key.
    assert await kemensos_keys.data_key(case_id) is None
    assert await kp2mi.gate.keys.data_key(case_id) is None  # type: ignore[union-attr]
    assert await kemlu.gate.keys.data_key(case_id) is not None  # type: ignore[union-attr]

    applied = Applied()
    async with consumers(nats_server.url, settings, agencies, applied) as databases:
        await applied.wait_for(9)  # kp2mi 3 in, 1 sent; kemensos 3; kemenpppa 2
        notices = {a: [i for i in _worklist(databases, a) if i.handoff == NOTICE] for a in agencies}
        engine, _ = databases.for_consumer("worklist-kemensos")
        shown = await read_case_file(engine, "kemensos", case_id, kemensos_keys)
    databases.dispose()
    for agency in agencies:
        [notice] = notices[agency]
        assert (notice.requester, notice.request_id, notice.status) == (
            "kemlu",
            "~consent-1",
            "requested",
        )
    assert [(f.event_type, f.field, f.access) for f in shown] == [
        ("referral.requested", "notes", NOT_SHARED),
        ("consent.withdrawn", "reason", NOT_SHARED),
    ]
    assert all("PRIVACY-TEST" not in f.shown() for f in shown)


# -- sealing: who can read -----------------------------------------------------------------


async def test_an_agency_outside_the_consent_cannot_decrypt_and_sees_not_shared_with_you(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await _declare(js, settings, ["kemensos"])
    kemlu = signed(js, settings, "kemlu")
    case_id = new_case_id()
    # An intake addressed to kemensos (no consent needed to open a case), but the parent's
    # consent covers kp2mi only.
    opened = await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kemensos")
    await consent(kemlu, case_id, ["kp2mi"])
    stored = decode((await js.get_msg(settings.stream, opened.stream_seq)).data or b"")
    assert isinstance(stored.data.child, Sealed)
    for value in CHILD.values():
        assert value.encode() not in (await js.get_msg(settings.stream, opened.stream_seq)).data

    kp2mi_keys = signed(js, settings, "kp2mi").gate.keys
    kemensos_keys = signed(js, settings, "kemensos").gate.keys
    assert kp2mi_keys is not None
    assert kemensos_keys is not None
    kp2mi_key = await kp2mi_keys.data_key(case_id)
    assert kp2mi_key is not None
    assert open_field(stored.data, "child", {1: kp2mi_key}, case_id=case_id) == ChildIdentity(
        **CHILD
    )
    # kemensos holds no wrap, and kp2mi's wrap does not open with kemensos's private key.
    assert await kemensos_keys.data_key(case_id) is None
    wrapped = await js.get_msg(
        case_keys_stream(), subject=f"$KV.LINTAS_CASE_KEYS.{case_id}.1.kp2mi"
    )
    with pytest.raises(SealBroken):
        unwrap_key(
            json.loads(wrapped.data or b""),
            load_exchange_key(settings, "kemensos"),
            case_id=case_id,
            gen=1,
            agency="kp2mi",
            grant="seq:2",
            maker="kemlu",
        )

    applied = Applied()
    with capture_logs() as logs:
        async with consumers(nats_server.url, settings, ["kemensos"], applied) as databases:
            await applied.wait_for(2)
            engine, _ = databases.for_consumer("worklist-kemensos")
            [field] = await read_case_file(engine, "kemensos", case_id, kemensos_keys)
            [own] = await read_case_file(engine, "kemensos", case_id, None)  # no keys at all
        databases.dispose()
    assert (field.event_type, field.field, field.access, field.value) == (
        "case.opened",
        "child",
        NOT_SHARED,
        None,
    )
    assert field.ciphertext == stored.data.child.ct
    assert field.shown().startswith("[not shared with you] ")
    assert own.access == NOT_SHARED
    assert not [e for e in logs if e.get("log_level") == "error"]


# -- minimisation across the border --------------------------------------------------------


async def test_only_declared_fields_go_to_a_partner_abroad_at_both_ends(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await _declare(js, settings, ["my-jkm"])
    kemlu = signed(js, settings, "kemlu")
    case_id = new_case_id()
    await kemlu.publish("case.opened", {**OPENED, "child": None}, case_id=case_id, target="kp2mi")
    await consent(kemlu, case_id, ["my-jkm"], scopes=["services"])
    with_notes = {**REFERRAL, "notes": "the mother's phone-PRIVACY-TEST"}
    before = await _messages(js, settings)
    with pytest.raises(NotForAbroad, match="carries notes, not declared for cross-border"):
        await kemlu.publish("referral.requested", with_notes, case_id=case_id, target="my-jkm")
    assert await _messages(js, settings) == before
    # The partner never gets the case's data key either.
    jkm_keys = signed(js, settings, "my-jkm").gate.keys
    assert jkm_keys is not None
    assert await jkm_keys.data_key(case_id) is None

    # Bypassing the Publisher: sealed notes, signed by kemlu; the partner quarantines it.
    kemlu_keys = kemlu.gate.keys
    assert kemlu_keys is not None
    gen, key = await kemlu_keys.sealing_key(case_id)
    sealed = seal_data(build_data("referral.requested", with_notes), key, gen, case_id=case_id)
    bypassed = await raw_publish(
        js, settings, make_event(sealed, source="kemlu", target="my-jkm", case_id=case_id)
    )
    fine = await kemlu.publish("referral.requested", REFERRAL, case_id=case_id, target="my-jkm")

    applied = Applied()
    async with consumers(nats_server.url, settings, ["my-jkm"], applied) as databases:
        await applied.wait_for(2)  # the consent and the referral without notes
        items = _worklist(databases, "my-jkm")
    databases.dispose()
    reasons = quarantined([e async for e in list_entries(js, settings)], "agency-my-jkm")
    assert list(reasons) == [bypassed]
    assert "carries notes, not declared for cross-border sharing" in reasons[bypassed]
    assert "PRIVACY-TEST" not in reasons[bypassed]
    assert [(i.request_id, i.status) for i in items] == [("ref-1", "requested")]
    assert fine.stream_seq > bypassed


async def test_a_publisher_without_case_keys_shares_no_child_data(
    js: JetStreamContext, settings: Settings
) -> None:
    await declare_platform(js, settings, [])
    bare = Publisher(js, "kemlu", stream=settings.stream)
    before = await _messages(js, settings)
    with pytest.raises(NotAKeyHolder, match="carries personal data \\(child\\)"):
        await bare.publish("case.opened", OPENED, case_id=new_case_id(), target="kp2mi")
    with pytest.raises(NotAKeyHolder, match="gives kp2mi the case's data key"):
        await consent(bare, new_case_id(), ["kp2mi"])
    assert await _messages(js, settings) == before
