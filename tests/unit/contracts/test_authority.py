"""The authority policy (contracts/authority.py): one test per rule, the hostile event's exact
refusal code and None for the honest one."""

from __future__ import annotations

from datetime import timedelta
from itertools import count
from typing import Any

import pytest

from lintas.contracts import AuthorityRefused, Event, all_models
from lintas.contracts import authority as policy
from lintas.contracts.authority import CaseState, judge, judge_alone
from tests.support.events import CASE, at, ev
from tests.support.samples import SAMPLES, VILLAGE

_minutes = count()


def e(event_type: str, source: str, target: str = "all", **data: Any) -> Event:
    return ev(
        event_type,
        {**SAMPLES[event_type], **data},
        source=source,
        target=target,
        case_id=CASE,
        time=at(next(_minutes)),
    )


def after(*events: Event, state: CaseState | None = None) -> CaseState:
    """The state once every one of ``events`` is admitted (each must be)."""
    state = state or policy.start()
    for event in events:
        assert judge(state, event) is None, (event.type, event.source, judge(state, event))
        state = policy.apply(state, event)
    return state


def code(state: CaseState, event: Event) -> str | None:
    refused = judge(state, event)
    return None if refused is None else refused.code


OPENED = e("case.opened", "kemlu", "kp2mi")
ASSIGNED = e("case.assigned", "kp2mi", owner="kp2mi")
OPEN = after(OPENED, ASSIGNED)  # kemlu opened it, kp2mi (the coordinator) owns it
REFERRAL = e("referral.requested", "kp2mi", "kemensos", referral_id="ref-1")
REFERRED = after(REFERRAL, state=OPEN)
ERASED = after(e("case.erased", "kp2mi"), state=OPEN)


# -- the case's state ---------------------------------------------------------------------


def test_nothing_is_said_about_a_case_never_opened() -> None:
    assert code(policy.start(), REFERRAL) == "case_not_opened"
    assert code(policy.start(), OPENED) is None


def test_a_case_is_opened_once() -> None:
    assert code(OPEN, e("case.opened", "dukcapil", "kp2mi")) == "case_already_opened"


def test_the_watchdog_opens_no_case() -> None:
    assert code(policy.start(), e("case.opened", "watchdog", "kp2mi")) == "not_agency"


def test_the_watchdog_says_nothing_but_its_notices() -> None:
    assert code(OPEN, e("case.assessed", "watchdog", "kp2mi")) == "not_agency"


def test_after_erasure_nothing_new_is_opened() -> None:
    assert code(ERASED, e("referral.requested", "kp2mi", "kemensos")) == "case_erased"
    assert code(ERASED, e("case.closed", "kp2mi")) is None


def test_after_erasure_no_consent_is_recorded() -> None:
    assert code(ERASED, e("consent.recorded", "kp2mi")) == "case_erased"


def test_a_case_is_erased_once() -> None:
    assert code(ERASED, e("case.erased", "kp2mi")) == "case_erased"


def test_a_closed_case_is_not_closed_again() -> None:
    closed = after(e("case.closed", "kp2mi"), state=OPEN)
    assert code(closed, e("case.closed", "kp2mi")) == "case_closed"


def test_only_a_closed_case_is_reopened() -> None:
    assert code(OPEN, e("case.reopened", "kp2mi")) == "case_not_closed"
    closed = after(e("case.closed", "kp2mi"), state=OPEN)
    assert code(closed, e("case.reopened", "kp2mi")) is None


# -- ownership ----------------------------------------------------------------------------


def test_only_the_owner_or_the_coordinator_assigns() -> None:
    opened = after(OPENED)
    assert code(opened, e("case.assigned", "dukcapil", owner="dukcapil")) == "not_owner"
    assert code(opened, e("case.assigned", "kemlu", owner="kemensos")) is None  # the opener
    assert code(opened, ASSIGNED) is None  # the coordinator


def test_the_opener_no_longer_assigns_once_the_case_is_assigned() -> None:
    assert code(OPEN, e("case.assigned", "kemlu", owner="kemlu")) == "not_owner"


def test_only_the_owner_closes() -> None:
    assert code(OPEN, e("case.closed", "kemensos")) == "not_owner"
    assert code(OPEN, e("case.closed", "kp2mi")) is None


