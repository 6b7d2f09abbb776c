"""The privacy gate's pure rules: what needs consent, the consent book, minimisation."""

from __future__ import annotations

import pytest

from lintas.contracts import BROADCAST, CaseErased, ConsentMissing, NotForAbroad, new_case_id
from lintas.contracts import gate as gate_rules
from lintas.contracts.gate import ConsentBook, fold_all, gate_refusal, refusal, requirement
from tests.support.events import at, ev
from tests.support.samples import SAMPLES, VILLAGE

CASE = new_case_id()


def _consent(consent_id: str, agencies: list[str], scopes: list[str], *, minutes: float = 1):
    return ev(
        "consent.recorded",
        {
            "consent_id": consent_id,
            "given_by": "parent",
            "child_assent": True,
            "scopes": scopes,
            "agencies": agencies,
        },
        source="kemlu",
        target=BROADCAST,
        case_id=CASE,
        time=at(minutes),
    )


def _event(event_type: str, target: str, data: dict | None = None, *, source: str = "kp2mi"):
    return ev(
        event_type,
        SAMPLES[event_type] if data is None else data,
        source=source,
        target=target,
        case_id=CASE,
        time=at(10),
    )


REFERRAL = {"referral_id": "r-1", "service": "shelter"}


@pytest.mark.parametrize(
    ("event_type", "target", "personal", "wanted"),
    [
        ("referral.requested", "kemensos", False, ("services", "kemensos")),
        ("tracing.requested", "kemlu", False, ("tracing", "kemlu")),
        ("referral.accepted", "my-jkm", False, ("disclosure_to_agencies", "my-jkm")),
        ("case.opened", "my-jkm", True, ("disclosure_to_agencies", "my-jkm")),
        ("document.issued", "kp2mi", True, ("disclosure_to_agencies", "kp2mi")),
        ("case.opened", "kp2mi", True, None),  # the intake: sealed for its opener alone
        ("referral.accepted", "kp2mi", False, None),
        ("referral.requested", BROADCAST, False, None),
        ("case.closed", BROADCAST, False, None),
    ],
)
def test_what_needs_consent(
    event_type: str, target: str, personal: bool, wanted: tuple[str, str] | None
) -> None:
    needed = requirement(event_type, target, personal)
    assert (None if needed is None else (needed.scope, needed.agency)) == wanted


def test_a_referral_is_refused_until_a_consent_covers_its_scope_and_target() -> None:
    referral = _event("referral.requested", "kemensos", REFERRAL)
    assert isinstance(gate_refusal(ConsentBook(), referral), ConsentMissing)
    wrong_agency = fold_all([(1, _consent("c-1", ["kemenpppa"], ["services"]))])
    wrong_scope = fold_all([(1, _consent("c-1", ["kemensos"], ["reporting"]))])
    right = fold_all([(1, _consent("c-1", ["kemensos"], ["services"]))])
    refused = gate_refusal(wrong_agency, referral)
    assert refused is not None
    assert "scope 'services' covering kemensos" in str(refused)
    assert gate_refusal(wrong_scope, referral) is not None
    assert gate_refusal(right, referral) is None


def test_an_override_covers_like_a_consent() -> None:
    override = ev(
        "consent.overridden",
        SAMPLES["consent.overridden"],  # services for kemensos
        source="kp2mi",
        target=BROADCAST,
        case_id=CASE,
        time=at(1),
    )
    book = fold_all([(1, override)])
    assert book.grants[0].override
    assert gate_refusal(book, _event("referral.requested", "kemensos", REFERRAL)) is None


def test_only_broadcast_consents_count() -> None:
    addressed = ev(
        "consent.recorded",
        {
            "consent_id": "c-1",
            "given_by": "parent",
            "child_assent": True,
            "scopes": ["services"],
            "agencies": ["kemensos"],
        },
        source="kemlu",
        target="kp2mi",
        case_id=CASE,
        time=at(1),
    )
    assert fold_all([(1, addressed)]) == ConsentBook()


def test_a_withdrawal_stops_what_comes_after_it_and_not_what_came_before() -> None:
    withdrawn = ev(
        "consent.withdrawn",
        {"consent_id": "c-1", "notified": ["kemensos"]},
        source="kemlu",
        target=BROADCAST,
        case_id=CASE,
        time=at(5),
    )
    book = fold_all([(1, _consent("c-1", ["kemensos"], ["services"])), (5, withdrawn)])
    referral = _event("referral.requested", "kemensos", REFERRAL)
    assert gate_refusal(book, referral, at=3) is None, "published before the withdrawal"
    later = gate_refusal(book, referral, at=6)
    assert isinstance(later, ConsentMissing)
    assert "was withdrawn" in str(later)
    assert isinstance(gate_refusal(book, referral), ConsentMissing), "now"
    assert book.readers(at=5) == {"kemensos"}, "just before the withdrawal"
    assert book.readers() == frozenset()


