"""Attacks on the platform's write path, on a secured bus, each attacker connected as its own
identity and admission running as ``admission``: each is refused with its exact code (or by
the bus's permissions), and nothing enters ``LINTAS``. Honest traffic is admitted in full.

One hub for the module (its tests share one event loop): each test opens its own cases.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lintas.contracts import Event, dataschema_uri, encode, new_case_id, registry
from lintas.contracts.admission import MAX_BYTES, MAX_DEPTH
from lintas.contracts.subjects import intake_subject
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.topology import intake_stream
from tests.support.attack import Case, Platform, platform_running
from tests.support.samples import SAMPLES, VILLAGE

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]

CONSENT = {**SAMPLES["consent.recorded"], "agencies": ["kp2mi", "dukcapil"]}
REFERRAL = {"referral_id": "ref-1", "service": "shelter"}  # nothing personal in it
DOC_REQUEST = {"request_id": "doc-1", "kind": "akta_kelahiran"}
SAMPLES_V2_DOCUMENT = dict(SAMPLES["document.issued"])  # v2 and v3 differ only in sealing


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(Path(tmp_path_factory.mktemp("attacks"))) as platform:
        yield platform


async def owned_by_kp2mi(bus: Platform) -> Case:
    """kemlu opens, records the parent's consent, and hands the case to kp2mi."""
    case = await bus.opened("kemlu")
    await bus.say(case, "consent.recorded", "kemlu", data=CONSENT)
    await bus.say(case, "case.assigned", "kemlu", data={"owner": "kp2mi", "officer_ref": "XX-1"})
    return case


# -- honest traffic -----------------------------------------------------------------------------


async def test_an_honest_case_is_admitted_event_by_event(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    steps = [
        ("referral.requested", "kp2mi", "dukcapil", REFERRAL),
        ("referral.accepted", "dukcapil", "kp2mi", {"referral_id": "ref-1"}),
        ("referral.completed", "dukcapil", "kp2mi", SAMPLES["referral.completed"]),
        ("document.requested", "kp2mi", "dukcapil", DOC_REQUEST),
        ("document.issued", "dukcapil", "kp2mi", SAMPLES["document.issued"]),
        ("case.closed", "kp2mi", "all", SAMPLES["case.closed"]),
        ("case.reopened", "kp2mi", "all", SAMPLES["case.reopened"]),
    ]
    seqs = []
    for event_type, source, target, data in steps:
        answer = await bus.say(case, event_type, source, target=target, data=data)
        seqs.append(answer.seq)
    assert seqs == sorted(seqs)
    assert case.head is not None


# -- the chain and the id -----------------------------------------------------------------------


async def test_no_prevhash_on_a_cases_second_event_is_chain_moved(bus: Platform) -> None:
    case = await bus.opened()
    answer = await bus.refuse(case, "case.assessed", "kemlu", "chain_moved", prev=None)
    assert answer.head is not None
    assert answer.head.hash == case.head


async def test_a_forked_prevhash_is_chain_moved_with_the_head(bus: Platform) -> None:
    case = await bus.opened()
    first = case.head
    await bus.say(case, "case.assessed", "kemlu")
    answer = await bus.refuse(case, "case.assessed", "kemlu", "chain_moved", prev=first)
    assert answer.head is not None
    assert answer.head.hash == case.head


async def test_the_same_id_with_other_content_is_duplicate_id(bus: Platform) -> None:
    case = await bus.opened()
    said = await bus.say(case, "case.assessed", "kemlu")
    other = {**SAMPLES["case.assessed"], "summary": "other"}
    await bus.refuse(
        case, "case.assessed", "kemlu", "duplicate_id", event_id=said.event_id, data=other
    )


async def test_the_same_id_in_another_case_is_duplicate_id(bus: Platform) -> None:
    case = await bus.opened()
    said = await bus.say(case, "case.assessed", "kemlu")
    other = await bus.opened()
    await bus.refuse(other, "case.assessed", "kemlu", "duplicate_id", event_id=said.event_id)


# -- junk bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_json"),
        (b"{" + b'"x": "' + b"a" * MAX_BYTES + b'"}', "too_large"),
        (b'{"a": ' * (MAX_DEPTH + 2) + b"1" + b"}" * (MAX_DEPTH + 2), "too_deep"),
        (json.dumps({"specversion": "1.0", "type": "case.opened"}).encode(), "contract"),
    ],
    ids=["not_json", "not_an_object", "too_large", "too_deep", "contract"],
)
async def test_junk_bodies_are_refused(bus: Platform, body: bytes, code: str) -> None:
    before = await bus.log_size()
    answer = await bus.send_raw("kemlu", body, new_case_id())
    assert answer is not None
    assert (answer.admitted, answer.code) == (False, code), answer
    assert await bus.log_size() == before


