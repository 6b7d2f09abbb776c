"""``lintas``: argument parsing and the commands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session

from lintas.consumers import (
    Databases,
    attach_agency,
    attach_record,
    create_agency_app,
    create_broker,
    create_record_app,
    load_record,
)
from lintas.consumers.projections import RecordCaseRow
from lintas.contracts import LintasError, is_agency_id, is_case_id
from lintas.contracts.schemadocs import SCHEMA_DIR
from lintas.infra.bus import connect, open_bus
from lintas.infra.db import ensure_tables
from lintas.infra.keys import (
    KEYS_BUCKET,
    Registry,
    Verifier,
    init_agency_key,
    load_registry,
    publish_registry,
    trusted_registry,
)
from lintas.infra.logging import configure_logging
from lintas.infra.platform import declare_platform
from lintas.infra.settings import Settings
from lintas.infra.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    deployment_consumers,
    record_consumer,
)

from ._audit import AUDIT_COMMANDS, add_audit_commands, run_audit
from ._contracts import DEFAULT_ASYNCAPI, contracts_check, contracts_docs
from ._dlq import dlq_list, dlq_retry, dlq_show
from ._report import add_report_command, run_report
from .render import case_view, summary_tables

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lintas",
        description="Interagency referral platform for children of Indonesian migrant workers.",
    )
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run demo cases across every agency, print the record")
    demo.add_argument("--cases", type=int, default=12, help="how many cases (default 12)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the invented children")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most")

    commands.add_parser("up", help="run the bus and every consumer until Ctrl-C")

    run = commands.add_parser("run", help="run one agency's consumer app (or 'record')")
    run.add_argument("agency", help="agency id, e.g. dukcapil, or 'record'")

    contracts = commands.add_parser("contracts", help="schemas, compatibility, AsyncAPI")
    contract_commands = contracts.add_subparsers(
        dest="contracts_command", required=True, metavar="ACTION"
    )
    for name, text in (
        ("check", "fail on stale schemas, edited published versions, missing upcasters"),
        ("docs", "regenerate JSON Schemas, the published lock and the AsyncAPI document"),
    ):
        action = contract_commands.add_parser(name, help=text)
        action.add_argument("--schemas", type=Path, default=SCHEMA_DIR, help="schema directory")
        action.add_argument(
            "--asyncapi", type=Path, default=DEFAULT_ASYNCAPI, help="AsyncAPI document"
        )

    keys = commands.add_parser("keys", help="agencies' signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_init = key_commands.add_parser(
        "init",
        help="make an agency's key pair: private key 0600 in the data dir, public key "
        "in its registry",
    )
    key_init.add_argument("agency")
    key_commands.add_parser("list", help="the public keys this data dir trusts")
    key_commands.add_parser(
        "publish", help="put the registry's public keys into the LINTAS_KEYS JetStream KV bucket"
    )

    dlq = commands.add_parser("dlq", help="the quarantine: messages consumers could not apply")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = dlq_commands.add_parser("list", help="every quarantined message, oldest first")
    listing.add_argument("--json", action="store_true", help="for scripts")
    dlq_show = dlq_commands.add_parser("show", help="one entry, personal fields masked")
    dlq_show.add_argument("id", type=int)
    dlq_retry = dlq_commands.add_parser("retry", help="apply entries again, exactly once")
    which = dlq_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true", help="every entry")

    case = commands.add_parser("case", help="look at one case")
    case_commands = case.add_subparsers(dest="case_command", required=True, metavar="ACTION")
    show = case_commands.add_parser("show", help="print a case's coordination record")
    show.add_argument("case_id")

    # -- auditors: verify, export, replay, record digest (cli/_audit.py) ----------------------
    add_audit_commands(commands)
    # -- auditors: one case's HTML report (cli/_report.py) ------------------------------------
    add_report_command(commands)
    return parser


async def _declare(url: str, settings: Settings, specs: Sequence[ConsumerSpec]) -> Registry:
    """Declare what the consumers need; return the public keys they are to trust."""
    nc = await connect(url, "lintas-declare")
    try:
        js = nc.jetstream()
        await declare_platform(js, settings, specs)
        return await trusted_registry(settings, js)
    finally:
        await nc.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def _demo(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from lintas.demo import PATHWAYS, DemoTimeout, check_record, run_demo

    if args.cases < 1:
        console.print("[red]--cases must be at least 1[/red]")
        return 2
    with Progress(
        TextColumn("[bold]cases closed"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("· {task.fields[events]} events recorded"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("demo", total=args.cases, events=0)

        def update(closed: int, wanted: int, events: int) -> None:
            progress.update(task, completed=closed, total=wanted, events=events)

        try:
            result = await run_demo(
                settings, args.cases, progress=update, timeout_s=args.timeout, seed=args.seed
            )
        except DemoTimeout as exc:
            console.print(f"[red]demo did not finish: {exc}[/red]")
            return 1
    titles = {p.situation: p.title for p in PATHWAYS}
    richest = max(result.records, key=lambda r: len(r.timeline))
    console.print(case_view(richest))
    console.print(summary_tables(result.records, titles))
    problems = [p for record in result.records for p in check_record(record)]
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    verdict = (
        "[red]records differ from their pathways[/red]"
        if problems
        else (f"[green]all {len(result.records)} coordination records match their pathways[/green]")
    )
    console.print(
        f"{verdict}  ·  {result.events} events in {result.elapsed_s:.1f} s  ·  bus {result.url}\n"
        f"look again with: lintas case show {richest.case_id}"
    )
    return 1 if problems or len(result.records) != args.cases else 0


async def _up(settings: Settings, console: Console) -> int:
    async with open_bus(settings) as url:
        registry = await _declare(url, settings, deployment_consumers(settings.agencies))
        broker = create_broker(url)
        databases = Databases(settings)
        verifier = Verifier(registry)
        attach_record(broker, databases, settings, verifier=verifier)
        for agency in settings.agencies:
            attach_agency(broker, databases, settings, agency, verifier=verifier)
        await broker.start()
        console.print(
            f"lintas is up on {url}: record + {len(settings.agencies)} agencies "
            f"({', '.join(settings.agencies)}). Ctrl-C stops."
        )
        try:
            await _until_signalled()
        finally:
            await broker.stop()
            databases.dispose()
    return 0


async def _run(settings: Settings, agency: str, console: Console) -> int:
    if agency != "record" and not is_agency_id(agency):
        console.print(
            f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]"
        )
        return 2
    async with open_bus(settings) as url:
        specs = (
            [record_consumer()]
            if agency == "record"
            else [agency_consumer(agency), agency_sent_consumer(agency)]
        )
        registry = await _declare(url, settings, specs)
        app = (
            create_record_app(settings, url, registry)
            if agency == "record"
            else create_agency_app(settings, url, agency, registry)
        )
        await app.run()
    return 0


async def _publish_keys(settings: Settings, console: Console) -> int:
    registry = load_registry(settings)
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-keys")
        try:
            count = await publish_registry(nc.jetstream(), registry)
        finally:
            await nc.close()
    console.print(f"{len(registry.entries())} keys of {count} agencies in {KEYS_BUCKET}")
    return 0


def _keys(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.keys_command == "publish":
        return asyncio.run(_publish_keys(settings, console))
    if args.keys_command == "init":
        entry = init_agency_key(settings, args.agency)
        console.print(
            f"{args.agency}: key {entry.keyid}, valid from {entry.valid_from.isoformat()}; "
            f"private key in {settings.data_dir / 'keys'} (0600), public key registered",
            highlight=False,
        )
        return 0
    for entry in load_registry(settings).entries():
        until = entry.valid_until.isoformat() if entry.valid_until else "no end"
        console.print(
            f"{entry.agency:16} {entry.keyid:36} {entry.valid_from.isoformat()} .. {until}",
            highlight=False,
        )
    return 0


async def _dlq(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-dlq")
        try:
            js = nc.jetstream()
            if args.dlq_command == "list":
                return await dlq_list(console, js, settings, args.json)
            if args.dlq_command == "show":
                return await dlq_show(console, js, settings, args.id)
            return await dlq_retry(console, js, settings, None if args.all else args.id)
        finally:
            await nc.close()


def _case_show(settings: Settings, case_id: str, console: Console) -> int:
    if not is_case_id(case_id):
        console.print(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
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
        console.print(f"[red]no case {case_id} in the coordination record[/red]")
        return 1
    console.print(case_view(record))
    return 0


def _settings(console: Console) -> Settings | None:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            name = "LINTAS_" + "_".join(str(p) for p in error["loc"]).upper()
            console.print(f"[red]lintas: {name}: {error['msg']}[/red]", highlight=False)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level.upper())
    # Piped output is not a terminal: give tables room instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    settings = _settings(console)
    if settings is None:
        return 2
    try:
        if args.command == "demo":
            return asyncio.run(_demo(settings, args, console))
        if args.command == "up":
            return asyncio.run(_up(settings, console))
        if args.command == "run":
            return asyncio.run(_run(settings, args.agency, console))
        if args.command == "contracts":
            act = contracts_check if args.contracts_command == "check" else contracts_docs
            return act(console, args.schemas, args.asyncapi)
        if args.command == "keys":
            return _keys(settings, args, console)
        if args.command == "dlq":
            return asyncio.run(_dlq(settings, args, console))
        if args.command == "case":
            return _case_show(settings, args.case_id, console)
        # -- auditors (cli/_audit.py) -----------------------------------------------------------
        if args.command in AUDIT_COMMANDS:
            return run_audit(settings, args, console)
        # -- auditors: one case's HTML report (cli/_report.py) ----------------------------------
        if args.command == "report":
            return asyncio.run(run_report(settings, args, console))
    except LintasError as exc:
        console.print(f"[red]lintas: {exc}[/red]", highlight=False, soft_wrap=True)
        return 1
    except OSError as exc:  # e.g. LINTAS_DATA_DIR is a file, or not writable
        console.print(f"[red]lintas: {exc}[/red]", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
