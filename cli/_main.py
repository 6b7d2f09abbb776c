"""``lintas``: argument parsing and the commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session

from lintas.audit.checkpointer import start_checkpointer
from lintas.cli._audit import AUDIT_COMMANDS, add_audit_commands, run_audit
from lintas.cli._contracts import DEFAULT_ASYNCAPI, contracts_check, contracts_docs
from lintas.cli._dlq import dlq_list, dlq_retry, dlq_show
from lintas.cli._infra import INFRA_COMMANDS, add_infra_commands, run_infra
from lintas.cli._privacy import add_privacy_commands, case_erase, case_exposed, case_file
from lintas.cli._report import add_report_command, run_report
from lintas.cli._signals import Stop, stop_on_signals
from lintas.cli._trace import add_trace_command, run_trace
from lintas.cli._watch import add_watch_commands, run_status, run_watch
from lintas.cli.render import case_view, summary_tables
from lintas.consumers import (
    Databases,
    attach_agency,
    attach_record,
    attach_watchdog,
    create_agency_app,
    create_broker,
    create_record_app,
    create_watchdog_app,
    load_record,
    start_ticker,
)
from lintas.consumers.projections import RecordCaseRow
from lintas.contracts import WATCHDOG, LintasError, is_agency_id, is_case_id
from lintas.contracts.schemadocs import SCHEMA_DIR
from lintas.infra.db import ensure_tables
from lintas.infra.keys.exchange import (
    EXCHANGE_BUCKET,
    exchange_key_path,
    init_exchange_key,
    load_recipients,
    publish_recipients,
)
from lintas.infra.keys.signing import (
    KEYS_BUCKET,
    Registry,
    Signer,
    Verifier,
    init_agency_key,
    load_registry,
    private_key_path,
    publish_registry,
    trusted_registry,
)
from lintas.infra.nats.bus import connect, open_bus, read_service, registry_source
from lintas.infra.nats.credentials import js_options, uses_credentials
from lintas.infra.nats.platform import declare_platform
from lintas.infra.nats.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    check_consumer,
    deployment_consumers,
    record_consumer,
    watchdog_consumer,
)
from lintas.infra.observability.logging import configure_logging
from lintas.infra.observability.telemetry import configure_tracing
from lintas.infra.settings import Settings

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

    run = commands.add_parser(
        "run",
        help="run one agency's consumer app, the platform's 'record', 'reads' or 'platform', or "
        "the deadline 'watchdog'",
    )
    run.add_argument(
        "agency",
        help="agency id (e.g. dukcapil), 'record' (the coordination record), 'reads' (the "
        "read service agencies' publishers and consumers ask) or 'platform' (declarations for "
        "LINTAS_AGENCIES, record and read service) or 'watchdog' (the deadline watchdog)",
    )

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
        help="make an agency's key pairs (Ed25519 to sign, X25519 to receive case data "
        "keys): private keys 0600 in the data dir, public keys in its registries",
    )
    key_init.add_argument("agency")
    key_commands.add_parser("list", help="the public keys this data dir trusts")
    key_commands.add_parser(
        "publish",
        help="put the registries' public keys into the LINTAS_KEYS and LINTAS_EXCHANGE_KEYS "
        "JetStream KV buckets",
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
    add_privacy_commands(case_commands)

    # -- auditors: verify, export, replay, record digest (cli/_audit.py) ----------------------
    add_audit_commands(commands)
    # -- auditors: one case's HTML report (cli/_report.py) ------------------------------------
    add_report_command(commands)
    # -- operators: one case's spans as a waterfall (cli/_trace.py) ---------------------------
    add_trace_command(commands)
    # -- operators: status and the live dashboard (cli/_watch.py) -----------------------------
    add_watch_commands(commands)
    # -- identities and deployment files (cli/_infra.py) -------------------------------------
    add_infra_commands(commands)
    return parser


async def _declare(
    url: str, settings: Settings, specs: Sequence[ConsumerSpec], identity: str = "platform"
) -> Registry:
    """Declare what the consumers need, as the platform (or ``identity``, on an open bus);
    return the public keys they are to trust."""
    nc = await connect(url, "lintas-declare", settings=settings, identity=identity)
    try:
        js = nc.jetstream()
        await declare_platform(js, settings, specs)
        return await trusted_registry(settings, js)
    finally:
        await nc.close()


async def _bind(
    url: str, settings: Settings, agency: str, specs: Sequence[ConsumerSpec]
) -> Registry:
    """As ``agency``, which may not declare anything: check its consumers exist as they
    should; return the public keys to trust."""
    nc = await connect(url, f"lintas-{agency}", settings=settings, identity=agency)
    try:
        js = nc.jetstream(**js_options(agency))
        for spec in specs:
            await check_consumer(js, settings.stream, spec, settings)
        return await trusted_registry(settings, js)
    finally:
        await nc.close()


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
    if result.gate_refusal:
        console.print(
            f"consent gate: a referral no consent covers was refused: {result.gate_refusal}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        problems.append("the consent gate did not refuse a referral no consent covers")
        console.print(f"[red]{problems[-1]}[/red]")
    overdue = [d for d in result.deadlines if d.overdue_seq is not None]
    escalated = [d for d in result.deadlines if d.escalated_seq is not None]
    console.print(
        f"watchdog: {len(result.deadlines)} hand-offs with deadlines followed, "
        f"{sum(d.status == 'open' for d in result.deadlines)} still open, "
        f"{len(overdue)} overdue, {len(escalated)} escalated to KPAI",
        highlight=False,
    )
    for item in overdue:
        console.print(
            f"  overdue: {item.handoff} {item.request_id} of {item.case_id}, asked of "
            f"{item.asked}, due {item.due:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )
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


def _watchdog_key(settings: Settings, console: Console) -> Signer:
    """The watchdog's signing key, made here on first use: ``lintas up`` is one data dir,
    whose registry every consumer it runs trusts."""
    if not private_key_path(settings, WATCHDOG).exists():
        entry = init_agency_key(settings, WATCHDOG)
        console.print(
            f"made the watchdog's signing key {entry.keyid} (`lintas keys publish` shares it "
            "with consumers running elsewhere)",
            highlight=False,
        )
    return Signer.load(settings, WATCHDOG)


async def _up(settings: Settings, console: Console) -> int:
    """The platform (declarations, record, read service) and every agency's consumers, each
    connected as itself."""
    with stop_on_signals() as stop:
        return await _up_until(settings, console, stop)


async def _up_until(settings: Settings, console: Console, stop: Stop) -> int:
    async with open_bus(settings) as url:
        signer = _watchdog_key(settings, console)
        registry = await _declare(url, settings, deployment_consumers(settings.agencies))
        databases = Databases(settings)
        verifier = Verifier(registry, refresh=registry_source(url, settings, "platform"))
        tracing = configure_tracing(settings, "lintas-up")
        record = create_broker(url, settings, "platform")
        attach_record(record, databases, settings, verifier=verifier, tracer_provider=tracing)
        # The watchdog reads every event, as the platform does; it publishes as itself.
        attach_watchdog(record, databases, settings, verifier=verifier, tracer_provider=tracing)
        brokers = [record]
        for agency in settings.agencies:
            broker = create_broker(url, settings, agency)
            attach_agency(
                broker,
                databases,
                settings,
                agency,
                verifier=verifier,
                via_read_service=uses_credentials(settings, agency),
                tracer_provider=tracing,
            )
            brokers.append(broker)
        # The embedded bus runs a read service already; a configured cluster gets one here.
        # Whatever started is stopped, in reverse, even if stopping something else fails.
        async with (
            read_service(settings, url, run=bool(settings.nats_url)),
            contextlib.AsyncExitStack() as running,
        ):
            running.push_async_callback(asyncio.to_thread, tracing.shutdown)
            running.callback(databases.dispose)
            for broker in brokers:
                await broker.start()
                running.push_async_callback(broker.stop)
            ticker = await start_ticker(
                url, databases, settings, signer, tracer_provider=tracing, verifier=verifier
            )
            running.push_async_callback(ticker.stop)
            checkpointing = ""
            if settings.checkpoint_interval_s:
                # The platform operator checkpoints with the watchdog's key, which it holds here.
                running.push_async_callback((await start_checkpointer(url, settings, signer)).stop)
                checkpointing = f", checkpoints every {settings.checkpoint_interval_s:g} s"
            console.print(
                f"lintas is up on {url}: record + watchdog + {len(settings.agencies)} agencies "
                f"({', '.join(settings.agencies)}){checkpointing}. Ctrl-C stops.",
                soft_wrap=True,
            )
            await stop.wait()
    return 0


async def _run_reads(settings: Settings, console: Console) -> int:
    with stop_on_signals() as stop:
        async with (
            open_bus(settings) as url,
            read_service(settings, url, run=bool(settings.nats_url)),
        ):
            console.print(f"read service up on {url} (lintas_read.<agency>.*). Ctrl-C stops.")
            await stop.wait()
    return 0


async def _run_platform(settings: Settings, console: Console) -> int:
    """What a deployment's platform host runs: the stream and every agency's consumers
    declared, the coordination record, and the read service. No agency's consumers."""
    async with open_bus(settings) as url:
        registry = await _declare(url, settings, deployment_consumers(settings.agencies))
        app = create_record_app(settings, url, registry)
        async with read_service(settings, url, run=bool(settings.nats_url)):
            console.print(
                f"platform up on {url}: consumers of {len(settings.agencies)} agencies declared, "
                "record and read service running",
                highlight=False,
            )
            await app.run()
    return 0


