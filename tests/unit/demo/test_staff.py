"""The demo's staff policy driven through a tiny in-memory bus, with no broker.

Each pathway starts from the opener's ``case.opened`` and consent, every reaction is
delivered to its target (a broadcast to every demo agency but its source), and every
event is folded into the coordination record, which must match the pathway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from lintas.consumers import record as record_mod
from lintas.consumers import worklist
from lintas.consumers.record import CaseRecord
from lintas.contracts import (
    BROADCAST,
    Event,
    authority,
    decode,
    derived_uuid7,
    encode,
    is_agency_id,
    is_uuid7,
    make_event,
    new_case_id,
)
from lintas.contracts import build_data as build
from lintas.demo.pathways import PARTNER, PATHWAYS, VILLAGE, Pathway, agencies, check_record
from lintas.demo.staff import Reaction, react
from lintas.infra.privacy.sealing import seal_data
from tests.support.events import T0, ev
from tests.support.samples import CHILD, TEST_KEY

LIMIT = 500  # a policy that loops would publish forever


@dataclass
class Bus:
    """A stream in memory: publish appends, run delivers in stream order until quiet."""

    case_id: str
    clock: int = 0
    stream: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        # Through the wire format, as an agency's consumer would receive it.
        self.stream.append(decode(encode(event.envelope), subject=event.envelope.nats_subject))

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def react_all(self, cause: Event) -> None:
        if cause.target == BROADCAST:
            receivers = [a for a in agencies() if a != cause.source]
        else:
            receivers = [cause.target]
        for agency in receivers:
            for index, reaction in enumerate(react(agency, cause)):
                self.publish(self.make(agency, reaction, cause, index))

    def make(self, agency: str, reaction: Reaction, cause: Event, index: int) -> Event:
        time = T0 + timedelta(minutes=self.tick())
        at_ms = int(cause.time.timestamp() * 1000) + 1
        return make_event(
            # As the agency's Publisher publishes it: personal fields sealed.
            seal_data(build(reaction.event_type, reaction.data), TEST_KEY, 1, case_id=self.case_id),
            source=agency,
            target=reaction.target,
            case_id=self.case_id,
            time=time,
            event_id=str(derived_uuid7(f"{cause.id}/{index}", at_ms)),
            causationid=cause.id,
        )

    def run(self) -> None:
        delivered = 0
        while delivered < len(self.stream):
            assert delivered < LIMIT, "the staff policy does not settle"
            self.react_all(self.stream[delivered])
            delivered += 1


def _open(pathway: Pathway) -> Bus:
    bus = Bus(new_case_id())
    bus.publish(
        ev(
            "case.opened",
            {
                "situation": pathway.situation,
                "location": {"country": pathway.jurisdiction, "subdivision": pathway.subdivision},
                "jurisdiction": {"country": pathway.jurisdiction},
                "risk_level": pathway.risk_level,
                "home_village": VILLAGE,
                "child": CHILD,
            },
            source=pathway.opener,
            target="kp2mi",
            case_id=bus.case_id,
            time=T0 + timedelta(minutes=bus.tick()),
        )
    )
    scopes = ["services", "disclosure_to_agencies"]
    if pathway.override is not None:
        consent_type, data = (
            "consent.overridden",
            {
                "officer_role": pathway.override.officer_role,
                "legal_basis": list(pathway.override.legal_basis),
                "reason": pathway.override.reason,
                "scopes": scopes,
                "agencies": list(pathway.shared_with),
            },
        )
    else:
        consent_type, data = (
            "consent.recorded",
            {
                "consent_id": "consent-1",
                "given_by": pathway.given_by,
                "child_assent": True,
                "scopes": scopes,
                "agencies": list(pathway.shared_with),
            },
        )
    bus.publish(
        ev(
            consent_type,
            data,
            source=pathway.opener,
            target=BROADCAST,
            case_id=bus.case_id,
            time=T0 + timedelta(minutes=bus.tick()),
        )
    )
    return bus


def _record(events: list[Event]) -> CaseRecord:
    record: CaseRecord | None = None
    for seq, event in enumerate(events, start=1):
        record = record_mod.apply(record, event, seq)
    assert record is not None
    return record


def _run(pathway: Pathway) -> tuple[Bus, CaseRecord]:
    bus = _open(pathway)
    bus.run()
    return bus, _record(bus.stream)


IDS = [p.situation for p in PATHWAYS]


def test_there_are_three_pathways() -> None:
    assert IDS == ["undocumented_abroad", "left_behind", "trafficking_victim"]


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_pathway_runs_to_a_closed_matching_record(pathway: Pathway) -> None:
    bus, record = _run(pathway)
    assert check_record(record) == []
    assert record.status == "closed"
    assert record.closed_reason == pathway.closed_reason
    assert record.situation == pathway.situation
    assert record.opened_by == pathway.opener
    assert record.owner == "kp2mi"
    assert [e.type for e in bus.stream].count("case.closed") == 1
    assert bus.stream[-1].type == "case.closed"


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_pathway_handoffs_are_all_completed_in_order(pathway: Pathway) -> None:
    _, record = _run(pathway)
    got = [(h.requester, h.asked, h.handoff, h.what) for h in record.handoffs]
    assert got == [(h.requester, h.asked, h.handoff, h.what) for h in pathway.handoffs]
    for handoff in record.handoffs:
        assert handoff.status == "completed", handoff.key
        assert handoff.duration_s is not None
        assert handoff.duration_s > 0


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_pathway_reaction_ids_are_unique_v7_and_caused(pathway: Pathway) -> None:
    bus, _ = _run(pathway)
    ids = [e.id for e in bus.stream]
    assert len(set(ids)) == len(ids)
    assert all(is_uuid7(i) for i in ids)
    known = set()
    for event in bus.stream:
        if event.envelope.causationid is not None:
            assert event.envelope.causationid in known
        known.add(event.id)


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_pathway_worklists_end_completed(pathway: Pathway) -> None:
    bus, _ = _run(pathway)
    for agency in agencies():
        items: dict[tuple[str, str, str, str], worklist.WorkItem | None] = {}
        for event in bus.stream:
            if agency not in (event.source, event.target) and event.target != BROADCAST:
                continue
            key = worklist.item_key(agency, event)
            if key is not None:
                items[key] = worklist.apply(agency, items.get(key), event)
        expected = [h for h in pathway.handoffs if h.asked == agency]
        assert len(items) == len(expected), agency
        for item in items.values():
            assert item is not None
            assert item.status == "completed", (agency, item.request_id)
            assert item.requested_at is not None


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_no_agency_reacts_to_its_own_events(pathway: Pathway) -> None:
    bus, _ = _run(pathway)
    for event in bus.stream:
        assert react(event.source, event) == []


def test_an_agency_ignores_its_own_request() -> None:
    case_id = new_case_id()
    request = ev(
        "document.requested",
        {"request_id": "doc-1", "kind": "splp"},
        source="kemlu",
        target="kp2mi",
        case_id=case_id,
        time=T0,
    )
    assert react("kemlu", request) == []
    # the same request from someone else is answered: the test above can fail
    from_kp2mi = ev(
        "document.requested",
        {"request_id": "doc-1", "kind": "splp"},
        source="kp2mi",
        target="kemlu",
        case_id=case_id,
        time=T0,
    )
    (answer,) = react("kemlu", from_kp2mi)
    assert (answer.event_type, answer.target) == ("document.issued", "kp2mi")
    assert answer.data["request_id"] == "doc-1"
    assert answer.data["kind"] == "splp"


def test_kp2mi_assigns_itself_and_starts_each_pathway() -> None:
    firsts = {}
    for pathway in PATHWAYS:
        bus = _open(pathway)
        reactions = react("kp2mi", bus.stream[0])
        assert reactions[0] == Reaction(
            "case.assigned", BROADCAST, {"owner": "kp2mi", "officer_ref": "P2MI-07"}
        )
        firsts[pathway.situation] = (reactions[1].event_type, reactions[1].target)
    assert firsts == {
        "undocumented_abroad": ("document.requested", "kemlu"),
        "left_behind": ("referral.requested", "kemenpppa"),
        "trafficking_victim": ("oversight.escalated", "kpai"),
    }


def test_demo_agencies_are_valid_and_include_village_and_partner() -> None:
    assert all(is_agency_id(a) for a in agencies())
    assert {VILLAGE, PARTNER} <= set(agencies())
    assert len(set(agencies())) == len(agencies())


def test_an_agency_without_policy_does_nothing() -> None:
    event = ev(
        "referral.requested",
        {"referral_id": "r-1", "service": "shelter"},
        source="kp2mi",
        target="sg-msf",
        case_id=new_case_id(),
        time=T0,
    )
    assert react("sg-msf", event) == []


def test_check_record_notices_an_unfinished_case() -> None:
    bus, _ = _run(PATHWAYS[0])
    unfinished = _record(bus.stream[:-1])  # everything but case.closed
    problems = check_record(unfinished)
    assert len(problems) == 1
    assert "expected closed/reintegrated" in problems[0]


def test_check_record_notices_a_missing_handoff() -> None:
    bus, _ = _run(PATHWAYS[1])
    skipped = [
        e
        for e in bus.stream
        if not e.type.startswith("referral.") or getattr(e.data, "referral_id", None) != "ref-cp"
    ]
    problems = check_record(_record(skipped))
    assert any("hand-offs" in p for p in problems)


def test_check_record_refuses_an_unknown_situation() -> None:
    opened = ev(
        "case.opened",
        {
            "situation": "neglected",
            "location": {"country": "ID", "subdivision": "ID-JB"},
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
        },
        source="kp2mi",
        target="kemensos",
        case_id=new_case_id(),
        time=T0,
    )
    (problem,) = check_record(_record([opened]))
    assert "no demo pathway" in problem


@pytest.mark.parametrize("pathway", PATHWAYS, ids=IDS)
def test_pathway_traffic_is_all_admitted_by_the_authority_policy(pathway: Pathway) -> None:
    bus, _ = _run(pathway)
    assert [(e.type, e.source, r.code) for e, r in authority.refusals(bus.stream)] == []