# -- names and subjects --------------------------------------------------------------------------


async def test_another_agencys_name_in_the_envelope_is_subject_mismatch(bus: Platform) -> None:
    forged = bus.event(Case(), "case.opened", "kp2mi")  # signed by kp2mi's key even
    before = await bus.log_size()
    answer = await bus.send_raw("kemlu", encode(forged.envelope), forged.case_id)
    assert answer is not None
    assert answer.code == "subject_mismatch", answer
    assert await bus.log_size() == before


async def test_another_case_on_the_subject_is_subject_mismatch(bus: Platform) -> None:
    event = bus.event(Case(), "case.opened", "kemlu")
    answer = await bus.send_raw("kemlu", encode(event.envelope), new_case_id())
    assert answer is not None
    assert answer.code == "subject_mismatch", answer
    assert not await bus.in_log(event.id)


async def test_sending_on_another_agencys_intake_is_a_permissions_violation(
    bus: Platform,
) -> None:
    event = bus.event(Case(), "case.opened", "kemlu")
    subject = intake_subject("kp2mi", event.case_id)
    await bus.publish_intake("kemlu", subject, event)
    kemlu = await bus.client("kemlu")
    assert await kemlu.refused(subject)
    assert not await bus.in_log(event.id)


async def test_a_reply_inbox_of_another_agency_gets_no_answer_and_no_event(
    bus: Platform,
) -> None:
    spy = await bus.client("kp2mi")
    watched = await spy.conn.subscribe("_INBOX.kp2mi.>")
    case = Case()
    event = bus.event(case, "case.opened", "kemlu")
    assert (
        await bus.send_raw("kemlu", encode(event.envelope), case.id, reply="_INBOX.kp2mi.stolen")
        is None
    )
    # The case's next message is answered after it (one writer per case, in order).
    await bus.say(case, "case.opened", "kemlu")
    await spy.conn.flush()
    assert watched.pending_msgs == 0
    await watched.unsubscribe()
    assert not await bus.in_log(event.id)


async def test_no_reply_header_is_bad_reply_answered_nowhere(bus: Platform) -> None:
    kemlu = await bus.client("kemlu")
    case = Case()
    event = bus.event(case, "case.opened", "kemlu")
    await kemlu.js().publish(
        intake_subject("kemlu", case.id), encode(event.envelope), stream=intake_stream(bus.settings)
    )
    await bus.say(case, "case.opened", "kemlu")  # judged after it
    assert not await bus.in_log(event.id)


# -- time ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "code"),
    [
        (datetime(2999, 1, 1, tzinfo=UTC), "time_skew"),
        (datetime(2000, 6, 1, tzinfo=UTC), "time_skew"),
        # Before any key of the agency was in force: the signature check, which comes
        # first, already refuses it (the test keys are valid from 2000).
        (datetime(1999, 1, 1, tzinfo=UTC), "bad_signature"),
    ],
    ids=["2999", "2000", "1999"],
)
async def test_a_time_far_from_the_clock_is_refused(
    bus: Platform, when: datetime, code: str
) -> None:
    await bus.refused(bus.event(Case(), "case.opened", "kemlu", time=when), code)


# -- signatures ----------------------------------------------------------------------------------


