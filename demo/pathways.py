"""The three demo pathways (DESIGN.md section 1), as data the demo and its tests share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lintas.consumers.record import CaseRecord
from lintas.contracts import NATIONAL_AGENCIES

__all__ = [
    "PARTNER",
    "PATHWAYS",
    "VILLAGE",
    "ExpectedHandoff",
    "Override",
    "Pathway",
    "agencies",
    "check_record",
    "pathway_of",
]

VILLAGE: Final = "desa-3525012001"
PARTNER: Final = "my-jkm"


@dataclass(frozen=True, slots=True)
class ExpectedHandoff:
    requester: str
    asked: str
    handoff: str
    what: str
    status: str = "completed"


@dataclass(frozen=True, slots=True)
class Override:
    """Consent overridden at intake: no parent or guardian can give it (and the law says
    the child's protection may not wait for one)."""

    officer_role: str  # a code of contracts.codes.OFFICER_ROLES
    legal_basis: tuple[str, ...]  # citations
    reason: str  # sealed


@dataclass(frozen=True, slots=True)
class Pathway:
    situation: str
    title: str
    opener: str
    jurisdiction: str
    location: str
    subdivision: str
    responsible_office: str  # an office code (contracts.codes.OFFICES)
    risk_level: str
    closed_reason: str
    handoffs: tuple[ExpectedHandoff, ...]
    shared_with: tuple[str, ...]
    """The agencies the intake consent (or override) covers: every one a hand-off of the
    pathway shares the child's data with. A partner abroad needs a consent of its own."""
    given_by: str = "parent"
    override: Override | None = None


_H = ExpectedHandoff

PATHWAYS: Final[tuple[Pathway, ...]] = (
    Pathway(
        situation="undocumented_abroad",
        title="Undocumented child in Sabah: papers, return via Nunukan, rehabilitation, home",
        opener="kemlu",
        jurisdiction="MY",
        location="Sabah",
        subdivision="MY-12",
        responsible_office="KJRI-MYBKI",
        risk_level="high",
        closed_reason="reintegrated",
        handoffs=(
            _H("kp2mi", "kemlu", "document", "citizenship_confirmation"),
            _H("kp2mi", "kemlu", "document", "splp"),
            _H("kp2mi", "kemlu", "repatriation", "repatriation"),
            _H("kemlu", PARTNER, "referral", "exit_clearance"),
            _H("kp2mi", "dukcapil", "document", "nik"),
            _H("kp2mi", "dukcapil", "document", "akta_kelahiran"),
            _H("kp2mi", "dukcapil", "document", "kk"),
            _H("kp2mi", "kemensos", "rehabilitation", "SENTRA-32.75"),
            _H("kemensos", VILLAGE, "reintegration", "community_parenting"),
        ),
        shared_with=("kp2mi", "dukcapil", "kemensos", VILLAGE),
    ),
    Pathway(
        situation="left_behind",
        title="Left-behind child in the village: PPPA assessment, community parenting",
        opener=VILLAGE,
        jurisdiction="ID",
        location="Jawa Timur",
        subdivision="ID-JI",
        responsible_office="BP3MI-35",
        risk_level="medium",
        closed_reason="no_longer_needed",
        handoffs=(
            _H("kp2mi", "kemenpppa", "referral", "psychosocial_assessment"),
            _H("kp2mi", "kemnaker", "referral", "community_parenting"),
        ),
        shared_with=("kp2mi", "kemenpppa", "kemnaker"),
    ),
    Pathway(
        situation="trafficking_victim",
        title="Trafficking victim in Jeddah: KPAI oversight, return, protection, rehabilitation",
        opener="kemlu",
        jurisdiction="SA",
        location="Jeddah",
        subdivision="SA-02",
        responsible_office="KJRI-SAJED",
        risk_level="critical",
        closed_reason="reintegrated",
        handoffs=(
            _H("kp2mi", "kpai", "oversight", "trafficking"),
            _H("kp2mi", "kemlu", "repatriation", "repatriation"),
            _H("kp2mi", "kemenpppa", "referral", "protection_services"),
            _H("kp2mi", "kemensos", "rehabilitation", "SENTRA-32.75"),
            _H("kemensos", VILLAGE, "reintegration", "community_parenting"),
        ),
        shared_with=("kp2mi", "kpai", "kemenpppa", "kemensos", VILLAGE),
        override=Override(
            officer_role="consular_protection_officer",
            legal_basis=("UU 35/2014 Pasal 59A", "UU 21/2007"),
            reason="child trafficking victim; no parent or guardian can be reached",
        ),
    ),
)


def agencies() -> tuple[str, ...]:
    """Every agency the demo runs a consumer for."""
    return (*NATIONAL_AGENCIES, VILLAGE, PARTNER)


def pathway_of(situation: str | None) -> Pathway | None:
    return next((p for p in PATHWAYS if p.situation == situation), None)


def check_record(record: CaseRecord) -> list[str]:
    """How a case's coordination record differs from its pathway (empty when it matches)."""
    pathway = pathway_of(record.situation)
    if pathway is None:
        return [f"{record.case_id}: no demo pathway for situation {record.situation!r}"]
    problems = []
    got = [(h.requester, h.asked, h.handoff, h.what, h.status) for h in record.handoffs]
    want = [(h.requester, h.asked, h.handoff, h.what, h.status) for h in pathway.handoffs]
    if got != want:
        problems.append(f"{record.case_id}: hand-offs {got} != expected {want}")
    if (record.status, record.closed_reason) != ("closed", pathway.closed_reason):
        problems.append(
            f"{record.case_id}: {record.status}/{record.closed_reason}, "
            f"expected closed/{pathway.closed_reason}"
        )
    seqs = [entry.seq for entry in record.timeline]
    if seqs != sorted(set(seqs)):
        problems.append(f"{record.case_id}: timeline not in stream order: {seqs}")
    refused = [f"{e.type} at seq {e.seq}" for e in record.timeline if e.refused]
    if refused:
        problems.append(f"{record.case_id}: shared without consent: {', '.join(refused)}")
    clear = [f"{p.type}.{p.field}" for p in record.personal if p.state != "sealed"]
    if clear:
        problems.append(f"{record.case_id}: personal fields not sealed: {', '.join(clear)}")
    owner = pathway.opener
    for entry in record.timeline:
        if entry.type == "case.assigned":
            owner = "kp2mi"
        if entry.owner != owner:
            problems.append(
                f"{record.case_id}: owner {entry.owner} at seq {entry.seq}, not {owner}"
            )
            break
    return problems
