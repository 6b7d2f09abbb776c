"""Terminal views of the coordination record (rich)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from lintas.consumers import CaseRecord
from lintas.contracts import agency_name

__all__ = ["case_view", "handoff_table", "privacy_view", "summary_tables"]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _clock(at: datetime | None, start: datetime | None) -> str:
    if at is None:
        return "-"
    if start is None:
        return at.strftime("%H:%M:%S.%f")[:-3]
    return f"+{(at - start).total_seconds():.3f}s"


def case_view(record: CaseRecord) -> Group:
    """One case: a header, the hand-offs, and the full timeline."""
    start = record.opened_at
    head = Text.assemble(
        ("Case ", "bold"),
        (record.case_id, "bold cyan"),
        f"  {record.situation or '?'} in {record.jurisdiction or '?'}",
        f"  opened by {record.opened_by} at {_clock(start, None)} UTC\n",
        f"owner {record.owner}  ·  status {record.status}",
        f" ({record.closed_reason})" if record.closed_reason else "",
        f"  ·  now: {record.whereabouts or 'unknown'}",
    )
    timeline = Table(title="Timeline", title_justify="left", show_lines=False, expand=False)
    for column in ("seq", "at", "event", "from", "to", "case owner"):
        timeline.add_column(column, no_wrap=True)
    for entry in record.timeline:
        timeline.add_row(
            str(entry.seq),
            _clock(entry.time, start),
            entry.type,
            entry.source,
            entry.target,
            (entry.owner or "-") + ("  [red]refused: no consent[/red]" if entry.refused else ""),
        )
    docs = ", ".join(f"{d.kind} ({d.issuing_office})" for d in record.documents) or "none"
    return Group(
        head,
        handoff_table(record),
        Text(f"Documents issued: {docs}"),
        privacy_view(record),
        timeline,
    )


_SHOWN = {"sealed": "[sealed]", "erased": "[erased]", "clear": "[in the clear: before sealing]"}


def privacy_view(record: CaseRecord) -> Group:
    """Who may see the child's data, and where it travelled: never a value."""
    lines = []
    for c in record.consents:
        who = (
            f"consent {c.consent_id} given by {c.given_by}"
            if c.consent_id
            else f"override by {c.officer_role} ({c.legal_basis})"
        )
        withdrawn = (
            f"; withdrawn at seq {c.withdrawn_seq}, told: {', '.join(c.notified or ()) or '-'}"
            if c.withdrawn_seq
            else ""
        )
        lines.append(
            f"  seq {c.seq} {who}, recorded by {c.by}: {', '.join(c.scopes)} for "
            f"{', '.join(c.agencies)}{withdrawn}"
        )
    if not lines:
        lines.append("  no consent recorded")
    fields = Table(title="Personal data", title_justify="left")
    for column in ("seq", "event", "field", "as stored"):
        fields.add_column(column, no_wrap=True)
    for p in record.personal:
        fields.add_row(str(p.seq), p.type, p.field, Text(_SHOWN.get(p.state, p.state)))
    erased = (
        Text(
            f"Erased at seq {record.erasure.seq} by {record.erasure.by} "
            f"({record.erasure.officer_role}, {record.erasure.legal_basis}; requested by "
            f"{record.erasure.requested_by}): every sealed field is unreadable"
        )
        if record.erasure
        else Text("")
    )
    return Group(Text("Consent:\n" + "\n".join(lines)), fields, erased)


def handoff_table(record: CaseRecord) -> Table:
    table = Table(title="Hand-offs", title_justify="left")
    for column in (
        "#",
        "asked by",
        "asked of",
        "for",
        "requested",
        "accepted",
        "done",
        "took",
        "status",
    ):
        table.add_column(column, no_wrap=True)
    start = record.opened_at
    for number, h in enumerate(record.handoffs, 1):
        table.add_row(
            str(number),
            h.requester,
            h.asked or "-",
            f"{h.handoff}: {h.what}",
            _clock(h.requested_at, start),
            _clock(h.accepted_at, start),
            _clock(h.closed_at, start),
            _ms(h.duration_s),
            h.status + (" (overdue)" if h.overdue else ""),
        )
    return table


def summary_tables(records: Sequence[CaseRecord], titles: dict[str, str]) -> Group:
    """Cases per pathway, and the median time per hand-off of each agency asked."""
    per_pathway = Table(title="Cases per pathway", title_justify="left")
    for column in ("pathway", "cases", "closed", "hand-offs", "events", "consents", "sealed"):
        per_pathway.add_column(column)
    grouped: dict[str, list[CaseRecord]] = defaultdict(list)
    for record in records:
        grouped[record.situation or "?"].append(record)
    for situation, group in sorted(grouped.items()):
        per_pathway.add_row(
            titles.get(situation, situation),
            str(len(group)),
            str(sum(r.status == "closed" for r in group)),
            str(sum(len(r.handoffs) for r in group)),
            str(sum(len(r.timeline) for r in group)),
            f"{sum(1 for r in group for c in r.consents if c.consent_id)} recorded, "
            f"{sum(1 for r in group for c in r.consents if not c.consent_id)} overridden",
            str(sum(1 for r in group for p in r.personal if p.state == "sealed")),
        )
    durations: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for h in record.handoffs:
            if h.asked and h.duration_s is not None:
                durations[h.asked].append(h.duration_s)
    per_agency = Table(title="Median time per hand-off, by agency asked", title_justify="left")
    for column in ("agency", "", "hand-offs", "median", "slowest"):
        per_agency.add_column(column)
    for agency, values in sorted(durations.items(), key=lambda kv: -statistics.median(kv[1])):
        per_agency.add_row(
            agency,
            agency_name(agency),
            str(len(values)),
            _ms(statistics.median(values)),
            _ms(max(values)),
        )
    return Group(per_pathway, per_agency)