async def _run(settings: Settings, agency: str, console: Console) -> int:
    if agency == "reads":
        return await _run_reads(settings, console)
    if agency == "platform":
        return await _run_platform(settings, console)
    if agency != "record" and not is_agency_id(agency):
        console.print(
            f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]"
        )
        return 2
    # The watchdog signs what it publishes: no key, no start (before touching the bus).
    signer = Signer.load(settings, WATCHDOG) if agency == WATCHDOG else None
    platform_part = agency in ("record", WATCHDOG)
    async with open_bus(settings, agencies=[] if platform_part else [agency]) as url:
        if agency == "record":
            registry = await _declare(url, settings, [record_consumer()])
            app = create_record_app(settings, url, registry)
        elif agency == WATCHDOG:
            registry = await _declare(url, settings, [watchdog_consumer()])
            app = create_watchdog_app(settings, url, registry, signer=signer)
        else:
            specs = [agency_consumer(agency), agency_sent_consumer(agency)]
            # An agency's own host holds its seed, not the platform's: it may bind to its
            # consumers, not declare them. Here (or on an open bus) the platform declares.
            if uses_credentials(settings, "platform"):
                registry = await _declare(url, settings, specs)
            elif uses_credentials(settings, agency):
                registry = await _bind(url, settings, agency, specs)
            else:  # no credentials at all: an open bus, where anyone may declare
                registry = await _declare(url, settings, specs, identity=agency)
            app = create_agency_app(settings, url, agency, registry)
        console.print(f"lintas runs {agency}'s consumers on {url}. Ctrl-C stops.")
        await app.run()
    return 0


