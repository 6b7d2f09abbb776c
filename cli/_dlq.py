"""``lintas dlq list | show ID | retry ID|--all``: the quarantine, for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.consumers.app import Databases
from lintas.consumers.quarantine import QuarantineEntry, delete_entry, get_entry, list_entries
from lintas.consumers.retry import RetryOutcome, retry_entry
from lintas.contracts.redaction import UNKNOWN, printable, printable_json, redacted_event
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import Verifier, load_registry, trusted_registry
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.topology import agency_of
from lintas.infra.observability.telemetry import configure_tracing
from lintas.infra.observability.tracing import OUTCOME, process_span, tracer_for
from lintas.infra.settings import Settings

__all__ = ["dlq_list", "dlq_retry", "dlq_show", "redacted_body", "run_dlq"]


async def dlq_list(console: Console, js: Any, settings: Settings, as_json: bool) -> int:
    entries = [entry async for entry in list_entries(js, settings)]
    if as_json:
        print_json(console, [_summary(e) for e in entries])
        return 0
    table = Table(title=f"Quarantine: {len(entries)} entries", title_justify="left")
    for column in ("id", "consumer", "seq", "subject", "tries", "quarantined", "reason"):
        table.add_column(column)
    for e in entries:
        # What the quarantine holds came off the wire: text, never markup.
        table.add_row(
            str(e.id),
            Text(printable(e.consumer)),
            str(e.stream_seq),
            Text(printable(e.subject)),
            str(e.attempts),
            e.quarantined_at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(printable(e.reason)),
        )
    console.print(table)
    return 0


def _summary(entry: QuarantineEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "consumer": entry.consumer,
        "stream": entry.stream,
        "stream_seq": entry.stream_seq,
        "subject": entry.subject,
        "attempts": entry.attempts,
        "reason": entry.reason,
        "quarantined_at": entry.quarantined_at.isoformat(),
    }


# Headers a lintas publisher or JetStream sets; any other is a publisher's own, shown masked.
_KNOWN_HEADERS = ("traceparent", "tracestate")


def _header(name: str, value: str) -> str:
    known = name.startswith("Nats-") or name in _KNOWN_HEADERS
    return value if known else UNKNOWN


def _redacted(body: bytes) -> Any:
    """The entry's body as it may be shown (lintas.contracts.redaction), or a note.

    A body that does not parse may still hold a child's data, so only its size is shown.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return f"<{len(body)} bytes, not JSON: not shown>"
    if not isinstance(doc, dict):
        return f"<{len(body)} bytes of JSON, not an object: not shown>"
    return redacted_event(doc)


def redacted_body(body: bytes) -> str:
    """The entry's body for an operator's screen: personal fields and fields the contract
    does not know masked, every string printable."""
    shown = _redacted(body)
    return printable(shown) if isinstance(shown, str) else printable_json(shown)


async def dlq_show(
    console: Console, js: Any, settings: Settings, entry_id: int, as_json: bool = False
) -> int:
    entry = await get_entry(js, settings, entry_id)
    if entry is None:
        fail(f"[red]no quarantine entry {entry_id}[/red]")
        return 1
    headers = {name: _header(name, value) for name, value in entry.original_headers.items()}
    if as_json:
        doc = {**_summary(entry), "headers": headers, "body": _redacted(entry.body)}
        print_json(console, doc)
        return 0
    for key, value in _summary(entry).items():
        _line(console, key, str(value))
    for key, value in headers.items():
        _line(console, f"header {key}", value)
    console.print(redacted_body(entry.body), highlight=False, markup=False, soft_wrap=True)
    return 0


def _line(console: Console, key: str, value: str) -> None:
    console.print(
        Text.assemble((printable(key), "bold"), ": ", printable(value)),
        highlight=False,
        soft_wrap=True,
    )


async def dlq_retry(
    console: Console,
    js: Any,
    settings: Settings,
    entry_id: int | None,
    tracer_provider: TracerProvider | None = None,
) -> int:
    """Apply quarantined entries again; each retry is a CONSUMER span of its event's trace
    (``lintas.outcome`` applied or kept), so the trace shows when the event was applied."""
    if entry_id is None:
        entries = [entry async for entry in list_entries(js, settings)]
    else:
        found = await get_entry(js, settings, entry_id)
        if found is None:
            fail(f"[red]no quarantine entry {entry_id}[/red]")
            return 1
        entries = [found]
    # What the consumers trust, as it is now: a key published since lets a message through.
    try:
        registry = await trusted_registry(settings, js)
    except BusUnavailable as exc:
        # An authorization written before the operator could read the key bucket, say:
        # the data dir's registry alone keeps more entries, never applies a forgery.
        console.print(
            f"[yellow]cannot read the public-key bucket ({exc}); checking signatures "
            "against this data dir's registry only. The bus may be down, or the operator "
            "may not read KV_LINTAS_KEYS yet: then render the server's authorization "
            "again (`lintas infra config`, DEPLOYMENT.md)[/yellow]",
            highlight=False,
        )
        registry = load_registry(settings)
    verifier = Verifier(registry)
    tracer = tracer_for(tracer_provider, "lintas.cli")
    databases = Databases(settings)
    failed = dropped = 0
    try:
        for entry in entries:
            started = time.time_ns()
            outcome = retry_entry(entry, databases, verifier=verifier)
            _retry_span(tracer, entry, outcome, started)
            if outcome.applied or outcome.superseded:
                assert entry.id is not None
                await delete_entry(js, settings, entry.id)
            else:
                failed += 1
            dropped += outcome.superseded
            mark = (
                "[green]retried[/green]"
                if outcome.applied
                else "[yellow]dropped[/yellow]"
                if outcome.superseded
                else "[red]kept[/red]"
            )
            console.print(
                f"{mark} {entry.id} ({entry.consumer} seq {entry.stream_seq}): {outcome.detail}",
                highlight=False,
            )
    finally:
        databases.dispose()
    also = f", {dropped} dropped (from before a rebuild)" if dropped else ""
    console.print(f"{len(entries) - failed - dropped} retried{also}, {failed} still quarantined")
    return 1 if failed else 0


def _retry_span(
    tracer: Tracer, entry: QuarantineEntry, outcome: RetryOutcome, started: int
) -> None:
    span = process_span(
        tracer,
        consumer=entry.consumer,
        agency=agency_of(entry.consumer),
        envelope=outcome.event.envelope if outcome.event is not None else None,
        subject=entry.subject,
        stream_seq=entry.stream_seq,
        start_time=started,
        operation="retry",
    )
    span.set_attribute(
        OUTCOME,
        "applied" if outcome.applied else "dropped" if outcome.superseded else "kept",
    )
    span.end()


async def run_dlq(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-dlq", settings=settings, identity="operator")
        try:
            js = nc.jetstream()
            if args.dlq_command == "list":
                return await dlq_list(console, js, settings, args.json)
            if args.dlq_command == "show":
                return await dlq_show(console, js, settings, args.id, args.json)
            tracing = configure_tracing(settings, "lintas-dlq")
            try:
                return await dlq_retry(
                    console, js, settings, None if args.all else args.id, tracing
                )
            finally:
                # The retries' spans, written before the command ends.
                await asyncio.to_thread(tracing.shutdown)
        finally:
            await nc.close()
