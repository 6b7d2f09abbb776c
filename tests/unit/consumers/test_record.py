"""The coordination record of one case: pure apply(record, event, seq) -> CaseRecord."""

from __future__ import annotations

from functools import reduce
from typing import Any

import pytest

from lintas.consumers.record import CaseRecord, DocumentIssued, Handoff, TimelineEntry, apply
from lintas.contracts import AuthorityRefused, Event
from tests.support.events import CASE, at, ev
from tests.support.samples import CHILD, SAMPLES, VILLAGE


def e(event_type: str, data: dict[str, Any], source: str, target: str, minutes: float) -> Event:
    return ev(event_type, data, source=source, target=target, case_id=CASE, time=at(minutes))


OPENED = e(
    "case.opened",
    {
        "situation": "undocumented_abroad",
        "location": {"country": "MY", "subdivision": "MY-12"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
        "risk_level": "high",
        "home_village": VILLAGE,
        "child": CHILD,
    },
    "kemlu",
    "kp2mi",
    0,
)
ASSIGNED = e("case.assigned", {"owner": "kp2mi", "officer_ref": "OFC-7"}, "kp2mi", "all", 5)


def fold(events: list[Event], start: int = 1) -> CaseRecord:
    """The record after ``events``; a case's hand-offs are folded after its opening and
    assignment (at seqs below ``start``), since the record refuses what the authority
    policy refuses (nothing about a case never opened)."""
    record: CaseRecord | None = None
    if events[0].type != "case.opened":
        record = apply(apply(None, OPENED, start - 2), ASSIGNED, start - 1)
    for seq, event in enumerate(events, start=start):
        record = apply(record, event, seq)
    assert record is not None
    return record


def test_opening_fills_the_record() -> None:
    record = apply(None, OPENED, 1)
    assert record.case_id == CASE
    assert record.situation == "undocumented_abroad"
    assert record.jurisdiction == "MY"
    assert record.opened_by == "kemlu"
    assert record.opened_at == at(0)
    assert record.owner == "kemlu"
    assert record.whereabouts == "MY-12, MY"
    assert record.status == "open"
    assert record.last_seq == 1
    assert record.handoffs == ()
    assert record.documents == ()


def test_the_record_never_holds_the_child_identity() -> None:
    record = apply(None, OPENED, 1)
    dumped = record.model_dump_json()
    for name in ("full_name", "birth_date", "mother_name", "father_name", "address"):
        assert CHILD[name] not in dumped


def test_owner_is_the_opener_until_assigned() -> None:
    record = fold([OPENED, ASSIGNED])
    assert record.owner == "kp2mi"
    assert [entry.owner for entry in record.timeline] == ["kemlu", "kp2mi"]


def test_reassignment_moves_the_owner() -> None:
    moved = e("case.assigned", {"owner": "kemensos", "officer_ref": "SOS-1"}, "kp2mi", "all", 9)
    record = fold([OPENED, ASSIGNED, moved])
    assert record.owner == "kemensos"
    assert [entry.owner for entry in record.timeline] == ["kemlu", "kp2mi", "kemensos"]


def test_only_the_owner_or_the_coordinator_moves_the_owner() -> None:
    """Dukcapil's assignment of the case to itself is refused (the authority policy) and
    moves nothing; the owner hands it on; the coordinator (kp2mi) takes it back."""
    taken = e("case.assigned", {"owner": "dukcapil", "officer_ref": "DUK-1"}, "dukcapil", "all", 2)
    handed = e("case.assigned", {"owner": "kemensos", "officer_ref": "SOS-1"}, "kemlu", "all", 3)
    with pytest.raises(AuthorityRefused) as refused:
        fold([OPENED, taken])
    assert refused.value.code == "not_owner"
    record = fold([OPENED, handed, ASSIGNED])
    assert [entry.owner for entry in record.timeline] == ["kemlu", "kemensos", "kp2mi"]


def test_only_the_owner_s_erasure_is_the_record_s() -> None:
    """Dukcapil's case.erased is refused: the record keeps no erasure for it (the read
    service erases no key for it either), and the owner's still counts."""
    erasure = SAMPLES["case.erased"]
    by_dukcapil = e("case.erased", erasure, "dukcapil", "all", 6)
    by_owner = e("case.erased", erasure, "kp2mi", "all", 7)
    record = fold([OPENED, ASSIGNED])
    with pytest.raises(AuthorityRefused) as refused:
        apply(record, by_dukcapil, 3)
    assert refused.value.code == "not_owner"
    record = apply(record, by_owner, 4)
    assert record.erasure is not None
    assert (record.erasure.by, record.erasure.seq) == ("kp2mi", 4)


def test_whereabouts_follow_repatriation() -> None:
    scheduled = e(
        "repatriation.scheduled",
        {"repatriation_id": "rep-1", "port_of_entry": "IDNNX", "departure_on": "2024-03-04"},
        "kemlu",
        "kp2mi",
        30,
    )
    arrived = e(
        "repatriation.completed",
        {
            "repatriation_id": "rep-1",
            "port_of_entry": "IDNNX",
            "arrived_at": "2024-03-04T14:00:00+08:00",
        },
        "kemlu",
        "kp2mi",
        40,
    )
    asked = e(
        "repatriation.requested",
        {"repatriation_id": "rep-1", "from_country": "MY"},
        "kp2mi",
        "kemlu",
        20,
    )
    record = fold([OPENED, ASSIGNED, asked, scheduled])
    assert record.whereabouts == "awaiting repatriation via Nunukan (IDNNX) on 2024-03-04"
    record = apply(record, arrived, 5)
    assert record.whereabouts == "arrived in Indonesia at Nunukan (IDNNX)"


def test_whereabouts_follow_rehabilitation_and_reintegration() -> None:
    record = fold(
        [
            OPENED,
            ASSIGNED,
            e(
                "rehabilitation.handoff_requested",
                {"handoff_id": "rehab-1", "placement": "SENTRA-32.01"},
                "kp2mi",
                "kemensos",
                10,
            ),
            e(
                "rehabilitation.handoff_accepted",
                {"handoff_id": "rehab-1"},
                "kemensos",
                "kp2mi",
                11,
            ),
        ]
    )
    assert record.whereabouts == "in rehabilitation with kemensos (SENTRA-32.01)"
    for seq, event in enumerate(
        [
            e(
                "rehabilitation.reintegration_handoff",
                {"handoff_id": "reint-1", "to": "community_parenting", "village": VILLAGE},
                "kemensos",
                VILLAGE,
                20,
            ),
            e(
                "rehabilitation.handoff_accepted",
                {"handoff_id": "reint-1"},
                VILLAGE,
                "kemensos",
                21,
            ),
        ],
        start=5,
    ):
        record = apply(record, event, seq)
    assert record.whereabouts == f"home: {VILLAGE} (community parenting)"


def test_whereabouts_of_a_reintegration_to_family() -> None:
    record = fold(
        [
            e(
                "rehabilitation.handoff_requested",
                {"handoff_id": "rehab-1", "placement": "SENTRA-32.01"},
                "kp2mi",
                "kemensos",
                10,
            ),
            e(
                "rehabilitation.reintegration_handoff",
                {"handoff_id": "reint-1", "to": "family", "village": VILLAGE},
                "kemensos",
                VILLAGE,
                20,
            ),
            e(
                "rehabilitation.handoff_accepted",
                {"handoff_id": "reint-1"},
                VILLAGE,
                "kemensos",
                21,
            ),
        ]
    )
    assert record.whereabouts == f"home: {VILLAGE} (family)"


def test_other_events_keep_whereabouts() -> None:
    record = fold([OPENED, ASSIGNED, e("case.closed", {"reason": "other"}, "kp2mi", "all", 9)])
    assert record.whereabouts == "MY-12, MY"


def test_handoff_lifecycle_and_duration() -> None:
    record = fold(
        [
            OPENED,
            ASSIGNED,
            e(
                "referral.requested",
                {"referral_id": "ref-1", "service": "shelter"},
                "kp2mi",
                "kemensos",
                60,
            ),
            e("referral.accepted", {"referral_id": "ref-1"}, "kemensos", "kp2mi", 90),
            e(
                "referral.completed",
                {"referral_id": "ref-1", "outcome": "served"},
                "kemensos",
                "kp2mi",
                180,
            ),
        ]
    )
    assert record.handoffs == (
        Handoff(
            key="kp2mi/ref-1",
            handoff="referral",
            what="shelter",
            requester="kp2mi",
            asked="kemensos",
            status="completed",
            requested_at=at(60),
            accepted_at=at(90),
            closed_at=at(180),
        ),
    )
    assert record.handoffs[0].duration_s == 120 * 60


def test_an_open_handoff_has_no_duration() -> None:
    record = fold(
        [
            e(
                "referral.requested",
                {"referral_id": "ref-1", "service": "shelter"},
                "kp2mi",
                "kemensos",
                60,
            ),
            e("referral.accepted", {"referral_id": "ref-1"}, "kemensos", "kp2mi", 90),
        ]
    )
    (handoff,) = record.handoffs
    assert handoff.status == "accepted"
    assert handoff.closed_at is None
    assert handoff.duration_s is None


def test_progress_counts_as_accepted_and_overdue_only_flags() -> None:
    record = fold(
        [
            e(
                "referral.requested",
                {"referral_id": "ref-1", "service": "shelter"},
                "kp2mi",
                "kemensos",
                0,
            ),
            e(
                "referral.overdue",
                {"referral_id": "ref-1", "requester": "kp2mi", "due": "2024-03-02T08:00:00Z"},
                "watchdog",
                "kemensos",
                30,
            ),
            e(
                "rehabilitation.handoff_requested",
                {"handoff_id": "rh-1", "placement": "SENTRA-32.01"},
                "kp2mi",
                "kemensos",
                40,
            ),
            e(
                "rehabilitation.progress_reported",
                {"handoff_id": "rh-1", "stage": "intake"},
                "kemensos",
                "kp2mi",
                50,
            ),
        ]
    )
    referral, rehab = record.handoffs
    assert (referral.status, referral.overdue, referral.closed_at) == ("requested", True, None)
    assert (rehab.status, rehab.accepted_at, rehab.what) == ("accepted", at(50), "SENTRA-32.01")


def test_the_first_terminal_answer_closes_a_stronger_one_wins() -> None:
    record = fold(
        [
            e("document.requested", {"request_id": "doc-1", "kind": "kk"}, "kp2mi", "dukcapil", 0),
            e(
                "document.rejected",
                {"request_id": "doc-1", "kind": "kk", "reason": "no record"},
                "dukcapil",
                "kp2mi",
                10,
            ),
            e(
                "document.issued",
                {
                    "request_id": "doc-1",
                    "kind": "kk",
                    "number": "KK-1",
                    "issuing_office": "35.25",
                    "issued_on": "2024-03-01",
                },
                "dukcapil",
                "kp2mi",
                20,
            ),
        ]
    )
    (handoff,) = record.handoffs
    # issued outranks rejected, but the hand-off closed with the first terminal answer
    assert (handoff.status, handoff.closed_at) == ("completed", at(10))
    assert handoff.duration_s == 600


def test_a_revoke_after_completion_does_not_reopen_or_downgrade() -> None:
    record = fold(
        [
            e(
                "referral.requested",
                {"referral_id": "ref-1", "service": "shelter"},
                "kp2mi",
                "kemensos",
                0,
            ),
            e(
                "referral.completed",
                {"referral_id": "ref-1", "outcome": "served"},
                "kemensos",
                "kp2mi",
                30,
            ),
            e(
                "referral.revoked",
                {"referral_id": "ref-1", "reason": "too late"},
                "kp2mi",
                "kemensos",
                40,
            ),
        ]
    )
    (handoff,) = record.handoffs
    assert (handoff.status, handoff.closed_at) == ("completed", at(30))


def test_handoffs_keep_the_order_they_were_opened() -> None:
    record = fold(
        [
            e("document.requested", {"request_id": "doc-a", "kind": "nik"}, "kp2mi", "dukcapil", 0),
            e(
                "oversight.escalated",
                {"escalation_id": "esc-1", "concern": "lost_contact", "reason": "no answer"},
                "kp2mi",
                "kpai",
                1,
            ),
            e(
                "document.issued",
                {
                    "request_id": "doc-a",
                    "kind": "nik",
                    "number": "N-1",
                    "issuing_office": "35.25",
                    "issued_on": "2024-03-01",
                },
                "dukcapil",
                "kp2mi",
                2,
            ),
        ]
    )
    assert [(h.key, h.handoff, h.what, h.asked, h.status) for h in record.handoffs] == [
        ("kp2mi/doc-a", "document", "nik", "dukcapil", "completed"),
        ("kp2mi/esc-1", "oversight", "lost_contact", "kpai", "requested"),
    ]


def test_documents_are_kept_without_their_number() -> None:
    issued = e(
        "document.issued",
        {
            "request_id": "doc-akta",
            "kind": "akta_kelahiran",
            "number": "3525-LT-0042",
            "issuing_office": "35.25",
            "issued_on": "2024-03-02",
        },
        "dukcapil",
        "kp2mi",
        30,
    )
    asked = e(
        "document.requested",
        {"request_id": "doc-akta", "kind": "akta_kelahiran"},
        "kp2mi",
        "dukcapil",
        20,
    )
    record = fold([OPENED, ASSIGNED, asked, issued])
    assert record.documents == (
        DocumentIssued(
            kind="akta_kelahiran",
            issued_by="dukcapil",
            issuing_office="35.25",
            issued_on="2024-03-02",
            at=at(30),
        ),
    )
    assert "number" not in DocumentIssued.model_fields
    assert "3525-LT-0042" not in record.model_dump_json()


def test_a_document_without_request_is_recorded_but_opens_no_handoff() -> None:
    issued = e(
        "document.issued",
        {
            "kind": "kia",
            "number": "KIA-9",
            "issuing_office": "35.25",
            "issued_on": "2024-03-02",
        },
        "dukcapil",
        "kp2mi",
        30,
    )
    record = fold([OPENED, issued])
    assert [d.kind for d in record.documents] == ["kia"]
    assert record.handoffs == ()


def test_close_and_reopen() -> None:
    closed = e("case.closed", {"reason": "reunified"}, "kp2mi", "all", 100)
    reopened = e("case.reopened", {"reason": "lost contact"}, "kp2mi", "all", 200)
    record = fold([OPENED, ASSIGNED, closed])
    assert (record.status, record.closed_reason, record.closed_at) == (
        "closed",
        "reunified",
        at(100),
    )
    record = apply(record, reopened, 4)
    assert (record.status, record.closed_reason, record.closed_at) == ("open", None, None)
    record = apply(record, e("case.closed", {"reason": "aged_out"}, "kp2mi", "all", 300), 5)
    assert (record.status, record.closed_reason, record.closed_at) == (
        "closed",
        "aged_out",
        at(300),
    )


def test_timeline_in_order_with_seq() -> None:
    events = [OPENED, ASSIGNED, e("case.closed", {"reason": "other"}, "kp2mi", "all", 9)]
    record = reduce(
        lambda r, pair: apply(r, pair[1], pair[0]), zip([11, 12, 17], events, strict=True), None
    )
    assert record is not None
    assert record.timeline == (
        TimelineEntry(
            seq=11, time=at(0), type="case.opened", source="kemlu", target="kp2mi", owner="kemlu"
        ),
        TimelineEntry(
            seq=12, time=at(5), type="case.assigned", source="kp2mi", target="all", owner="kp2mi"
        ),
        TimelineEntry(
            seq=17, time=at(9), type="case.closed", source="kp2mi", target="all", owner="kp2mi"
        ),
    )
    assert record.last_seq == 17


def test_last_seq_never_goes_back() -> None:
    record = apply(apply(None, OPENED, 8), ASSIGNED, 3)
    assert record.last_seq == 8


def test_apply_does_not_mutate_its_input() -> None:
    before = apply(None, OPENED, 1)
    snapshot = before.model_dump()
    after = apply(before, ASSIGNED, 2)
    assert before.model_dump() == snapshot
    assert after is not before
    assert len(after.timeline) == 2


def test_only_the_agency_asked_can_answer() -> None:
    record = fold(
        [
            e(
                "referral.requested",
                {"referral_id": "r1", "service": "shelter"},
                "kp2mi",
                "kemensos",
                0,
            )
        ]
    )
    answer = e(
        "referral.completed", {"referral_id": "r1", "outcome": "served"}, "dukcapil", "kp2mi", 5
    )
    with pytest.raises(AuthorityRefused) as refused:
        apply(record, answer, 2)
    assert refused.value.code == "not_asked"
    (handoff,) = record.handoffs
    assert (handoff.asked, handoff.status, handoff.closed_at) == ("kemensos", "requested", None)


def test_the_record_holds_only_strings_integers_booleans_and_nulls() -> None:
    # A replay digests the records it wrote with orjson's sorted output as RFC 8785's,
    # unchecked (audit/replay.py, _replayed_form): the two differ for floats, and a field
    # of any JSON (Any, a free-keyed dict) could hold one, or a name sorted otherwise.
    schema = CaseRecord.model_json_schema()
    allowed = {"string", "integer", "boolean", "null"}

    def check(node: dict[str, Any]) -> None:
        if "$ref" in node:
            return  # a nested record model, checked among the definitions
        if "anyOf" in node:
            for option in node["anyOf"]:
                check(option)
            return
        if node.get("type") == "array":
            check(node["items"])
            return
        assert node.get("type") in allowed, node
        if node["type"] == "string":
            assert node.get("format") in (None, "date-time"), node

    models = [schema, *schema.get("$defs", {}).values()]
    assert len(models) > 1
    for model in models:
        assert model.get("additionalProperties") in (None, False), model["title"]
        for field in model["properties"].values():
            check(field)