def test_only_the_owner_reopens() -> None:
    closed = after(e("case.closed", "kp2mi"), state=OPEN)
    assert code(closed, e("case.reopened", "kemlu")) == "not_owner"


def test_only_the_owner_erases() -> None:
    assert code(OPEN, e("case.erased", "dukcapil")) == "not_owner"
    assert code(OPEN, e("case.erased", "kp2mi")) is None


# -- consents -----------------------------------------------------------------------------


def test_an_outsider_records_no_consent() -> None:
    assert code(OPEN, e("consent.recorded", "dukcapil")) == "not_party"
    assert code(OPEN, e("consent.recorded", "kemlu")) is None  # the opener (the intake)
    assert code(OPEN, e("consent.recorded", "kp2mi")) is None  # the owner


def test_an_agency_holding_an_open_handoff_records_consent() -> None:
    asked = after(e("repatriation.requested", "kp2mi", "kemensos"), state=OPEN)
    assert code(asked, e("consent.recorded", "kemensos", consent_id="c-abroad")) is None


def test_a_handoff_that_ended_makes_no_party() -> None:
    done = after(e("referral.completed", "kemensos", "kp2mi", referral_id="ref-1"), state=REFERRED)
    assert code(done, e("consent.recorded", "kemensos")) == "not_party"


def test_only_the_recorder_or_the_owner_withdraws_a_consent() -> None:
    recorded = after(e("consent.recorded", "kemlu", consent_id="consent-1"), state=OPEN)
    third = e("consent.withdrawn", "kemensos", consent_id="consent-1")
    assert code(recorded, third) == "not_recorder"
    assert code(recorded, e("consent.withdrawn", "kemlu", consent_id="consent-1")) is None
    assert code(recorded, e("consent.withdrawn", "kp2mi", consent_id="consent-1")) is None


def test_a_consent_never_recorded_is_withdrawn_by_the_owner_only() -> None:
    assert code(OPEN, e("consent.withdrawn", "kemlu", consent_id="nope")) == "not_recorder"


def test_only_an_agency_with_a_protection_mandate_overrides_consent() -> None:
    asked = after(e("document.requested", "kp2mi", "dukcapil"), state=OPEN)
    assert code(asked, e("consent.overridden", "dukcapil")) == "not_entitled"
    assert code(asked, e("consent.overridden", "kp2mi")) is None


def test_an_override_names_its_legal_basis() -> None:
    honest = e("consent.overridden", "kp2mi")
    assert code(OPEN, honest) is None
    # As sent: the newest version's empty list, or an older version's blank text.
    for blank in ([], "  "):
        sent = {**honest.envelope.data, "legal_basis": blank}
        envelope = honest.envelope.model_copy(update={"data": sent})
        assert code(OPEN, Event(envelope, honest.data)) == "no_legal_basis"


def test_an_outsider_overrides_nothing() -> None:
    assert code(OPEN, e("consent.overridden", "kemensos")) == "not_party"


# -- hand-offs ----------------------------------------------------------------------------


def test_an_outsider_asks_nothing_for_the_case() -> None:
    assert code(OPEN, e("referral.requested", "kemnaker", "kemensos")) == "not_party"
    assert code(OPEN, REFERRAL) is None


def test_only_the_agency_asked_answers() -> None:
    assert code(REFERRED, e("referral.accepted", "dukcapil", "kp2mi")) == "not_asked"
    assert code(REFERRED, e("referral.accepted", "kemensos", "kp2mi")) is None


def test_an_answer_to_nothing_asked_is_refused() -> None:
    assert code(OPEN, e("referral.completed", "kemensos", "kp2mi")) == "not_asked"


def test_an_answer_answers_only_its_own_family() -> None:
    answer = e("repatriation.scheduled", "kemensos", "kp2mi", repatriation_id="ref-1")
    assert code(REFERRED, answer) == "not_asked"


def test_only_the_requester_revokes() -> None:
    assert code(REFERRED, e("referral.revoked", "kemlu", "kemensos")) == "not_requester"
    assert code(REFERRED, e("referral.revoked", "kp2mi", "kemensos")) is None


