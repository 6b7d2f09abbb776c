"""The subject scheme ``lintas.<source>.<target>.<family>.<action>.<case_id>``."""

from __future__ import annotations

import pytest

from lintas.contracts import (
    NATIONAL_AGENCIES,
    ContractError,
    Subject,
    SubjectError,
    agency_name,
    case_filter,
    inbound_filters,
    is_agency_id,
    new_case_id,
    outbound_filter,
    parse_subject,
    subject_for,
)
from lintas.contracts.agencies import is_partner_abroad, is_village

CASE = new_case_id()


@pytest.mark.parametrize(
    ("source", "target", "event_type"),
    [
        ("kp2mi", "dukcapil", "referral.requested"),
        ("kemlu", "kp2mi", "case.opened"),
        ("kp2mi", "all", "case.closed"),
        ("desa-3525012001", "kp2mi", "case.opened"),
        ("kemensos", "desa-3525012001", "rehabilitation.reintegration_handoff"),
        ("my-jkm", "kemlu", "referral.completed"),
    ],
)
def test_subject_round_trip(source: str, target: str, event_type: str) -> None:
    subject = subject_for(source, target, event_type, CASE)
    family, action = event_type.split(".")
    assert subject == f"lintas.{source}.{target}.{family}.{action}.{CASE}"
    parsed = parse_subject(subject)
    assert parsed == Subject(source, target, event_type, CASE)
    assert str(parsed) == subject


def test_design_example_subject() -> None:
    assert (
        subject_for("kp2mi", "dukcapil", "referral.requested", CASE)
        == f"lintas.kp2mi.dukcapil.referral.requested.{CASE}"
    )


def test_subject_error_is_a_contract_error() -> None:
    assert issubclass(SubjectError, ContractError)
    assert issubclass(SubjectError, ValueError)


@pytest.mark.parametrize(
    ("source", "target", "event_type", "case_id", "message"),
    [
        ("kp2mi", "kp2mi", "case.closed", CASE, "itself"),
        ("desa-3525012001", "desa-3525012001", "case.opened", CASE, "itself"),
        ("all", "kp2mi", "case.closed", CASE, "source"),
        ("bnp2tki", "kp2mi", "case.closed", CASE, "source"),
        ("kp2mi", "bnp2tki", "case.closed", CASE, "target"),
        ("KP2MI", "dukcapil", "case.closed", CASE, "source"),
        ("kp2mi", "dukcapil", "case.closed", "C123", "case id"),
        ("kp2mi", "dukcapil", "case.closed", CASE.lower(), "case id"),
        ("kp2mi", "dukcapil", "case.closed", "", "case id"),
        ("kp2mi", "dukcapil", "caseclosed", CASE, "event type"),
        ("kp2mi", "dukcapil", "case.", CASE, "event type"),
        ("kp2mi", "dukcapil", ".closed", CASE, "event type"),
        ("kp2mi", "dukcapil", "case.closed.now", CASE, "event type"),
    ],
)
def test_subject_for_rejects(
    source: str, target: str, event_type: str, case_id: str, message: str
) -> None:
    with pytest.raises(SubjectError, match=message):
        subject_for(source, target, event_type, case_id)


@pytest.mark.parametrize(
    "subject",
    [
        f"lintas.kp2mi.kp2mi.case.closed.{CASE}",  # self-addressed
        f"lintas.all.kp2mi.case.closed.{CASE}",  # 'all' is never a source
        f"lintas.nobody.kp2mi.case.closed.{CASE}",  # unknown agency
        f"lintas.kp2mi.nobody.case.closed.{CASE}",
        "lintas.kp2mi.dukcapil.case.closed.C123",  # bad case id
        f"lintas.kp2mi.dukcapil.case.{CASE}",  # 5 tokens
        f"lintas.kp2mi.dukcapil.case.closed.now.{CASE}",  # 7 tokens
        f"lintas.kp2mi.dukcapil.case..{CASE}",  # empty action
        f"lintaz.kp2mi.dukcapil.case.closed.{CASE}",  # wrong root
        f"LINTAS.kp2mi.dukcapil.case.closed.{CASE}",
        f"other.kp2mi.dukcapil.case.closed.{CASE}",
        "",
    ],
)
def test_parse_subject_rejects(subject: str) -> None:
    with pytest.raises(SubjectError):
        parse_subject(subject)


