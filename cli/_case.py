"""``lintas case show | erase | file | exposed``: one case's record, a child's data erased
or looked at.

``show`` prints the case's coordination record and says whether the record has caught up
with the stream for that case: the events of the case after the record consumer's
tracking position, counted through the case's subject filter as the auditor (an erasure
the record has not read yet still shows the data sealed).

``erase`` publishes ``case.erased`` as the case's owner (signed with the owner's key from
this data directory, by an officer in an authorised role), which destroys the case's data
keys everywhere the key store keeps them; the events stay, signed and chained, with their
ciphertext. ``file`` shows one agency's case file: each personal field it was sent,
opened with the agency's own key where a consent gives it the case's data key.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, replace
from typing import Any

import nats.js.errors
from opentelemetry import trace
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlmodel import Session

from lintas.cli._cases import case_messages, no_such_case
from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.cli.render import case_view
from lintas.consumers import CaseRecord
from lintas.consumers.app import Databases
from lintas.consumers.casefile import knows_case, read_case_file
from lintas.consumers.gate import AgencyGate
from lintas.consumers.projections import RecordCaseRow, load_record
from lintas.contracts import (
    BROADCAST,
    ContractError,
    LintasError,
    case_filter,
    decode,
    gate,
    is_agency_id,
    is_case_id,
)
from lintas.infra.bootstrap import Parts
from lintas.infra.db import Tracking, create_db_engine, ensure_tables
from lintas.infra.keys.exchange import exchange_key_path, load_recipients
from lintas.infra.keys.signing import Verifier, private_key_path, trusted_registry
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.credentials import js_options
from lintas.infra.nats.outage import run_to_end
from lintas.infra.nats.topology import case_keys_stream_config, ensure_stream_config
from lintas.infra.privacy.casekeys import case_keys_for, cases_wrapped_for, list_case_keys
from lintas.infra.settings import Settings
from lintas.producers import publisher_for

__all__ = ["case_erase", "case_exposed", "case_file", "run_case"]


async def _owner(js: Any, settings: Settings, case_id: str) -> tuple[bool, str | None]:
    """Whether the stream holds the case, and its owner as its events say
    (:func:`lintas.contracts.gate.owner_of`), to pick whose key signs by default;
    signatures unchecked: the owner's Publisher decides."""
    owner = None
    cursor = 1
    while True:
        try:
            raw = await js.get_msg(
                settings.stream, seq=cursor, subject=case_filter(case_id), next=True
            )
        except nats.js.errors.NotFoundError:  # the end of the case
            return cursor > 1, owner
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
            found, owner = await _owner(js, settings, case_id)
            if not found:  # nothing to erase, whoever asks
                return no_such_case(case_id, f"stream {settings.stream}")
            agency = args.agency or owner
            if agency is None:
                fail(
                    f"[red]case {case_id} names no owner in stream {settings.stream}: say "
                    "who erases it (--agency)[/red]"
                )
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
                            "legal_basis": args.legal_basis or ["UU 27/2022 Pasal 8"],
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
        known = bool(fields) or knows_case(engine, agency, case_id)
    finally:
        engine.dispose()
    if not known:
        return no_such_case(case_id, f"{agency}'s projection")
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
        print_json(console, {"agency": agency, "cases": rows})
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


_BEHIND_COUNTED = 1000  # events of one case counted behind the record, at most