async def test_an_unsigned_event_is_unsigned(bus: Platform) -> None:
    event = bus.event(Case(), "case.opened", "kemlu")
    unsigned = type(event)(event.envelope.model_copy(update={"signature": None}), event.data)
    await bus.refused(unsigned, "unsigned")


async def test_an_event_signed_with_another_agencys_key_is_bad_signature(bus: Platform) -> None:
    """kp2mi signs, then puts kemlu's name in the envelope: the key is not the source's."""
    signed = bus.event(Case(), "case.opened", "kp2mi")
    posing = signed.envelope.model_copy(update={"source": "kemlu"})
    await bus.refused(type(signed)(posing, signed.data), "bad_signature")


async def test_an_event_altered_after_signing_is_bad_signature(bus: Platform) -> None:
    event = bus.event(Case(), "case.opened", "kemlu")
    altered = event.envelope.model_copy(update={"target": "kp2mi"})
    await bus.refused(type(event)(altered, event.data), "bad_signature")


async def test_a_key_never_registered_is_unknown_key(bus: Platform) -> None:
    event = bus.event(Case(), "case.opened", "kemlu")
    keyid = f"kemlu-{'0' * 16}"
    stranger = event.envelope.model_copy(update={"keyid": keyid})
    await bus.refused(type(event)(stranger, event.data), "unknown_key")


# -- the authority policy ------------------------------------------------------------------------


async def test_a_non_owner_assigns(bus: Platform) -> None:
    case = await bus.opened("kemlu")
    await bus.refuse(
        case,
        "case.assigned",
        "dukcapil",
        "not_owner",
        data={"owner": "dukcapil", "officer_ref": "XX-1"},
    )


async def test_a_non_owner_closes(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, "case.closed", "kemlu", "not_owner")


async def test_a_non_owner_reopens(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "case.closed", "kp2mi")
    await bus.refuse(case, "case.reopened", "kemlu", "not_owner")


async def test_a_non_owner_erases(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, "case.erased", "dukcapil", "not_owner")


async def test_a_third_party_withdraws_a_consent(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, "consent.withdrawn", "dukcapil", "not_recorder")


async def test_an_unrelated_agency_records_a_consent(bus: Platform) -> None:
    case = await bus.opened("kemlu")
    await bus.refuse(case, "consent.recorded", "dukcapil", "not_party", data=CONSENT)


async def test_an_override_by_an_agency_without_the_mandate(bus: Platform) -> None:
    case = await bus.opened("dukcapil")  # its own case: a party, but not entitled
    await bus.refuse(case, "consent.overridden", "dukcapil", "not_entitled")


async def test_answering_a_referral_not_asked(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "referral.requested", "kp2mi", target="dukcapil", data=REFERRAL)
    await bus.refuse(
        case,
        "referral.accepted",
        VILLAGE,
        "not_asked",
        target="kp2mi",
        data={"referral_id": "ref-1"},
    )


async def test_answering_a_referral_never_made(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(
        case,
        "referral.accepted",
        "dukcapil",
        "not_asked",
        target="kp2mi",
        data={"referral_id": "ref-1"},
    )


async def test_revoking_someone_elses_request(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "referral.requested", "kp2mi", target="dukcapil", data=REFERRAL)
    await bus.refuse(
        case,
        "referral.revoked",
        "kemlu",
        "not_requester",
        target="dukcapil",
        data=SAMPLES["referral.revoked"],
    )


async def test_issuing_a_document_kind_not_ones_own(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "document.requested", "kemlu", target="kp2mi", data=DOC_REQUEST)
    await bus.refuse(
        case,
        "document.issued",
        "kp2mi",
        "kind_not_issued",
        target="kemlu",
        data=SAMPLES["document.issued"],
    )


@pytest.mark.parametrize(
    "notice", ["referral.overdue", "document.overdue", "rehabilitation.handoff_overdue"]
)
async def test_an_overdue_notice_not_from_the_watchdog(bus: Platform, notice: str) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, notice, "kp2mi", "watchdog_only", target="dukcapil")


async def test_an_escalation_not_from_the_watchdog_or_the_owner(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, "oversight.escalated", "dukcapil", "watchdog_only", target="kpai")


