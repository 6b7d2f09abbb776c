"""``lintas case erase`` and ``lintas case file``: a child's data, erased or looked at.

``erase`` publishes ``case.erased`` as the case's owner (signed with the owner's key from
this data directory, by an officer in an authorised role), which destroys the case's data
keys everywhere the key store keeps them; the events stay, signed and chained, with their
ciphertext. ``file`` shows one agency's case file: each personal field it was sent,
opened with the agency's own key where a consent gives it the case's data key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import nats.js.errors
from opentelemetry import trace
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlmodel import Session

from lintas.cli._errors import fail
from lintas.cli.render import case_view
from lintas.consumers.app import Databases
from lintas.consumers.casefile import read_case_file
from lintas.consumers.gate import AgencyGate
from lintas.consumers.projections import RecordCaseRow, load_record
from lintas.contracts import (
    BROADCAST,
    ContractError,
    case_filter,
    decode,
    gate,
    is_agency_id,
    is_case_id,
)
from lintas.infra.bootstrap import Parts
from lintas.infra.db import create_db_engine, ensure_tables
from lintas.infra.keys.exchange import exchange_key_path, load_recipients
from lintas.infra.keys.signing import Verifier, private_key_path, trusted_registry
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.credentials import js_options
from lintas.infra.nats.topology import case_keys_stream_config, ensure_stream_config
from lintas.infra.privacy.casekeys import case_keys_for, cases_wrapped_for, list_case_keys
from lintas.infra.settings import Settings
from lintas.producers import publisher_for

__all__ = ["case_erase", "case_exposed", "case_file", "run_case"]


async def _owner(js: Any, settings: Settings, case_id: str) -> str | None:
    """The case's owner as its events say (:func:`lintas.contracts.gate.owner_of`), to pick
    whose key signs by default; signatures unchecked: the owner's Publisher decides."""
    owner = None
    cursor = 1
    while True:
        try:
            raw = await js.get_msg(
                settings.stream, seq=cursor, subject=case_filter(case_id), next=True
            )
        except nats.js.errors.NotFoundError:  # the end of the case
            return owner
        with contextlib.suppress(ContractError):
            owner = gate.owner_after(owner, decode(raw.data or b"", subject=raw.subject))
        cursor = int(raw.seq or 0) + 1


