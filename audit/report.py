"""One case's audit report: a self-contained HTML page an auditor can open offline.

Built from the case's events alone (the stream, through the case's subject filter, or an
archive), read in stream order and streamed: each event is checked as ``lintas verify``
checks it (:class:`~lintas.audit.check.LogChecker`: contract, signature, hash chain), but a
failure does not stop the report: every event gets its own OK or FAILED and the reason. The
events that pass their contract and signature are folded through the record projection's
own fold (:func:`lintas.consumers.record.apply`) into the case's :class:`CaseRecord`, as a
replay would, and the record's digest is shown::

    sha256( canonical_json(CaseRecord.model_dump(mode="json")) + "\\n" )

the record digest (docs/AUDIT.md) of a record holding this one case, i.e. what
``lintas replay --case`` then ``lintas record digest`` print for it.

The page never holds a child's identifying data: fields the contract marks
``x-lintas-personal`` (the child's identity, document numbers, free-text reasons, notes and
summaries) are shown as ``[personal: sealed]`` (carried encrypted) or ``[personal: not
shown]`` (carried in the clear, before sealing), and as ``[erased]`` once the case was
erased (its data keys destroyed); an event that does not decode shows no data at all.
Every string is escaped, its control and bidirectional characters too
(:func:`lintas.contracts.redaction.printable`); the page has inline CSS and SVG, no script
and no external asset.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lintas.audit.check import LogChecker
from lintas.audit.events import StoredEvent, event_time
from lintas.consumers.record import CaseRecord, apply
from lintas.contracts import (
    BROADCAST,
    PERSONAL_KEY,
    AuthorityRefused,
    Event,
    Sealed,
    SignatureError,
    canonical_json,
    decode,
    is_agency_id,
    is_uuid7,
)
from lintas.contracts.codes import cited, label
from lintas.contracts.redaction import printable
from lintas.infra.keys.signing import Registry

__all__ = [
    "ERASED",
    "PERSONAL",
    "SEALED",
    "CaseReport",
    "EventCheck",
    "build_report",
    "case_record_digest",
    "render_html",
]

PERSONAL = "[personal: not shown]"
SEALED = "[personal: sealed]"
ERASED = "[erased]"
_MASKS = frozenset({PERSONAL, SEALED, ERASED})
_TYPE = re.compile(r"[a-z][a-z_]{0,40}\.[a-z][a-z_]{0,40}")
OK = "ok"
FAILED = "failed"
UNCHECKED = "not checked"


@dataclass(frozen=True, slots=True)
class EventCheck:
    """One event of the case as the report shows it: what it is, and what was verified."""

    seq: int
    event_id: str | None
    time: datetime | None
    type: str
    source: str
    target: str
    contract: str
    signature: str
    chain: str
    reason: str | None = None
    data: tuple[tuple[str, str], ...] | None = None
    """The event's data, personal fields masked; None when it did not decode."""
    in_record: bool = False

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class CaseReport:
    case_id: str
    source: str
    events: list[EventCheck] = field(default_factory=list)
    record: CaseRecord | None = None
    notes: list[str] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failed(self) -> int:
        return sum(not e.ok for e in self.events)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def digest(self) -> str | None:
        return case_record_digest(self.record) if self.record is not None else None


def case_record_digest(record: CaseRecord) -> str:
    """The record digest of a record holding only this case."""
    body = canonical_json(record.model_dump(mode="json")) + b"\n"
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- building ---------------------------------------------------------------------------------


def _is_personal(info: Any) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(PERSONAL_KEY))