@pytest.mark.parametrize(
    "event_type", ["referral.>", "*.requested", "referral.*", "Referral.Requested", "case.clo sed"]
)
def test_subject_for_rejects_bad_event_type_tokens(event_type: str) -> None:
    with pytest.raises(SubjectError):
        subject_for("kp2mi", "dukcapil", event_type, CASE)


def test_parse_subject_rejects_a_wildcard_filter() -> None:
    with pytest.raises(SubjectError):
        parse_subject(f"lintas.kp2mi.dukcapil.*.requested.{CASE}")


@pytest.mark.parametrize(
    ("source", "target", "case_id"),
    [
        ("kp2mi", "dukcapil", CASE + "\n"),
        ("my-jkm\n", "kp2mi", CASE),
        ("kp2mi", "desa-3525012001\n", CASE),
    ],
    ids=["case-id", "partner-source", "village-target"],
)
def test_subject_for_rejects_a_trailing_newline(source: str, target: str, case_id: str) -> None:
    with pytest.raises(SubjectError):
        subject_for(source, target, "case.closed", case_id)


def test_inbound_filters_are_exact() -> None:
    assert inbound_filters("kp2mi") == ["lintas.*.kp2mi.>", "lintas.*.all.>"]
    assert inbound_filters("desa-3525012001") == [
        "lintas.*.desa-3525012001.>",
        "lintas.*.all.>",
    ]


def test_outbound_filter_is_exact() -> None:
    assert outbound_filter("dukcapil") == "lintas.dukcapil.>"
    assert outbound_filter("my-jkm") == "lintas.my-jkm.>"


def test_case_filter_is_exact() -> None:
    assert case_filter(CASE) == f"lintas.*.*.*.*.{CASE}"


@pytest.mark.parametrize("agency", ["all", "nobody", "", "KP2MI", "desa-12", "id-xyz"])
def test_filters_refuse_non_agencies(agency: str) -> None:
    with pytest.raises(SubjectError):
        inbound_filters(agency)
    with pytest.raises(SubjectError):
        outbound_filter(agency)


def test_case_filter_refuses_a_bad_case_id() -> None:
    with pytest.raises(SubjectError):
        case_filter("C123")


@pytest.mark.parametrize("agency", sorted(NATIONAL_AGENCIES))
def test_national_agencies_are_agency_ids(agency: str) -> None:
    assert is_agency_id(agency) is True


@pytest.mark.parametrize(
    "agency", ["desa-3525012001", "desa-1234", "desa-1234567890123", "my-jkm", "sa-mol", "sg-msf"]
)
def test_villages_and_partners_are_agency_ids(agency: str) -> None:
    assert is_agency_id(agency) is True


@pytest.mark.parametrize(
    "agency",
    [
        "all",
        "",
        "id-xyz",  # Indonesia is home, not abroad
        "desa-12",  # village codes have at least 4 digits
        "desa-12345678901234",  # and at most 13
        "desa-abcd",
        "m-jkm",
        "mys-jkm",
        "my-j",
        "my-jkm-",
        "My-jkm",
        "my_jkm",
        "my.jkm",
        "my-jkm*",
        "kp2mi ",
        "bp2mi",
    ],
)
def test_non_agency_ids(agency: str) -> None:
    assert is_agency_id(agency) is False


def test_village_and_partner_are_told_apart() -> None:
    assert is_village("desa-3525012001") is True
    assert is_partner_abroad("desa-3525012001") is False
    assert is_partner_abroad("my-jkm") is True
    assert is_village("my-jkm") is False
    assert is_partner_abroad("id-xyz") is False


def test_agency_names() -> None:
    assert agency_name("kp2mi") == NATIONAL_AGENCIES["kp2mi"]
    assert agency_name("desa-3525012001") == "Village 3525012001 (Desa Migran Emas)"
    assert agency_name("my-jkm") == "Partner abroad JKM (MY)"
    assert agency_name("whoever") == "whoever"


def test_the_watchdog_is_a_participant_with_its_own_subjects() -> None:
    assert is_agency_id("watchdog") is True
    assert "watchdog" not in NATIONAL_AGENCIES  # not a government agency: runs no worklist
    assert agency_name("watchdog").startswith("lintas deadline watchdog")
    assert (
        subject_for("watchdog", "kpai", "oversight.escalated", CASE)
        == f"lintas.watchdog.kpai.oversight.escalated.{CASE}"
    )
