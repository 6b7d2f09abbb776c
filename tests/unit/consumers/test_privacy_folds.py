"""The record's and the worklist's privacy view: consents, erasure, notices (no broker)."""

from __future__ import annotations

from lintas.consumers import record as record_fold
from lintas.consumers import worklist
from lintas.consumers.record import CaseRecord
from lintas.contracts import Event
from tests.support.events import (
    CASE,
    CONSENT,
    ERASED,
    LATE_REFERRAL,
    OPENED,
    REFERRAL,
    WITHDRAWN,
)


def _fold(*events: Event) -> CaseRecord:
    record: CaseRecord | None = None
    for seq, event in enumerate(events, start=1):
        record = record_fold.apply(record, event, seq)
    assert record is not None
    return record


def test_the_record_keeps_consents_withdrawals_and_who_was_told() -> None:
    record = _fold(OPENED, CONSENT, REFERRAL, WITHDRAWN)
    [consent] = record.consents
    assert (consent.consent_id, consent.by, consent.given_by) == ("c-1", "kemlu", "parent")
    assert consent.agencies == ("kp2mi", "kemensos")
    assert (consent.withdrawn_seq, consent.notified) == (4, ("kemensos", "kp2mi"))
    assert "changed her mind" not in record.model_dump_json()


def test_the_record_names_events_its_receiver_must_refuse() -> None:
    record = _fold(OPENED, REFERRAL, CONSENT, WITHDRAWN, LATE_REFERRAL)
    refused = {e.seq: e.refused for e in record.timeline}
    assert refused[1] is None  # the intake
    assert refused[2] is not None
    assert "no consent.recorded covers it" in refused[2]
    assert refused[5] is not None
    assert "was withdrawn" in refused[5]
    assert refused[3] is None
    assert refused[4] is None


def test_the_record_keeps_where_personal_data_was_and_marks_it_erased() -> None:
    record = _fold(OPENED, CONSENT, WITHDRAWN, ERASED)
    assert [(p.seq, p.type, p.field, p.state) for p in record.personal] == [
        (1, "case.opened", "child", "erased"),
        (3, "consent.withdrawn", "reason", "erased"),
    ]
    assert record.erasure is not None
    assert (record.erasure.seq, record.erasure.by, record.erasure.officer_role) == (
        4,
        "kemlu",
        "data_protection_officer",
    )
    before = _fold(OPENED, CONSENT)
    assert [p.state for p in before.personal] == ["sealed"]


def test_a_withdrawal_puts_a_notice_on_the_worklist_of_each_agency_told() -> None:
    key = worklist.item_key("kemensos", WITHDRAWN)
    assert key == ("kemensos", CASE, "kemlu", "~c-1")
    item = worklist.apply("kemensos", None, WITHDRAWN)
    assert item is not None
    assert (item.handoff, item.status, item.requester) == (worklist.NOTICE, "requested", "kemlu")
    assert worklist.item_key("kemnaker", WITHDRAWN) is None
    assert worklist.apply("kemnaker", None, WITHDRAWN) is None
    assert worklist.apply("kemensos", item, WITHDRAWN) == item  # a redelivery changes nothing