def dated(event: Event, minutes_before: float, than: Event) -> Event:
    """``event`` re-dated ``minutes_before`` the time of ``than``."""
    envelope = event.envelope.model_copy(
        update={"time": than.time - timedelta(minutes=minutes_before)}
    )
    return Event(envelope, event.data)


def test_no_step_of_a_handoff_is_dated_before_its_request() -> None:
    for step in (
        e("referral.accepted", "kemensos", "kp2mi"),
        e("referral.completed", "kemensos", "kp2mi"),
        e("referral.revoked", "kp2mi", "kemensos"),
        e("referral.overdue", "watchdog", "kemensos"),
    ):
        backdated = dated(step, 20 * 24 * 60, than=REFERRAL)
        assert code(REFERRED, backdated) == "before_request", step.type
        # Two clocks may disagree by the allowance, no more.
        skewed = policy.CLOCK_SKEW.total_seconds() / 60
        assert code(REFERRED, dated(step, skewed, than=REFERRAL)) is None, step.type
        assert code(REFERRED, dated(step, skewed + 1, than=REFERRAL)) == "before_request"


def test_a_reader_that_knows_no_request_time_judges_no_time() -> None:
    unknown = CaseState(
        opened_by="kemlu",
        owner="kp2mi",
        handoffs=(policy.Pending("kp2mi", "ref-1", "referral", "kemensos"),),
    )
    backdated = dated(e("referral.accepted", "kemensos", "kp2mi"), 60 * 24, than=REFERRAL)
    assert code(unknown, backdated) is None


def test_documents_come_only_from_the_agency_asked() -> None:
    asked = after(e("document.requested", "kp2mi", "dukcapil"), state=OPEN)
    assert code(asked, e("document.issued", "kemlu", "kp2mi")) == "not_asked"
    assert code(asked, e("document.issued", "dukcapil", "kp2mi")) is None


def test_documents_only_of_kinds_the_agency_issues() -> None:
    asked = after(e("document.requested", "kp2mi", "kemlu"), state=OPEN)  # an akta, of kemlu
    assert code(asked, e("document.issued", "kemlu", "kp2mi")) == "kind_not_issued"
    assert code(asked, e("document.rejected", "kemlu", "kp2mi", kind="kk")) == "kind_not_issued"


def test_a_document_issued_unasked_only_by_its_issuer() -> None:
    unasked = {"request_id": None, "kind": "kia"}
    assert code(OPEN, e("document.issued", "dukcapil", "kp2mi", **unasked)) is None
    assert code(OPEN, e("document.issued", "kemensos", "kp2mi", **unasked)) == "kind_not_issued"


def test_rehabilitation_steps_only_by_their_parties() -> None:
    asked = after(e("rehabilitation.handoff_requested", "kp2mi", "kemensos"), state=OPEN)
    assert code(asked, e("rehabilitation.handoff_accepted", VILLAGE, "kp2mi")) == "not_asked"
    assert code(asked, e("rehabilitation.progress_reported", "kemensos", "kp2mi")) is None
    handed = e("rehabilitation.reintegration_handoff", "kemensos", VILLAGE)
    assert code(asked, handed) is None
    assert code(OPEN, handed) == "not_party"


def test_repatriation_steps_only_by_their_parties() -> None:
    asked = after(e("repatriation.requested", "kp2mi", "kemlu"), state=OPEN)
    assert code(asked, e("repatriation.completed", "kemensos", "kp2mi")) == "not_asked"
    assert code(asked, e("repatriation.completed", "kemlu", "kp2mi")) is None


# -- the watchdog and KPAI ----------------------------------------------------------------


def test_overdue_notices_only_from_the_watchdog() -> None:
    assert code(REFERRED, e("referral.overdue", "kp2mi", "kemensos")) == "watchdog_only"
    assert code(REFERRED, e("referral.overdue", "watchdog", "kemensos")) is None


def test_an_overdue_notice_names_a_handoff_asked_of_its_target() -> None:
    assert code(REFERRED, e("referral.overdue", "watchdog", "dukcapil")) == "no_such_request"
    assert code(OPEN, e("document.overdue", "watchdog", "dukcapil")) == "no_such_request"


