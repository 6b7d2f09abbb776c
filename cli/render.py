"""Terminal views of the coordination record (rich), each fitting 100 columns.

Every string that came from an event is shown as text, never as markup, and printable
(:func:`lintas.contracts.redaction.printable`): an office's name with a U+202E or an ESC
in it shows the escape, not its effect.
"""

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
from lintas.contracts.codes import cited, label
from lintas.contracts.redaction import printable

__all__ = ["case_view", "handoff_table", "privacy_view", "summary_tables"]


_AGENCY = len("desa-3525012001")  # the widest agency id of the demo: never cut


def _t(value: object) -> Text:
    """A cell or a part of a line that came from an event: text, printable."""
    return Text(printable("-" if value is None else str(value)))


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds * 1000:,.0f} ms"
    return f"{seconds:,.1f} s" if seconds < 3600 else _span(seconds)


def _span(seconds: float) -> str:
    """A time from a case's opening, in at most 8 columns: the demo's seconds or a real
    case's days."""
    if seconds < 60:
        return f"{seconds:.3f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:,.1f}d"


def _clock(at: datetime | None, start: datetime | None) -> str:
    if at is None:
        return "-"
    if start is None:
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"+{_span(max(0.0, (at - start).total_seconds()))}"


def case_view(record: CaseRecord) -> Group:
    """One case: a header, the hand-offs, and the full timeline."""
    start = record.opened_at
    head = Text.assemble(
        ("Case ", "bold"),
        (record.case_id, "bold cyan"),
        printable(f"  {record.situation or '?'} in {record.jurisdiction or '?'}"),
        "\n",
        printable(f"opened by {record.opened_by} at {_clock(start, None)} UTC"),
        printable(f"  ·  owner {record.owner}  ·  status {record.status}"),
        printable(f" ({record.closed_reason})") if record.closed_reason else "",
        "\n",
        printable(f"now: {record.whereabouts or 'unknown'}"),
    )
    timeline = Table(title="Timeline", title_justify="left", show_lines=False, expand=False)
    timeline.add_column("seq", no_wrap=True, justify="right")
    timeline.add_column("at", no_wrap=True)
    timeline.add_column("event", no_wrap=True)
    # These wrap (at the arrow; a refusal under the owner), never cutting an agency id.
    timeline.add_column("from → to", min_width=_AGENCY, overflow="fold")
    timeline.add_column("case owner", min_width=_AGENCY, overflow="fold")
    for entry in record.timeline:
        owner = _t(entry.owner)
        if entry.refused:
            owner.append("  refused: no consent", style="red")
        timeline.add_row(
            str(entry.seq),
            _clock(entry.time, start),
            _t(entry.type),
            _t(f"{entry.source} → {entry.target}"),
            owner,
        )
    docs = ", ".join(f"{d.kind} ({label(d.issuing_office)})" for d in record.documents) or "none"
    return Group(
        head,
        handoff_table(record),
        _t(f"Documents issued: {docs}"),
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
            else f"override by {label(c.officer_role)} ({cited(c.legal_basis)})"
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
        fields.add_row(str(p.seq), _t(p.type), _t(p.field), _t(_SHOWN.get(p.state, p.state)))
    erased = (
        _t(
            f"Erased at seq {record.erasure.seq} by {record.erasure.by} "
            f"({label(record.erasure.officer_role)}, {cited(record.erasure.legal_basis)}; "
            f"requested by {record.erasure.requested_by}; {label(record.erasure.reason)}): "
            "every sealed field is unreadable"
        )
        if record.erasure
        else Text("")
    )
    return Group(Text("Consent:\n" + "\n".join(printable(line) for line in lines)), fields, erased)


def handoff_table(record: CaseRecord) -> Table:
    """Who asked whom for what, when, how long the answer took, where it stands (when each
    was accepted and answered: ``case show --json``, the timeline)."""
    table = Table(title="Hand-offs", title_justify="left")
    table.add_column("#", no_wrap=True, justify="right")
    table.add_column("asked by", no_wrap=True)
    table.add_column("asked of", no_wrap=True)
    table.add_column("for", min_width=16, overflow="fold")  # wraps: a facility's name, say
    table.add_column("requested", no_wrap=True)
    table.add_column("took", no_wrap=True)
    table.add_column("status", min_width=9, overflow="fold")
    start = record.opened_at
    for number, h in enumerate(record.handoffs, 1):
        table.add_row(
            str(number),
            _t(h.requester),
            _t(h.asked),
            _t(f"{h.handoff}: {h.what}"),
            _clock(h.requested_at, start),
            _ms(h.duration_s),
            _t(h.status + (" (overdue)" if h.overdue else "")),
        )
    return table


def summary_tables(records: Sequence[CaseRecord], titles: dict[str, str]) -> Group:
    """Cases per pathway, and the median time per hand-off of each agency asked."""
    per_pathway = Table(title="Cases per pathway", title_justify="left")
    per_pathway.add_column("pathway", min_width=16, overflow="fold")
    for column in ("cases", "closed", "hand-offs", "events", "consents", "overrides", "sealed"):
        per_pathway.add_column(column, no_wrap=True, justify="right")
    grouped: dict[str, list[CaseRecord]] = defaultdict(list)
    for record in records:
        grouped[record.situation or "?"].append(record)
    for situation, group in sorted(grouped.items()):
        per_pathway.add_row(
            # The title's head ("Undocumented child in Sabah"), not the whole pathway.
            _t(titles.get(situation, situation).split(":", 1)[0]),
            str(len(group)),
            str(sum(r.status == "closed" for r in group)),
            str(sum(len(r.handoffs) for r in group)),
            str(sum(len(r.timeline) for r in group)),
            str(sum(1 for r in group for c in r.consents if c.consent_id)),
            str(sum(1 for r in group for c in r.consents if not c.consent_id)),
            str(sum(1 for r in group for p in r.personal if p.state == "sealed")),
        )
    durations: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for h in record.handoffs:
            if h.asked and h.duration_s is not None:
                durations[h.asked].append(h.duration_s)
    per_agency = Table(title="Median time per hand-off, by agency asked", title_justify="left")
    per_agency.add_column("agency", no_wrap=True)
    per_agency.add_column("", min_width=16, overflow="fold")
    for column in ("hand-offs", "median", "slowest"):
        per_agency.add_column(column, no_wrap=True, justify="right")
    for agency, values in sorted(durations.items(), key=lambda kv: -statistics.median(kv[1])):
        per_agency.add_row(
            _t(agency),
            _t(agency_name(agency)),
            str(len(values)),
            _ms(statistics.median(values)),
            _ms(max(values)),
        )
    return Group(per_pathway, per_agency)