def test_a_consent_event_is_not_covered_by_itself() -> None:
    book = fold_all([(4, _consent("c-1", ["kemensos"], ["services"]))])
    referral = _event("referral.requested", "kemensos", REFERRAL)
    assert gate_refusal(book, referral, at=4) is not None
    assert gate_refusal(book, referral, at=5) is None


def test_readers_are_the_agencies_a_reading_scope_names_never_a_partner_abroad() -> None:
    book = fold_all(
        [
            (1, _consent("c-1", ["kp2mi", "my-jkm", VILLAGE], ["services"])),
            (2, _consent("c-2", ["kpai"], ["reporting"])),
        ]
    )
    assert book.readers() == {"kp2mi", VILLAGE}


def test_after_erasure_nothing_personal_passes_but_the_rest_does() -> None:
    erased = ev(
        "case.erased",
        SAMPLES["case.erased"],
        source="kp2mi",
        target=BROADCAST,
        case_id=CASE,
        time=at(8),
    )
    book = fold_all(
        [(1, _consent("c-1", ["kemensos"], ["services", "disclosure_to_agencies"])), (8, erased)]
    )
    assert book.erased()
    reopened = _event("case.reopened", "kemensos")
    assert isinstance(gate_refusal(book, reopened), CaseErased)
    assert gate_refusal(book, reopened, at=7) is None, "before the erasure"
    assert gate_refusal(book, _event("referral.requested", "kemensos", REFERRAL)) is None


def test_to_a_partner_abroad_only_declared_fields() -> None:
    book = fold_all([(1, _consent("c-1", ["my-jkm"], ["services"]))])
    plain = _event("referral.requested", "my-jkm", REFERRAL)
    assert gate_refusal(book, plain) is None
    with_notes = _event("referral.requested", "my-jkm", {**REFERRAL, "notes": "afraid"})
    refused = gate_refusal(book, with_notes)
    assert isinstance(refused, NotForAbroad)
    assert "carries notes" in str(refused)
    assert "afraid" not in str(refused)
    assert gate_rules.border_refusal("case.opened", 3, ["situation"], "kp2mi") is None


def test_a_refusal_names_types_and_agencies_never_values() -> None:
    refused = refusal(ConsentBook(), "document.issued", "dukcapil", "kp2mi", personal=True)
    assert refused is not None
    assert str(refused).startswith("document.issued from dukcapil to kp2mi carries personal data")


# -- the watchdog's notices and escalations to KPAI ------------------------------------------

WATCHDOG_ESCALATION = {
    "escalation_id": "overdue-1",
    "concern": "overdue_handoff",
    "overdue": {
        "handoff": "referral",
        "request_id": "ref-1",
        "requester": "kp2mi",
        "asked": "my-jkm",
        "due": "2024-03-08T08:00:00Z",
    },
}


@pytest.mark.parametrize(
    ("event_type", "target"),
    [
        ("referral.overdue", "kemensos"),
        ("referral.overdue", "my-jkm"),  # a partner abroad: only declared fields, all of them
        ("document.overdue", "dukcapil"),
        ("document.overdue", "my-jkm"),
        ("rehabilitation.handoff_overdue", "kemensos"),
    ],
)
def test_the_watchdogs_overdue_notices_need_no_consent(event_type: str, target: str) -> None:
    notice = _event(event_type, target, source="watchdog")
    assert requirement(event_type, target, gate_rules.carries_personal(notice)) is None
    assert gate_refusal(ConsentBook(), notice) is None
    # Nothing personal in them, so not even an erased case holds them back.
    erased = fold_all([(1, _event("case.erased", BROADCAST))])
    assert gate_refusal(erased, notice, at=5) is None


def test_an_escalation_to_kpai_is_never_held_back_for_want_of_a_consent() -> None:
    watchdogs = _event("oversight.escalated", "kpai", WATCHDOG_ESCALATION, source="watchdog")
    assert not gate_rules.carries_personal(watchdogs)
    assert gate_refusal(ConsentBook(), watchdogs) is None
    # An agency's, with a (sealed) reason: KPAI's mandate is its legal basis.
    agencys = _event("oversight.escalated", "kpai")
    assert gate_rules.carries_personal(agencys)
    assert gate_refusal(ConsentBook(), agencys) is None
    # But nothing personal after erasure, and to anyone else it is an ordinary disclosure.
    erased = fold_all([(1, _event("case.erased", BROADCAST))])
    assert isinstance(gate_refusal(erased, agencys, at=5), CaseErased)
    assert gate_refusal(erased, watchdogs, at=5) is None
    assert isinstance(
        gate_refusal(ConsentBook(), _event("oversight.escalated", "kemensos")), ConsentMissing
    )