def test_no_overdue_notice_for_a_handoff_answered() -> None:
    accepted = after(e("referral.accepted", "kemensos", "kp2mi"), state=REFERRED)
    assert code(accepted, e("referral.overdue", "watchdog", "kemensos")) is None  # not done
    for answer in (
        e("referral.completed", "kemensos", "kp2mi"),
        e("referral.rejected", "kemensos", "kp2mi"),
        e("referral.revoked", "kp2mi", "kemensos"),
    ):
        answered = after(answer, state=REFERRED)
        notice = e("referral.overdue", "watchdog", "kemensos")
        assert code(answered, notice) == "no_such_request", answer.type


def test_escalations_only_from_the_watchdog_or_the_owner() -> None:
    assert code(OPEN, e("oversight.escalated", "kemensos", "kpai")) == "watchdog_only"
    assert code(OPEN, e("oversight.escalated", "kp2mi", "kpai")) is None
    assert code(OPEN, e("oversight.escalated", "watchdog", "kpai")) is None


def test_escalations_go_to_kpai_only() -> None:
    # The target of an escalation holds a hand-off of the case: a party, which may record
    # consents. The watchdog escalates any case, so it would make anyone a party.
    assert code(OPEN, e("oversight.escalated", "watchdog", "dukcapil")) == "not_to_kpai"
    assert code(OPEN, e("oversight.escalated", "kp2mi", "kemensos")) == "not_to_kpai"
    assert judge_alone(e("oversight.escalated", "watchdog", "dukcapil")) is not None


def test_reviews_only_from_kpai_and_of_an_escalation() -> None:
    escalated = after(e("oversight.escalated", "kp2mi", "kpai"), state=OPEN)
    assert code(escalated, e("oversight.reviewed", "kemensos", "kp2mi")) == "kpai_only"
    assert code(escalated, e("oversight.reviewed", "kpai", "kp2mi")) is None
    assert code(OPEN, e("oversight.reviewed", "kpai", "kp2mi")) == "not_asked"


# -- the functions around the rules -------------------------------------------------------


def test_refusals_names_the_refused_and_folds_only_the_admitted() -> None:
    hostile = e("case.assigned", "dukcapil", owner="dukcapil")
    erasure = e("case.erased", "dukcapil")  # dukcapil never became the owner
    refused = list(policy.refusals([OPENED, hostile, erasure, ASSIGNED, REFERRAL]))
    assert [(ev.type, r.code, r.field) for ev, r in refused] == [
        ("case.assigned", "not_owner", "source"),
        ("case.erased", "not_owner", "source"),
    ]


def test_check_raises_the_refusal() -> None:
    with pytest.raises(AuthorityRefused) as caught:
        policy.check(policy.start(), REFERRAL)
    assert caught.value.code == "case_not_opened"
    assert caught.value.refusal.field == "subject"


def test_judge_alone_refuses_only_what_no_state_could_admit() -> None:
    assert judge_alone(REFERRAL) is None  # the case may well be open
    refused = judge_alone(e("referral.overdue", "kp2mi", "kemensos"))
    assert refused is not None
    assert refused.code == "watchdog_only"
    refused = judge_alone(e("oversight.reviewed", "kemensos", "kp2mi"))
    assert refused is not None
    assert refused.code == "kpai_only"
    assert judge_alone(e("oversight.escalated", "kemensos", "kpai")) is None  # may own it


def test_every_type_has_a_rule_and_every_code_a_meaning() -> None:
    assert {m.TYPE for m in all_models()} == set(policy.RULES)
    used = {c for r in policy.RULES.values() for c in (r.code, *r.extra)}
    assert used <= set(policy.CODES)
    assert all(name in policy.PRINCIPALS for r in policy.RULES.values() for name in r.who)


def test_the_table_lists_every_type_and_code() -> None:
    table = policy.policy_table()
    assert all(f"`{t}`" in table for t in policy.RULES)
    assert all(f"`{c}`" in table for c in policy.CODES)


def test_refusal_reasons_carry_no_personal_data() -> None:
    state = after(OPENED)
    for event in (e("case.erased", "dukcapil"), e("consent.recorded", "kemensos")):
        refused = judge(state, event)
        assert refused is not None
        assert "Dewi" not in refused.reason