def _text(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _fields(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str]]:
    """The model's fields, flattened, with every field marked personal masked."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        key = f"{prefix}{name}"
        if _is_personal(info):
            yield key, SEALED if isinstance(value, Sealed) else PERSONAL
        elif isinstance(value, BaseModel):
            yield from _fields(value, f"{key}.")
        elif isinstance(value, list | tuple) and any(isinstance(v, BaseModel) for v in value):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _fields(item, f"{key}[{index}].")
                else:
                    yield f"{key}[{index}]", _text(item)
        elif isinstance(value, list | tuple):
            yield key, ", ".join(_text(v) for v in value)
        else:
            yield key, _text(value)


def _undecoded(stored: StoredEvent, reason: str) -> EventCheck:
    """An event that breaks its contract: only what cannot identify a child is kept."""
    doc = stored.document() or {}
    ref = stored.ref()

    def agency(name: str) -> str:
        value = doc.get(name)
        return value if isinstance(value, str) and is_agency_id(value) else "?"

    kind = doc.get("type")
    return EventCheck(
        seq=stored.seq,
        event_id=ref.event_id if ref.event_id and is_uuid7(ref.event_id) else None,
        time=event_time(doc) or stored.stored,
        type=kind if isinstance(kind, str) and _TYPE.fullmatch(kind) else "?",
        source=agency("source"),
        target=agency("target"),
        contract=FAILED,
        signature=UNCHECKED,
        chain=UNCHECKED,
        reason=reason,
    )


async def build_report(
    events: AsyncIterator[StoredEvent],
    registry: Registry,
    *,
    case_id: str,
    source: str,
    anchors: bool = False,
) -> CaseReport:
    """Check and fold ``case_id``'s events (others in ``events`` are passed over).

    ``anchors``: the events come from a partial log (an archive exported ``--from`` a time),
    so the case's first event may carry a ``prevhash``, trusted as the chain's anchor.
    """
    report = CaseReport(case_id=case_id, source=source)
    checker = LogChecker(registry, contiguous_from=None, anchors=anchors)
    record: CaseRecord | None = None
    async for stored in events:
        if stored.subject.rsplit(".", 1)[-1] != case_id:
            continue
        found = checker.check(stored)
        finding = found[0] if found else None
        try:
            event = decode(stored.body, subject=stored.subject)
        except Exception as exc:  # the checker named it: a broken contract, or a hostile body
            reason = finding.message if finding is not None else exc.__class__.__name__
            report.events.append(_undecoded(stored, reason))
            continue
        signature, chain = OK, OK
        if finding is not None:
            try:
                checker.verifier.verify(stored.body, event.envelope)
            except SignatureError:
                signature, chain = FAILED, UNCHECKED
            else:
                chain = FAILED
        # What the live projector applies: signed events the authority policy admits (of a
        # case that was opened, said by whoever may say them).
        applied = signature == OK
        if applied:
            try:
                record = apply(record, event, stored.seq)
            except AuthorityRefused:
                applied = False
        report.events.append(_checked(stored, event, signature, chain, finding, applied))
    report.record = record
    if record is not None and record.erasure is not None:
        # The case's keys are destroyed: what was sealed is gone for good, in every copy.
        report.events = [
            e
            if e.data is None
            else replace(e, data=tuple((k, ERASED if v == SEALED else v) for k, v in e.data))
            for e in report.events
        ]
        report.notes.append(
            f"the case's personal data was erased at stream seq {record.erasure.seq} by "
            f"{record.erasure.by} ({label(record.erasure.officer_role)}, "
            f"{cited(record.erasure.legal_basis)}; {label(record.erasure.reason)}): "
            "its sealed fields are unreadable everywhere; the events and their verification "
            "stand"
        )
    if checker.anchored:
        report.notes.append(
            "the case began before this partial log: its chain is anchored at its first event "
            "here, whose prevhash is trusted, not checked"
        )
    return report


def _checked(
    stored: StoredEvent,
    event: Event,
    signature: str,
    chain: str,
    finding: Any,
    applied: bool,
) -> EventCheck:
    return EventCheck(
        seq=stored.seq,
        event_id=event.id,
        time=event.time,
        type=event.type,
        source=event.source,
        target=event.target,
        contract=OK,
        signature=signature,
        chain=chain,
        reason=finding.message if finding is not None else None,
        data=tuple(_fields(event.data)),
        in_record=applied,
    )


# -- rendering --------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #c9ced8; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
dl.head { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.head dt { font-weight: 600; } dl.head dd { margin: 0; }
.ok { color: #11702f; font-weight: 600; } .failed { color: #b3122a; font-weight: 700; }
.muted { color: #6b7280; } .personal { color: #6b7280; font-style: italic; }
code { font-size: .9em; word-break: break-all; }
.banner { padding: .5em 1em; border-radius: 4px; margin: 1em 0; }
.banner.ok { background: #e3f5e8; } .banner.failed { background: #fbe4e7; }
"""

