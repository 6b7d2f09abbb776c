"""``lintas trace CASE [--all]``: a case's spans as a waterfall in the terminal.

Reads the local span file (``<data_dir>/traces/spans.jsonl``, written when no
``LINTAS_OTLP_ENDPOINT`` is set), keeps the spans whose ``lintas.case.id`` is the case,
and draws each of its traces as a waterfall, in the order the spans began: who (agency,
or consumer), what (publish / process / create, event type, target), when (from the
trace's start), for how long, and how long it waited for its cause:

* a process span: since its event was stored (the publish span ended): time on the bus;
* a publish span inside a process span: since the agency took the cause up: the agency's
  reaction time;
* a relay's publish span under an outbox ``create``: time in the outbox.

By default, process spans that led to nothing (projections, broadcasts read and filed) are
left out, unless they failed; ``--all`` shows every span; ``--json`` gives every span, by
trace. A case with no span here is looked for in the log: none there either is "no such
case" (:data:`~lintas.cli._cases.NO_SUCH_CASE`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lintas.cli._cases import case_messages, no_such_case
from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.contracts import LintasError, is_case_id
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.outage import run_to_end
from lintas.infra.observability.telemetry import otlp_endpoint, read_span_file, traces_exporters
from lintas.infra.observability.tracing import (
    AGENCY,
    CASE_ID,
    CONSUMER,
    EVENT_TYPE,
    OUTCOME,
    TARGET,
)
from lintas.infra.settings import Settings

__all__ = ["case_spans", "run_trace", "traces_json", "waterfall"]

_BAR = 32


@dataclass
class _Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start: int
    end: int
    attributes: dict[str, Any]
    failed: bool
    links: list[str]
    children: list[_Span] = field(default_factory=list)

    @classmethod
    def of(cls, record: dict[str, Any]) -> _Span | None:
        try:
            start = int(record["start_time_unix_nano"])
            end = int(record.get("end_time_unix_nano") or start)
            return cls(
                trace_id=str(record["trace_id"]),
                span_id=str(record["span_id"]),
                parent_id=record.get("parent_span_id"),
                name=str(record.get("name", "?")),
                kind=str(record.get("kind", "INTERNAL")),
                start=start,
                end=max(end, start),
                attributes=dict(record.get("attributes") or {}),
                failed=record.get("status_code") == "ERROR",
                links=[str(link.get("trace_id")) for link in record.get("links") or []],
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def operation(self) -> str:
        return str(self.attributes.get("messaging.operation.name") or self.name)


def case_spans(records: Iterable[dict[str, Any]], case_id: str) -> list[_Span]:
    """The spans of ``case_id`` among the span file's records."""
    found = []
    for record in records:
        attributes = record.get("attributes")
        if isinstance(attributes, dict) and attributes.get(CASE_ID) == case_id:
            span = _Span.of(record)
            if span is not None:
                found.append(span)
    return found


def _duration(ns: int | None) -> str:
    if ns is None:
        return ""
    seconds = ns / 1e9
    if seconds < 0.001:
        return f"{ns / 1000:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _waited(span: _Span, parent: _Span | None) -> int | None:
    if parent is None:
        return None
    if span.kind == "CONSUMER" and parent.kind == "PRODUCER":
        return max(0, span.start - parent.end)  # on the bus
    if span.kind == "PRODUCER" and parent.kind == "CONSUMER":
        return max(0, span.start - parent.start)  # the agency reacting
    if span.kind == "PRODUCER" and parent.kind == "PRODUCER":
        return max(0, span.start - parent.end)  # in the outbox
    return None


def _who(span: _Span) -> str:
    return str(span.attributes.get(AGENCY) or span.attributes.get(CONSUMER) or "-")


def _what(span: _Span) -> Text:
    event = span.attributes.get(EVENT_TYPE)
    operation = span.operation
    if event is None:
        text = Text(span.name)
    elif span.kind == "PRODUCER":
        text = Text.assemble((operation, "cyan"), f" {event} → {span.attributes.get(TARGET)}")
    elif span.kind == "CONSUMER":
        consumer = span.attributes.get(CONSUMER)
        text = Text.assemble((operation, "green"), f" {event}", (f" ({consumer})", "dim"))
    else:
        text = Text(f"{span.name} {event}")
    if span.failed:
        text.append(f"  {span.attributes.get(OUTCOME) or 'failed'}", style="bold red")
    elsewhere = sorted({t for t in span.links if t != span.trace_id})
    if elsewhere:
        text.append(f"  links to trace {', '.join(elsewhere)}", style="dim")
    return text


def _bar(span: _Span, first: int, total: int) -> Text:
    scale = _BAR / total if total else 0.0
    offset = min(_BAR - 1, int((span.start - first) * scale))
    length = max(1, min(_BAR - offset, round((span.end - span.start) * scale)))
    style = "red" if span.failed else {"PRODUCER": "cyan", "CONSUMER": "green"}.get(span.kind)
    return Text.assemble(" " * offset, ("█" * length, style or "magenta"))


def _tree(spans: list[_Span]) -> list[_Span]:
    """The roots of one trace, children attached, all in start order."""
    by_id = {s.span_id: s for s in spans}
    roots = []
    for span in sorted(spans, key=lambda s: (s.start, s.span_id)):
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if parent is None:
            roots.append(span)
        else:
            parent.children.append(span)
    return roots