def _assigned(owner: str, source: str):
    return _event(
        "case.assigned", BROADCAST, {"owner": owner, "officer_ref": "OF-1"}, source=source
    )


def test_an_assignment_counts_only_from_the_owner_or_the_coordinator() -> None:
    opened = _event("case.opened", "kp2mi", source="kemlu")
    owner_of = gate_rules.owner_of
    assert owner_of([opened]) == "kemlu"
    assert owner_of([opened, _assigned("dukcapil", "dukcapil")]) == "kemlu"
    assert owner_of([opened, _assigned("kemensos", "kemlu")]) == "kemensos"
    assert owner_of([opened, _assigned("kemensos", "kemlu"), _assigned("kemlu", "kemlu")]) == (
        "kemensos"
    )
    assert owner_of([opened, _assigned(gate_rules.COORDINATOR, gate_rules.COORDINATOR)]) == "kp2mi"
    assert owner_of([opened, _assigned("kemensos", gate_rules.COORDINATOR)]) == "kemensos"
    # Before any opening, only the coordinator names an owner.
    assert owner_of([_assigned("dukcapil", "dukcapil")]) is None
    assert owner_of([_assigned("kemensos", "kp2mi"), opened]) == "kemensos"


def test_the_erasure_is_the_first_by_whoever_owned_the_case_then() -> None:
    opened = _event("case.opened", "kp2mi", source="kemlu")
    erased_by = {
        a: _event("case.erased", BROADCAST, SAMPLES["case.erased"], source=a)
        for a in ("kemlu", "dukcapil")
    }
    erasure = gate_rules.owners_erasure
    assert erasure(enumerate([opened, erased_by["dukcapil"]])) is None
    assert erasure(enumerate([opened, erased_by["dukcapil"], erased_by["kemlu"]])) == 2
    handed = _assigned("dukcapil", "kemlu")
    assert erasure(enumerate([opened, erased_by["dukcapil"], handed, erased_by["dukcapil"]])) == 3
    assert erasure(enumerate([erased_by["dukcapil"]])) == 0  # no owner named yet


@pytest.mark.parametrize("event_type", sorted(gate_rules.TO_EVERYONE))
def test_what_every_gate_needs_goes_to_everyone_or_nowhere(event_type: str) -> None:
    assert gate_rules.misaddressed(event_type, BROADCAST) is None
    refused = gate_rules.misaddressed(event_type, "kemensos")
    assert refused is not None
    assert (refused.event_type, refused.field) == (event_type, "target")
    assert "kemensos" in str(refused)


def test_other_events_may_go_to_one_agency() -> None:
    assert gate_rules.misaddressed("referral.requested", "kemensos") is None
    assert gate_rules.misaddressed("case.opened", "kp2mi") is None


def test_a_wrap_needs_the_maker_s_own_grant_in_force_naming_the_recipient() -> None:
    """Custody's rule (lintas.infra.privacy.custody): who may be given a case's data key,
    by whom, on the strength of which grant."""
    withdrawn = ev(
        "consent.withdrawn",
        {"consent_id": "c-2", "notified": ["kemensos"]},
        source="kemlu",
        target=BROADCAST,
        case_id=CASE,
        time=at(5),
    )
    book = fold_all(
        [
            (1, _consent("c-1", ["kp2mi", "my-jkm"], ["services"])),
            (2, _consent("c-2", ["kemensos"], ["services"])),
            (3, _consent("c-3", ["kpai"], ["reporting"])),
            (5, withdrawn),
        ]
    )

    def refused(grant_seq: int, recipient: str, maker: str = "kemlu") -> str | None:
        return gate_rules.wrap_refusal(book, grant_seq=grant_seq, maker=maker, recipient=recipient)

    assert refused(1, "kp2mi") is None
    assert "does not name" in (refused(1, "dukcapil") or "")
    assert "given by kemlu" in (refused(1, "kp2mi", maker="dukcapil") or "")
    assert "never holds" in (refused(1, "my-jkm") or "")  # named, but abroad
    assert "never holds" in (refused(1, "kp2mi", maker="my-jkm") or "")
    assert "never holds" in (refused(1, "watchdog") or "")
    assert "withdrawn" in (refused(2, "kemensos") or "")
    assert "no scope" in (refused(3, "kpai") or "")
    assert "no admitted" in (refused(4, "kp2mi") or "")
    erased = fold_all([(9, _event("case.erased", BROADCAST, source="kemlu"))], book)
    assert "erased" in (
        gate_rules.wrap_refusal(erased, grant_seq=1, maker="kemlu", recipient="kp2mi") or ""
    )