async def _publish_keys(settings: Settings, console: Console) -> int:
    registry = load_registry(settings)
    recipients = load_recipients(settings)
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-keys", settings=settings, identity="platform")
        try:
            count = await publish_registry(nc.jetstream(), registry)
            exchange = await publish_recipients(nc.jetstream(), recipients)
        finally:
            await nc.close()
    console.print(f"{len(registry.entries())} keys of {count} agencies in {KEYS_BUCKET}")
    console.print(f"X25519 keys of {exchange} agencies in {EXCHANGE_BUCKET}")
    return 0


def _keys_init(settings: Settings, agency: str, console: Console) -> int:
    if not is_agency_id(agency):
        console.print(
            f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]"
        )
        return 2
    made = 0
    if not private_key_path(settings, agency).exists():
        entry = init_agency_key(settings, agency)
        made += 1
        console.print(
            f"{agency}: signing key {entry.keyid}, valid from {entry.valid_from.isoformat()}; "
            f"private key in {settings.data_dir / 'keys'} (0600), public key registered",
            highlight=False,
        )
    if not exchange_key_path(settings, agency).exists():
        key = init_exchange_key(settings, agency)
        made += 1
        console.print(
            f"{agency}: exchange key {key.kid} (X25519, receives case data keys); private "
            f"key in {settings.data_dir / 'keys'} (0600), public key in keys/exchange.json",
            highlight=False,
        )
    if not made:
        console.print(
            f"[red]{agency} already has both keys in {settings.data_dir / 'keys'} (rotate, "
            "do not overwrite)[/red]"
        )
        return 1
    return 0


def _keys(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.keys_command == "publish":
        return asyncio.run(_publish_keys(settings, console))
    if args.keys_command == "init":
        return _keys_init(settings, args.agency, console)
    for entry in load_registry(settings).entries():
        until = entry.valid_until.isoformat() if entry.valid_until else "no end"
        console.print(
            f"{entry.agency:16} {entry.keyid:36} {entry.valid_from.isoformat()} .. {until}",
            highlight=False,
        )
    recipients = load_recipients(settings)
    for agency in recipients.agencies():
        key = recipients.get(agency)
        assert key is not None
        console.print(f"{agency:16} {key.kid:36} X25519 (receives case data keys)", highlight=False)
    return 0


async def _dlq(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-dlq", settings=settings, identity="operator")
        try:
            js = nc.jetstream()
            if args.dlq_command == "list":
                return await dlq_list(console, js, settings, args.json)
            if args.dlq_command == "show":
                return await dlq_show(console, js, settings, args.id)
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
            if args.case_command == "erase":
                return asyncio.run(case_erase(settings, args, console))
            if args.case_command == "file":
                return asyncio.run(case_file(settings, args, console))
            if args.case_command == "exposed":
                return asyncio.run(case_exposed(settings, args, console))
            return _case_show(settings, args.case_id, console)
        # -- auditors (cli/_audit.py) -----------------------------------------------------------
        if args.command in AUDIT_COMMANDS:
            return run_audit(settings, args, console)
        # -- auditors: one case's HTML report (cli/_report.py) ----------------------------------
        if args.command == "report":
            return asyncio.run(run_report(settings, args, console))
        # -- operators: one case's spans as a waterfall (cli/_trace.py) -------------------------
        if args.command == "trace":
            return run_trace(settings, args, console)
        # -- operators: status and the live dashboard (cli/_watch.py) -------------------------
        if args.command == "status":
            return asyncio.run(run_status(settings, args, console))
        if args.command == "watch":
            return asyncio.run(run_watch(settings, args, console))
        # -- identities and deployment files (cli/_infra.py) ---------------------------------
        if args.command in INFRA_COMMANDS:
            return run_infra(settings, args, console)
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
