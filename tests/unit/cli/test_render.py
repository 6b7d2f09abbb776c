"""The record's terminal views fit 100 columns, headers whole, and show event strings as
text: escaped, never markup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console, RenderableType

from lintas.cli.render import case_view, summary_tables
from lintas.consumers.record import (
    CaseRecord,
    ConsentEntry,
    DocumentIssued,
    Handoff,
    PersonalField,
    TimelineEntry,
)
from lintas.demo import PATHWAYS

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
VILLAGE = "desa-3525012001"  # the longest agency id the demo uses


def _record(
    office: str = "Sentra Terpadu Pangudi Luhur", case_id: str = "C" + "7" * 26
) -> CaseRecord:
    """A case with the widest values the demo's pathways produce, and real time spans."""
    handoffs = [
        Handoff(
            key=f"k{i}",
            handoff="rehabilitation",
            what=office,
            requester=VILLAGE,
            asked=VILLAGE if i % 2 else "kemensos",
            status="requested",
            requested_at=T0 + timedelta(days=i * 9, seconds=1),
            accepted_at=T0 + timedelta(days=i * 9, hours=3),
            closed_at=T0 + timedelta(days=i * 10),
            overdue=True,
        )
        for i in range(1, 4)
    ]
    timeline = [
        TimelineEntry(
            seq=100_000 + i,
            time=T0 + timedelta(days=i * 30),
            type="rehabilitation.reintegration_handoff",
            source=VILLAGE,
            target="kemensos",
            owner=VILLAGE,
            refused="no consent" if i == 2 else None,
        )
        for i in range(4)
    ]
    return CaseRecord(
        case_id=case_id,
        situation="undocumented_abroad",
        jurisdiction="MY",
        opened_by="kemlu",
        opened_at=T0,
        owner=VILLAGE,
        whereabouts=f"home: {VILLAGE} (community parenting)",
        status="closed",
        closed_reason="reintegrated",
        handoffs=tuple(handoffs),
        documents=(
            DocumentIssued(
                kind="akta_kelahiran",
                issued_by="dukcapil",
                issuing_office=office,
                issued_on="2025-03-02",
                at=T0,
            ),
        ),
        timeline=tuple(timeline),
        consents=(
            ConsentEntry(
                seq=2,
                at=T0,
                by="kemlu",
                consent_id="consent-1",
                given_by="parent",
                scopes=("services", "disclosure_to_agencies"),
                agencies=("kp2mi", "dukcapil", "kemensos", VILLAGE),
            ),
        ),
        personal=(PersonalField(seq=1, type="case.opened", field="child", state="sealed"),),
    )


def _shown(renderable: RenderableType, width: int = 100) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_the_demo_views_fit_100_columns_with_every_header_whole() -> None:
    records = [
        _record(case_id=f"C{str(i) * 26}").model_copy(
            update={"situation": p.situation, "handoffs": _record().handoffs}
        )
        for i, p in enumerate(PATHWAYS, 1)
    ]
    text = _shown(case_view(records[0])) + _shown(
        summary_tables(records, {p.situation: p.title for p in PATHWAYS})
    )
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text  # nothing cut: what does not fit wraps
    headers = [
        "asked by", "asked of", "for", "requested", "took", "status",  # hand-offs
        "seq", "at", "event", "from → to", "case owner",  # timeline
        "pathway", "cases", "closed", "hand-offs", "events", "consents", "overrides",
        "sealed", "agency", "median", "slowest",
    ]  # fmt: skip
    for header in headers:
        assert f" {header} " in text, header
    # Values that must not be cut either: the longest event type and agency ids whole.
    assert "rehabilitation.reintegration_handoff" in text
    assert f"{VILLAGE} →" in text
    assert "(overdue)" in text
    # A real case's times read in days, not in seconds.
    assert "+30.0d" in text
    assert "+90.0d" in text


def test_event_strings_are_shown_escaped_and_never_as_markup() -> None:
    hostile = "Pangudi\u202eLuhur\x1b[2J[red]x[/red][link=http://evil]y[/link]"
    text = _shown(case_view(_record(office=hostile)), width=200)
    assert "\u202e" not in text
    assert "\x1b" not in text
    assert "Pangudi\\u202eLuhur\\u001b[2J[red]x[/red][link=http://evil]y[/link]" in text