async def test_a_review_not_from_kpai(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.refuse(case, "oversight.reviewed", "kemlu", "kpai_only", target="kp2mi")


async def test_anything_for_a_case_never_opened(bus: Platform) -> None:
    await bus.refused(bus.event(Case(), "case.assessed", "kemlu"), "case_not_opened")


async def test_a_second_opening(bus: Platform) -> None:
    case = await bus.opened("kemlu")
    await bus.refuse(case, "case.opened", "kp2mi", "case_already_opened")


async def test_nothing_but_winding_down_after_an_erasure(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "case.erased", "kp2mi")
    await bus.refuse(case, "case.assessed", "kp2mi", "case_erased")


# -- the consent gate ----------------------------------------------------------------------------


async def test_personal_data_to_an_agency_without_consent_is_gate(bus: Platform) -> None:
    case = await bus.opened("kemlu")  # no consent recorded
    await bus.refuse(
        case,
        "referral.requested",
        "kemlu",
        "gate",
        target="dukcapil",
        data=SAMPLES["referral.requested"],
    )


# -- still open on this branch -------------------------------------------------------------------


async def test_a_personal_field_in_clear_in_an_older_version_is_not_sealed(
    bus: Platform,
) -> None:
    """document.issued v2 carried the document's number in clear; the newest version seals
    it. Sent as v2, valid and signed, it would put the number on the log for good."""
    case = await bus.opened("kp2mi")
    newest = bus.event(case, "document.issued", "dukcapil", target="kp2mi")
    old = dict(SAMPLES_V2_DOCUMENT, number="3201-CLEAR-NUMBER")
    envelope = newest.envelope.model_copy(
        update={
            "dataversion": 2,
            "dataschema": dataschema_uri("document.issued", 2),
            "data": old,
            "signature": None,
            "keyid": None,
        }
    )
    signed = Signer.load(bus.settings, "dukcapil").sign(envelope)
    answer = await bus.refused(Event(signed, newest.data), "not_sealed")
    assert answer.field == "data.number"
    assert not await bus.in_log(newest.id)


def _sent_as(
    bus: Platform,
    case: Case,
    event_type: str,
    source: str,
    version: int,
    data: dict[str, Any],
    target: str = "dukcapil",
) -> Event:
    """``data`` sent as ``version`` of ``event_type``, valid there and signed by ``source``."""
    newest = bus.event(case, event_type, source, target=target)
    envelope = newest.envelope.model_copy(
        update={
            "dataversion": version,
            "dataschema": dataschema_uri(event_type, version),
            "data": data,
            "signature": None,
            "keyid": None,
        }
    )
    return Event(Signer.load(bus.settings, source).sign(envelope), newest.data)


CHILD_IN_CLEAR = "Siti Aminah binti Ahmad, lahir 2015-04-01"
FAKE_SEALED = {"alg": "A256GCM", "gen": 1, "iv": "A" * 16, "ct": "B" * 40}

# Each field a child's data could once travel in, in clear: (type, version that carried
# free text there, its data with the name and birth date in that field, the field).
FORMER_FREE_TEXT = [
    (
        "document.issued",
        3,
        {
            "kind": "akta_kelahiran",
            "number": FAKE_SEALED,
            "issuing_office": CHILD_IN_CLEAR,
            "issued_on": "2025-03-01",
        },
        "issuing_office",
    ),
    (
        "case.opened",
        3,
        {
            "situation": "neglected",
            "location": {"country": "MY", "name": CHILD_IN_CLEAR},
            "jurisdiction": {"country": "MY"},
            "risk_level": "low",
        },
        "location.name",
    ),
    (
        "case.opened",
        3,
        {
            "situation": "neglected",
            "location": {"country": "MY"},
            "jurisdiction": {"country": "MY", "responsible_office": CHILD_IN_CLEAR},
            "risk_level": "low",
        },
        "jurisdiction.responsible_office",
    ),
    ("case.assigned", 1, {"owner": "kp2mi", "officer_ref": "Siti Aminah 2015"}, "officer_ref"),
    (
        "consent.overridden",
        2,
        {
            "officer_role": CHILD_IN_CLEAR,
            "legal_basis": "UU 35/2014 Pasal 59",
            "reason": FAKE_SEALED,
            "scopes": ["services"],
            "agencies": ["kemensos"],
        },
        "legal_basis",  # the first free-text field in the schema's order
    ),
    (
        "case.erased",
        1,
        {
            "officer_role": "data_protection_officer",
            "requested_by": "parent",
            "legal_basis": "UU 27/2022 Pasal 8",
            "reason": CHILD_IN_CLEAR,
        },
        "legal_basis",
    ),
    (
        "rehabilitation.handoff_requested",
        2,
        {"handoff_id": "rehab-1", "placement": CHILD_IN_CLEAR},
        "placement",
    ),
    (
        "repatriation.scheduled",
        1,
        {
            "repatriation_id": "rep-1",
            "port_of_entry": CHILD_IN_CLEAR[:80],
            "departure_on": "2025-03-05",
        },
        "port_of_entry",
    ),
    (
        "repatriation.completed",
        1,
        {
            "repatriation_id": "rep-1",
            "port_of_entry": CHILD_IN_CLEAR[:80],
            "arrived_at": "2025-03-05T14:00:00+08:00",
        },
        "port_of_entry",
    ),
]


@pytest.mark.parametrize(
    ("event_type", "version", "data", "field"),
    FORMER_FREE_TEXT,
    ids=[f"{t}.v{v}.{f}" for t, v, _, f in FORMER_FREE_TEXT],
)
async def test_a_childs_name_in_a_former_free_text_field_is_refused_in_every_version(
    bus: Platform, event_type: str, version: int, data: dict[str, Any], field: str
) -> None:
    """Sent as the version that allowed free text there, valid and signed: not_sealed (an
    agency cannot skip the codes by sending the older version). Sent as the newest: the
    field is a code, and a name is no code."""
    case = await bus.opened("kemlu")
    old = _sent_as(bus, case, event_type, "kp2mi", version, data)
    answer = await bus.refused(old, "not_sealed")
    assert answer.field == f"data.{field}"
    assert not await bus.in_log(old.id)
    newest = registry.latest(event_type).VERSION
    current = {k: v for k, v in data.items() if k != "issuing_office_code"}
    current = _current_shape(event_type, current)
    sent = _sent_as(bus, case, event_type, "kp2mi", newest, current)
    answer = await bus.refused(sent, "contract")
    assert CHILD_IN_CLEAR[:12] not in (answer.reason or "")
    assert not await bus.in_log(sent.id)


def _current_shape(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The same data as the newest version's fields, the child's name still in it."""
    if event_type == "case.opened":
        location = data["location"]
        office = data["jurisdiction"].get("responsible_office")
        if "name" in location:  # v4 has no place name: put it where a code goes
            return {**data, "location": {"country": "MY", "regency": location["name"]}}
        return {**data, "jurisdiction": {"country": "MY", "responsible_office": office}}
    if event_type in ("consent.overridden", "case.erased"):
        return {**data, "legal_basis": [CHILD_IN_CLEAR]}
    return data


async def test_an_honest_old_version_without_free_text_is_still_admitted(bus: Platform) -> None:
    """Only what an older version carries in clear is refused: a case.opened v3 that names
    no place and no office in words holds nothing v4 would not."""
    case = Case()
    data = {
        "situation": "neglected",
        "location": {"country": "MY", "subdivision": "MY-12"},
        "jurisdiction": {"country": "MY"},
        "risk_level": "low",
    }
    answer = await bus.send(_sent_as(bus, case, "case.opened", "kemlu", 3, data))
    assert answer.admitted, answer


async def test_an_agency_cannot_write_the_log_past_admission(bus: Platform) -> None:
    kemlu = await bus.client("kemlu")
    event = bus.event(Case(), "case.opened", "kemlu")
    await kemlu.conn.publish(event.envelope.nats_subject, encode(event.envelope))
    assert await kemlu.refused(event.envelope.nats_subject, within_s=2.0)
    assert not await bus.in_log(event.id)