def _shown(span: _Span, everything: bool) -> bool:
    """A process span that led to nothing is noise, unless it failed."""
    return everything or span.kind != "CONSUMER" or span.failed or bool(span.children)


def _walk(
    span: _Span, parent: _Span | None, depth: int, everything: bool
) -> Iterator[tuple[_Span, _Span | None, int]]:
    yield span, parent, depth
    for child in span.children:
        if _shown(child, everything):
            yield from _walk(child, span, depth + 1, everything)


def waterfall(spans: list[_Span], *, everything: bool = False) -> list[RenderableType]:
    """One table per trace, live traces in the order they began."""
    traces: dict[str, list[_Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    out: list[RenderableType] = []
    hidden = 0
    for trace_id, members in sorted(traces.items(), key=lambda t: min(s.start for s in t[1])):
        first = min(s.start for s in members)
        last = max(s.end for s in members)
        began = datetime.fromtimestamp(first / 1e9, UTC).isoformat(timespec="milliseconds")
        head = Text.assemble(
            ("trace ", "bold"),
            (trace_id, "bold cyan"),
            f"  ·  {len(members)} spans  ·  {_duration(last - first)}  ·  began {began}",
        )
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column, justify in (
            ("agency", "left"),
            ("span", "left"),
            ("start", "right"),
            ("duration", "right"),
            ("waited", "right"),
            ("", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=True, min_width=len(column))  # type: ignore[arg-type]
        rows = sorted(
            (row for root in _tree(members) for row in _walk(root, None, 0, everything)),
            key=lambda row: (row[0].start, row[2]),
        )
        hidden += len(members) - len(rows)
        for span, parent, _depth in rows:
            # A hand-off chain runs dozens deep: the order and the bars show the nesting.
            label = Text("↳ " if span.kind == "CONSUMER" else "")
            label.append_text(_what(span))
            table.add_row(
                _who(span),
                label,
                f"+{_duration(span.start - first)}" if span.start > first else "0",
                _duration(span.end - span.start),
                _duration(_waited(span, parent)),
                _bar(span, first, last - first),
            )
        out.extend([head, table, Text("")])
    if hidden:
        spans_were = (
            "process span that led to nothing is"
            if hidden == 1
            else ("process spans that led to nothing are")
        )
        out.append(
            Text(
                f"{hidden} {spans_were} not shown (projections, broadcasts filed); "
                "--all shows every span",
                style="dim",
            )
        )
    return out


def _span_json(span: _Span) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": span.start,
        "end_time_unix_nano": span.end,
        "failed": span.failed,
        "attributes": span.attributes,
        "links": span.links,
    }


def traces_json(case_id: str, path: Path, spans: list[_Span]) -> dict[str, Any]:
    """``lintas trace --json``: the case's spans (every one), grouped by trace, each
    trace's spans in the order they began."""
    traces: dict[str, list[_Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    ordered = sorted(traces.items(), key=lambda t: min(s.start for s in t[1]))
    return {
        "case_id": case_id,
        "span_file": str(path),
        "traces": [
            {
                "trace_id": trace_id,
                "spans": [
                    _span_json(s) for s in sorted(members, key=lambda s: (s.start, s.span_id))
                ],
            }
            for trace_id, members in ordered
        ],
    }


async def _in_log(settings: Settings, case_id: str) -> bool | None:
    """Whether the log holds the case (asked as the auditor); None when it cannot be asked."""
    if settings.nats_url is None and not settings.nats_store_dir.exists():
        return None  # no log here to ask (spans may come from processes elsewhere)
    try:
        async with open_bus(settings) as url:
            nc = await connect(url, "lintas-trace", settings=settings, identity="auditor")
            try:
                return await case_messages(nc.jetstream(), settings.stream, case_id, at_most=1) > 0
            finally:
                await nc.close()
    except LintasError:
        return None


def run_trace(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id: str = args.case_id
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    path: Path = settings.span_file
    found = path.exists() or path.with_name(path.name + ".1").exists()
    spans = case_spans(read_span_file(path, containing=case_id), case_id) if found else []
    # The span file is no record of which cases exist: the log is.
    if not spans and run_to_end(_in_log(settings, case_id)) is False:
        return no_such_case(case_id, f"stream {settings.stream}")
    if not found:
        exporters = traces_exporters(settings)
        where = (
            f"spans go to the collector at {otlp_endpoint(settings)}: "
            f"look for lintas.case.id={case_id} there"
            if "otlp" in exporters
            else "tracing is off (OTEL_TRACES_EXPORTER)"
            if not exporters
            else "nothing has been traced with this data directory yet"
        )
        fail(f"[red]no span file at {path}: {where}[/red]", highlight=False, soft_wrap=True)
        return 1
    if not spans:
        fail(
            f"[red]no spans of case {case_id} in {path}[/red] (spans older than "
            f"{path.name}.1 are dropped, and processes exporting to a collector write none here)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if args.json:
        print_json(console, traces_json(case_id, path, spans))
        return 0
    console.print(
        Group(
            Text.assemble(("Case ", "bold"), (case_id, "bold cyan"), f"  ·  spans from {path}"),
            *waterfall(spans, everything=args.all),
        )
    )
    return 0