@dataclass(frozen=True, slots=True)
class _Freshness:
    """Where the record stands for one case against the stream: ``behind`` events of the
    case after the record's tracking position (None: not compared, ``error`` says why)."""

    stream: str
    position: int
    in_stream: bool | None = None
    behind: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "record_position": self.position,
            "compared": self.behind is not None,
            "behind": self.behind,
            "behind_at_least": self.behind is not None and self.behind >= _BEHIND_COUNTED,
            "error": self.error,
        }

    def line(self, case_id: str) -> Text:
        if self.behind is None:
            return Text(
                f"Not compared with stream {self.stream} ({self.error}): the record may be "
                "behind it.",
                style="yellow",
            )
        if self.behind == 0:
            return Text(
                f"The record is up to date with stream {self.stream} for this case (it has "
                f"read the stream up to seq {self.position}).",
                style="dim",
            )
        count = f"{self.behind}+" if self.behind >= _BEHIND_COUNTED else str(self.behind)
        return Text(
            f"The record is behind stream {self.stream}: {count} event(s) of case {case_id} "
            f"after seq {self.position} are not in it yet, so what it shows may be out of "
            "date (an erasure, a withdrawn consent). Is the record running (`lintas up`, "
            "`lintas run record`)?",
            style="bold yellow",
        )


def _read_record(settings: Settings, case_id: str) -> tuple[CaseRecord | None, int]:
    """The case's record, and the position up to which the record consumer has read the
    stream (0: never ran)."""
    databases = Databases(settings)
    try:
        engine, _ = databases.for_consumer("record")
        # An empty record (nothing run yet) reads as "no such case", not as an SQL error.
        ensure_tables(engine, RecordCaseRow)
        with Session(engine) as session:
            record = load_record(session, case_id)
            tracking = session.get(Tracking, ("record", settings.stream))
    finally:
        databases.dispose()
    return record, tracking.position if tracking is not None else 0


async def _freshness(settings: Settings, case_id: str, position: int) -> _Freshness:
    fresh = _Freshness(settings.stream, position)
    if settings.nats_url is None and not settings.nats_store_dir.exists():
        # Nothing ever ran on this data directory: no stream, no event of any case.
        return replace(fresh, in_stream=False, error=f"no event store in {settings.data_dir}")
    try:
        async with open_bus(settings) as url:
            # The auditor reads the log and may change nothing.
            nc = await connect(url, "lintas-case-show", settings=settings, identity="auditor")
            try:
                js = nc.jetstream()
                behind = await case_messages(
                    js, settings.stream, case_id, after=position, at_most=_BEHIND_COUNTED
                )
                in_stream = behind > 0 or (
                    position > 0 and await case_messages(js, settings.stream, case_id, at_most=1)
                )
            finally:
                await nc.close()
    except LintasError as exc:
        return replace(fresh, error=str(exc))
    return replace(fresh, in_stream=bool(in_stream), behind=behind)


async def _case_show(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id: str = args.case_id
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    record, position = _read_record(settings, case_id)
    fresh = await _freshness(settings, case_id, position)
    if record is None:
        if fresh.in_stream is False:
            return no_such_case(case_id, f"stream {settings.stream}")
        if fresh.in_stream is None:
            fail(
                f"[red]no case {case_id} in the coordination record, and stream "
                f"{settings.stream} could not be asked: {fresh.error}[/red]",
                highlight=False,
            )
        elif fresh.behind:
            fail(
                f"[red]case {case_id} is in stream {settings.stream}, not yet in the "
                f"coordination record: the record is {fresh.behind} event(s) of it behind "
                "(is it running? `lintas up`, `lintas run record`)[/red]",
                highlight=False,
            )
        else:
            fail(
                f"[red]case {case_id} is in stream {settings.stream}, but the coordination "
                "record, which has read past it, holds nothing of it: its opening was "
                "refused or quarantined (`lintas dlq list`)[/red]",
                highlight=False,
            )
        return 1
    if args.json:
        print_json(
            console,
            {
                "case_id": case_id,
                "record": record.model_dump(mode="json"),
                "freshness": fresh.to_json(),
            },
        )
        return 0
    console.print(case_view(record))
    console.print(fresh.line(case_id))
    return 0


def run_case(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.case_command == "erase":
        return run_to_end(case_erase(settings, args, console))
    if args.case_command == "file":
        return run_to_end(case_file(settings, args, console))
    if args.case_command == "exposed":
        return run_to_end(case_exposed(settings, args, console))
    return run_to_end(_case_show(settings, args, console))