async def case_erase(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id: str = args.case_id
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    async with open_bus(settings) as url:
        # The platform finds the owner and checks the key store; the owner publishes.
        nc = await connect(url, "lintas-erase", settings=settings, identity="platform")
        try:
            js = nc.jetstream()
            await ensure_stream_config(js, case_keys_stream_config(settings))
            agency = args.agency or await _owner(js, settings, case_id)
            if agency is None:
                fail(f"[red]no case {case_id} in stream {settings.stream}[/red]")
                return 1
            if not private_key_path(settings, agency).exists():
                fail(
                    f"[red]{agency} owns case {case_id}, and its signing key is not in "
                    f"{settings.data_dir / 'keys'}: erase it from {agency}'s system[/red]"
                )
                return 1
            verifier = Verifier(await trusted_registry(settings, js))
            # Published as the owner, connected as itself (on a bus with permissions it may
            # publish only so; the read service then erases the keys for it).
            async with open_bus(settings, agencies=[agency]) as agency_url:
                parts = Parts(settings, agency_url, tracer_provider=trace.get_tracer_provider())
                await parts.recipients(js)  # as the platform reads them
                anc = await parts.connect(agency, name=f"lintas-erase-{agency}")
                try:
                    publisher = await publisher_for(parts, anc, agency, verifier)
                    published = await publisher.publish(
                        "case.erased",
                        {
                            "officer_role": args.role,
                            "requested_by": args.requested_by,
                            "legal_basis": args.legal_basis,
                            "reason": args.reason,
                        },
                        case_id=case_id,
                        target=BROADCAST,
                    )
                finally:
                    await anc.close()
            left = [e for e in await list_case_keys(js, case_id) if e.key.count(".") == 2]
        finally:
            await nc.close()
    if left:  # pragma: no cover - erase_case_keys erases what it lists
        fail(f"[red]{len(left)} data keys of case {case_id} are still stored[/red]")
        return 1
    console.print(
        f"case {case_id} erased by {agency} ({args.role}) as stream seq "
        f"{published.stream_seq}{' (published before)' if published.duplicate else ''}: its "
        "data keys are destroyed in the key store, so every sealed field of the case is "
        "unreadable from the stream, archives and projections; the events keep their "
        "ciphertext, signatures and hash chain (`lintas verify` still holds)",
        highlight=False,
        soft_wrap=True,
    )
    return 0


async def case_file(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id: str = args.case_id
    agency: str = args.agency
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    if not is_agency_id(agency):
        fail(f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]")
        return 2
    engine = create_db_engine(settings.database_url_for(f"worklist-{agency}"))
    try:
        ensure_tables(engine, *AgencyGate.tables)
        # As the agency itself: on a bus with permissions it reads its own wraps, no others.
        async with open_bus(settings, agencies=[agency]) as url:
            nc = await connect(url, "lintas-case-file", settings=settings, identity=agency)
            try:
                js = nc.jetstream(**js_options(agency))
                keys = (
                    case_keys_for(js, settings, agency, load_recipients(settings))
                    if exchange_key_path(settings, agency).exists()
                    else None
                )
                fields = await read_case_file(engine, agency, case_id, keys)
            finally:
                await nc.close()
    finally:
        engine.dispose()
    if not fields:
        console.print(f"{agency}'s case file holds no personal field of case {case_id}")
        return 0
    table = Table(title=f"Case file of {case_id}, as {agency} sees it", title_justify="left")
    for column in ("seq", "event", "from", "field", "value"):
        table.add_column(column)
    for field in fields:
        table.add_row(
            str(field.seq), field.event_type, field.source, field.field, Text(field.shown())
        )
    console.print(table)
    if keys is None:
        console.print(
            f"({agency} has no exchange key in {settings.data_dir / 'keys'}: nothing opens here)"
        )
    return 0


async def case_exposed(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    """What a leak of ``--agency``'s X25519 private key exposes: the cases whose data key is
    wrapped for it now, with the personal fields the record says each case's events carry
    (types and fields, never values), for the breach notification (docs/PRIVACY.md)."""
    agency: str = args.agency
    if not is_agency_id(agency):
        fail(f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]")
        return 2
    async with open_bus(settings) as url:
        # Listing the key store is the platform's (an agency may read its own wraps only).
        nc = await connect(url, "lintas-exposed", settings=settings, identity="platform")
        try:
            wrapped = await cases_wrapped_for(nc.jetstream(), agency)
        finally:
            await nc.close()
    cases = sorted({entry.case_id for entry in wrapped})
    engine = create_db_engine(settings.database_url_for("record"))
    try:
        ensure_tables(engine, RecordCaseRow)
        with Session(engine) as session:
            records = {cid: load_record(session, cid) for cid in cases}
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = []
    for case_id in cases:
        record = records.get(case_id)
        fields = (
            sorted({f"{p.type}.{p.field}" for p in record.personal if p.state == "sealed"})
            if record is not None
            else []
        )
        rows.append(
            {
                "case_id": case_id,
                "owner": record.owner if record else None,
                "status": record.status if record else None,
                "sealed_fields": fields,
                "in_record": record is not None,
            }
        )
    if args.json:
        console.print_json(json.dumps({"agency": agency, "cases": rows}))
        return 0
    table = Table(
        title=f"Cases whose data key is wrapped for {agency}: {len(rows)}", title_justify="left"
    )
    for column in ("case", "owner", "status", "sealed personal fields its events carry"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["case_id"]),
            str(row["owner"] or "-"),
            str(row["status"] or "(not in this record)"),
            ", ".join(row["sealed_fields"]) or "-",
        )
    console.print(table)
    return 0


def _case_show(settings: Settings, case_id: str, console: Console) -> int:
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    databases = Databases(settings)
    try:
        engine, _ = databases.for_consumer("record")
        # An empty record (nothing run yet) reads as "no such case", not as an SQL error.
        ensure_tables(engine, RecordCaseRow)
        with Session(engine) as session:
            record = load_record(session, case_id)
    finally:
        databases.dispose()
    if record is None:
        fail(f"[red]no case {case_id} in the coordination record[/red]")
        return 1
    console.print(case_view(record))
    return 0


def run_case(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.case_command == "erase":
        return asyncio.run(case_erase(settings, args, console))
    if args.case_command == "file":
        return asyncio.run(case_file(settings, args, console))
    if args.case_command == "exposed":
        return asyncio.run(case_exposed(settings, args, console))
    return _case_show(settings, args.case_id, console)