LANE_H = 46
LABEL_W = 150
WIDTH = 1100
TOP = 34
PAD = 24


def _e(value: object) -> str:
    # Controls and bidirectional overrides escaped first: html.escape leaves them, and
    # a U+202E in an office's name would reorder the page around it.
    return html.escape(printable("" if value is None else str(value)), quote=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min")
    return " ".join(parts)


def _status(value: str) -> str:
    if value == OK:
        return '<span class="ok">OK</span>'
    if value == FAILED:
        return '<span class="failed">FAILED</span>'
    return f'<span class="muted">{_e(value)}</span>'


def _owner_bands(
    record: CaseRecord | None, end: datetime
) -> list[tuple[str, datetime, datetime, int, int | None]]:
    """(owner, from, to, from seq, to seq) per stretch of ownership, from the timeline."""
    bands: list[tuple[str, datetime, datetime, int, int | None]] = []
    if record is None:
        return bands
    current: tuple[str, datetime, int] | None = None
    for step in record.timeline:
        if step.owner is None or (current is not None and current[0] == step.owner):
            continue
        if current is not None:
            bands.append((current[0], current[1], step.time, current[2], step.seq))
        current = (step.owner, step.time, step.seq)
    if current is not None:
        bands.append((current[0], current[1], max(end, current[1]), current[2], None))
    return bands


def _lanes(report: CaseReport) -> list[str]:
    lanes: list[str] = []

    def add(agency: str | None) -> None:
        if agency and agency not in (BROADCAST, "?") and agency not in lanes:
            lanes.append(agency)

    record = report.record
    if record is not None:
        add(record.opened_by)
    for check in report.events:
        add(check.source)
        add(check.target)
    if record is not None:
        for handoff in record.handoffs:
            add(handoff.requester)
            add(handoff.asked)
        for step in record.timeline:
            add(step.owner)
    return lanes


def _svg(report: CaseReport) -> str:
    lanes = _lanes(report)
    record = report.record
    times = [c.time for c in report.events if c.time is not None]
    if record is not None:
        for h in record.handoffs:
            times += [t for t in (h.requested_at, h.accepted_at, h.closed_at) if t is not None]
    if not lanes or not times:
        return '<p class="muted">No event with a readable time: no timeline.</p>'
    start, end = min(times), max(times)
    span = (end - start).total_seconds() or 3600.0
    inner = WIDTH - LABEL_W - 2 * PAD
    height = TOP + LANE_H * len(lanes) + 10

    def x(t: datetime) -> float:
        return round(LABEL_W + PAD + (t - start).total_seconds() / span * inner, 1)

    def y(agency: str) -> float:
        return TOP + LANE_H * lanes.index(agency) + LANE_H / 2

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of case '
        f'{_e(report.case_id)}" font-family="system-ui, sans-serif" font-size="12">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#3b4a6b"/></marker></defs>',
    ]
    for index, agency in enumerate(lanes):
        top = TOP + LANE_H * index
        fill = "#f7f8fb" if index % 2 == 0 else "#ffffff"
        out.append(
            f'<g class="lane" data-agency="{_e(agency)}">'
            f'<rect x="0" y="{top}" width="{WIDTH}" height="{LANE_H}" fill="{fill}"/>'
            f'<text x="8" y="{top + LANE_H / 2 + 4}" font-weight="600">{_e(agency)}</text>'
            f'<line x1="{LABEL_W}" y1="{y(agency)}" x2="{WIDTH - 8}" y2="{y(agency)}" '
            'stroke="#c9ced8"/></g>'
        )
    for tick in range(5):
        t = start + timedelta(seconds=span * tick / 4)
        out.append(
            f'<line x1="{x(t)}" y1="{TOP - 4}" x2="{x(t)}" y2="{height - 10}" '
            'stroke="#e3e6ec" stroke-dasharray="2,3"/>'
            f'<text x="{x(t)}" y="{TOP - 10}" text-anchor="middle" fill="#6b7280">'
            f"{_e(t.astimezone(UTC).strftime('%Y-%m-%d %H:%M'))}</text>"
        )
    for owner, since, until, _, _ in _owner_bands(record, end):
        if owner not in lanes:
            continue
        left, right = x(since), max(x(until), x(since) + 3)
        out.append(
            f'<rect class="owner" x="{left}" y="{y(owner) - LANE_H / 2 + 5}" '
            f'width="{round(right - left, 1)}" height="{LANE_H - 10}" fill="#dbe7ff" '
            f'stroke="#9db5e8" rx="3"><title>{_e(owner)} owns the case from '
            f"{_e(_when(since))}</title></rect>"
        )
    if record is not None:
        for h in record.handoffs:
            if h.requested_at is None or h.asked is None or h.asked not in lanes:
                continue
            if h.requester not in lanes:
                continue
            x1, y1, y2 = x(h.requested_at), y(h.requester), y(h.asked)
            y2 = y2 - 7 if y2 > y1 else y2 + 7
            out.append(
                f'<line class="handoff" x1="{x1}" y1="{y1}" x2="{x1}" y2="{y2}" '
                'stroke="#3b4a6b" stroke-width="1.5" marker-end="url(#arrow)">'
                f"<title>{_e(h.handoff or 'hand-off')} {_e(h.what or '')}: {_e(h.requester)} "
                f"asks {_e(h.asked)} ({_e(h.status)})</title></line>"
            )
            answered = h.closed_at or h.accepted_at
            if answered is not None:
                out.append(
                    f'<line x1="{x1}" y1="{y(h.asked) + 12}" x2="{x(answered)}" '
                    f'y2="{y(h.asked) + 12}" stroke="#3b4a6b" stroke-width="2" '
                    'stroke-opacity=".35"/>'
                )
    for check in report.events:
        if check.time is None or check.source not in lanes:
            continue
        colour = "#11702f" if check.ok else "#b3122a"
        verdict = "OK" if check.ok else f"FAILED: {check.reason}"
        out.append(
            f'<circle class="event" cx="{x(check.time)}" cy="{y(check.source)}" r="6" '
            f'fill="{colour}" stroke="#ffffff" stroke-width="1.5"><title>seq {check.seq} '
            f"{_e(check.type)} {_e(check.source)} → {_e(check.target)} "
            f"{_e(_when(check.time))}: {_e(verdict)}</title></circle>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _data(check: EventCheck) -> str:
    if check.data is None:
        return '<span class="personal">[not decoded: data not shown]</span>'
    parts = []
    for key, value in check.data:
        shown = f'<span class="personal">{_e(value)}</span>' if value in _MASKS else _e(value)
        parts.append(f"<code>{_e(key)}</code>={shown}")
    return "<br>".join(parts) or '<span class="muted">—</span>'


def render_html(report: CaseReport) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script)."""
    record = report.record
    end = max((c.time for c in report.events if c.time is not None), default=report.generated_at)
    head: list[tuple[str, str]] = [
        ("case", f"<code>{_e(report.case_id)}</code>"),
        ("situation", _e(record.situation if record else None)),
        ("jurisdiction", _e(record.jurisdiction if record else None)),
        (
            "opened",
            f"by {_e(record.opened_by)} at {_e(_when(record.opened_at))}" if record else "—",
        ),
        (
            "status",
            (
                _e(record.status)
                + (
                    f" ({_e(record.closed_reason)}, {_e(_when(record.closed_at))})"
                    if record.closed_at
                    else ""
                )
            )
            if record
            else '<span class="failed">no record: the case was never (validly) opened</span>',
        ),
        ("owner now", _e(record.owner if record else None)),
        ("whereabouts", _e(record.whereabouts if record else None)),
        ("record digest", f"<code>{_e(report.digest or '—')}</code>"),
        ("read from", _e(report.source)),
        ("generated", _e(_when(report.generated_at))),
    ]
    banner = (
        f'<div class="banner ok"><span class="ok">OK</span>: all {len(report.events)} events '
        "verified (contract, signature, hash chain)</div>"
        if report.ok
        else f'<div class="banner failed"><span class="failed">FAILED</span>: {report.failed} '
        f"of {len(report.events)} events did not verify; see the events below</div>"
    )
    handoffs = [
        [
            _e(h.handoff or "?"),
            _e(h.what or "—"),
            _e(h.requester),
            _e(h.asked or "?"),
            _e(h.status) + (' <span class="failed">overdue</span>' if h.overdue else ""),
            _e(_when(h.requested_at)),
            _e(_when(h.accepted_at)),
            _e(_when(h.closed_at)),
            _e(_duration(h.duration_s)),
        ]
        for h in (record.handoffs if record else ())
    ]
    owners = [
        [_e(owner), _e(_when(since)), _e(_when(until)) if to_seq is not None else "now", _e(seq)]
        for owner, since, until, seq, to_seq in _owner_bands(record, end)
    ]
    documents = [
        [
            _e(d.kind),
            _e(d.issued_by),
            _e(label(d.issuing_office)),
            _e(d.issued_on),
            _e(_when(d.at)),
        ]
        for d in (record.documents if record else ())
    ]
    events = [
        [
            _e(c.seq),
            _e(_when(c.time)),
            _e(c.type),
            f"{_e(c.source)} → {_e(c.target)}",
            _status(c.contract),
            _status(c.signature),
            _status(c.chain),
            (
                '<span class="ok">OK</span>'
                if c.ok
                else f'<span class="failed">FAILED</span>: {_e(c.reason)}'
            ),
            "yes" if c.in_record else '<span class="muted">no</span>',
            _data(c),
            f"<code>{_e(c.event_id or '?')}</code>",
        ]
        for c in report.events
    ]
    notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in report.notes)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>lintas case report {_e(report.case_id)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>Case report <code>{_e(report.case_id)}</code></h1>",
            '<dl class="head">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in head)
            + "</dl>",
            banner,
            notes,
            '<p class="muted">A child\'s identifying data (fields the contracts mark '
            f"x-lintas-personal) is never shown here: {_e(SEALED)} (encrypted), "
            f"{_e(PERSONAL)} (in the clear, before sealing), {_e(ERASED)}.</p>",
            "<h2>Timeline</h2>",
            '<p class="muted">One lane per agency; dots are events on their source agency\'s '
            "lane (green verified, red failed); arrows go from the requesting agency to the "
            "one asked; blue bands show who owned the case.</p>",
            _svg(report),
            "<h2>Hand-offs</h2>",
            _table(
                [
                    "hand-off",
                    "what",
                    "requester",
                    "asked",
                    "status",
                    "requested",
                    "accepted",
                    "closed",
                    "duration",
                ],
                handoffs,
                "No hand-offs.",
            ),
            "<h2>Owners</h2>",
            _table(["owner", "from", "until", "from seq"], owners, "No owner recorded."),
            "<h2>Documents issued</h2>",
            _table(
                ["kind", "issued by", "office", "issued on", "event time"],
                documents,
                "No documents issued.",
            ),
            "<h2>Events and their verification</h2>",
            _table(
                [
                    "seq",
                    "time",
                    "type",
                    "from → to",
                    "contract",
                    "signature",
                    "chain",
                    "verified",
                    "in record",
                    "data",
                    "event id",
                ],
                events,
                "No events.",
            ),
            "</body>",
            "</html>",
            "",
        ]
    )
