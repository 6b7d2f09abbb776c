"""The ``lintas`` command line: every subcommand and its arguments, and nothing else.

Building the parser imports no command: ``lintas --help``, a subcommand's ``--help`` and an
argument error never import FastStream, SQLAlchemy or nats-py. The commands themselves are
imported by :func:`lintas.cli._main.main` once the arguments are known.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lintas.cli._contracts import DEFAULT_ASYNCAPI
from lintas.contracts.codes import CITATION_PATTERN, ERASURE_REASONS
from lintas.contracts.families.case import ERASURE_ROLES
from lintas.contracts.schemadocs import SCHEMA_DIR

__all__ = ["build_parser"]


def _command(
    commands: Any,
    name: str,
    *,
    example: str,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
    **options: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` page has a description (the one-line ``help``, unless
    given) and, last, an example of its use."""
    text = description or help[0].upper() + help[1:] + "."
    example_text = f"example:\n  {example}"
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=textwrap.fill(text, 88),
        epilog=f"{textwrap.fill(epilog, 88)}\n\n{example_text}" if epilog else example_text,
        # The example keeps its line; the description is filled above.
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **options,
    )
    return parser


def _instant(text: str) -> datetime:
    # Imported only when an instant is given: the parser imports nothing heavy.
    from lintas.audit.events import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_audit_commands(commands: Any) -> None:
    """The auditors' subcommands, on the ``lintas`` subparsers."""
    verify = _command(
        commands,
        "verify",
        example="lintas verify --archive exported.tar.gz --json",
        help="verify the log: contracts, signatures, hash chains, no gaps",
        description=(
            "Verify the log (the stream, or an exported archive offline) and list every "
            "problem found, each with a stable code (docs/AUDIT.md). Messages that are no "
            "event at all are counted and listed, and verification carries on past them."
        ),
        epilog=(
            "exit status: 0 all verified; 1 problems found (each listed); 2 could not "
            "verify (bus unreachable or refused, archive unreadable, bad arguments); 3 no such "
            "case (--case names a case the log holds no event of); 4 an archive holds, but "
            "only by its own keys: authenticity not established (--keys); 5 the log does not "
            "extend the checkpoint kept (--since): it lost events after it or was rewritten "
            "before it"
        ),
    )
    verify.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")
    verify.add_argument("--case", dest="case_id", help="only this case's events")
    verify.add_argument(
        "--keys",
        type=Path,
        help="the platform's key registry kept apart (`lintas keys export`), to verify "
        "against instead of an archive's own keys or the bus's",
    )
    verify.add_argument(
        "--since",
        type=Path,
        metavar="FILE",
        help="a checkpoint kept from an earlier verify (--save-checkpoint): the whole log must "
        "extend it, by a Merkle consistency proof (exit 5 if not)",
    )
    verify.add_argument(
        "--save-checkpoint",
        type=Path,
        metavar="FILE",
        help="once the log verifies (exit 0), keep its newest checkpoint in FILE for the next "
        "verify --since",
    )
    verify.add_argument(
        "--json",
        action="store_true",
        help="print the verdict as one JSON document (problems, messages that are no event, "
        "counts)",
    )

    export = _command(
        commands,
        "export",
        example="lintas export --out audit-2025q1.tar.gz --from 2025-01-01T00:00:00+07:00",
        help="export the log as a self-contained archive, its manifest signed by the sealer "
        "(run it on the platform's host, whose data dir holds the sealer's key)",
    )
    export.add_argument(
        "--out", type=Path, required=True, help="a new directory, or a file ending .tar.gz"
    )
    export.add_argument(
        "--case", dest="case_id", help="only this case (exit 3 if the log holds none of it)"
    )
    export.add_argument(
        "--from", dest="time_from", type=_instant, help="event time from (ISO 8601, zoned)"
    )
    export.add_argument("--to", dest="time_to", type=_instant, help="event time up to, inclusive")
    export.add_argument(
        "--since",
        type=Path,
        metavar="FILE",
        help="a checkpoint an auditor kept (verify --save-checkpoint): a partial archive also "
        "carries the consistency proof from it, so that verify --since works on the archive "
        "(exit 5 if the log does not extend it)",
    )
    export.add_argument(
        "--json", action="store_true", help="print the manifest's summary as one JSON document"
    )

    rebuild = _command(
        commands,
        "replay",
        example="lintas replay --database sqlite:///replay.db --as-of 2025-03-31T23:59+07:00",
        help="rebuild the coordination record from the log into a fresh database",
    )
    rebuild.add_argument(
        "--database", required=True, help="SQLAlchemy URL of a fresh store, e.g. sqlite:///r.db"
    )
    rebuild.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")
    rebuild.add_argument(
        "--as-of", dest="as_of", type=_instant, help="only events with event time <= this"
    )
    rebuild.add_argument(
        "--case", dest="case_id", help="only this case (exit 3 if the log holds none of it)"
    )
    rebuild.add_argument("--keys", type=Path, help="a key registry (JSON) instead of the usual")
    rebuild.add_argument(
        "--json", action="store_true", help="print the result and digest as one JSON document"
    )

    record = _command(
        commands, "record", example="lintas record digest", help="the coordination record"
    )
    record_commands = record.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    digest = _command(
        record_commands,
        "digest",
        example="lintas record digest --database sqlite:///replay.db",
        help="SHA-256 of the record (the live one, or --database a replay)",
    )
    digest.add_argument("--database", help="SQLAlchemy URL of another record (e.g. a replay)")
    digest.add_argument("--json", action="store_true", help="for scripts")

    checkpoint = _command(
        commands,
        "checkpoint",
        example="lintas checkpoint --every 60",
        help="publish a checkpoint over the stream's events since the last one, signed with "
        "the sealer's key (made here on first use)",
    )
    checkpoint.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help="checkpoint again every SECONDS until Ctrl-C (what `lintas up` does by itself)",
    )


def add_infra_commands(commands: Any) -> None:
    agency = _command(
        commands,
        "agency",
        example="lintas agency add desa-3201 --nkey UA...",
        help="agencies on the bus: identities and consumers",
    )
    agency_commands = agency.add_subparsers(dest="agency_command", required=True, metavar="ACTION")
    add = _command(
        agency_commands,
        "add",
        example="lintas agency add desa-3201 --nkey UA...",
        help="register an agency: NATS identity, permissions, durable consumers, signing key",
    )
    add.add_argument("name", help="agency id: kp2mi, desa-<code>, <cc>-<agency> abroad, ...")
    add.add_argument(
        "--nkey",
        help="the agency's own public nkey (U...), made on its premises: no seed is made here",
    )

    infra = _command(
        commands,
        "infra",
        example="lintas infra certs --out certs --host nats.example.go.id",
        help="deployment: certificates and server configs",
    )
    infra_commands = infra.add_subparsers(dest="infra_command", required=True, metavar="ACTION")
    certs = _command(
        infra_commands,
        "certs",
        example="lintas infra certs --out certs --host nats.example.go.id --client kp2mi",
        help="a private CA and the NATS servers' (and clients') TLS certificates",
    )
    certs.add_argument("--out", type=Path, required=True, help="directory (the CA is reused)")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        help="a name or address of the servers (repeat; localhost and loopback always)",
    )
    certs.add_argument(
        "--client", action="append", default=[], help="a client certificate to issue (repeat)"
    )
    certs.add_argument(
        "--no-server", action="store_true", help="only the CA and client certificates"
    )
    config = _command(
        infra_commands,
        "config",
        example="lintas infra config --out deploy --hub nats-leaf://hub.example.go.id:7422",
        help="a deployment directory: cluster and partner configs, authorization, compose",
    )
    config.add_argument("--out", type=Path, required=True, help="the deployment directory")
    config.add_argument(
        "--hub",
        action="append",
        default=[],
        help="leaf-node URL of the cluster for partners (repeat; default the compose nodes)",
    )
    config.add_argument(
        "--no-seeds",
        action="store_true",
        help="do not copy this data dir's nkey seeds (each agency keeps its own)",
    )


def add_trace_command(commands: Any) -> None:
    trace = _command(
        commands,
        "trace",
        example="lintas trace C01M98983XRES49DSZN3PCKHDVA --all",
        help="a case's spans as a waterfall (from the local span file)",
        epilog=_NO_SUCH_CASE,
    )
    trace.add_argument("case_id", metavar="CASE", help="the case id")
    trace.add_argument(
        "--all", action="store_true", help="every span, also projections' and broadcasts'"
    )
    trace.add_argument("--json", action="store_true", help="the case's spans, by trace")


def add_watch_commands(commands: Any) -> None:
    status = _command(
        commands,
        "status",
        example="lintas status --json | jq .consumers",
        help="pending messages, lag, open and overdue hand-offs per agency, once",
    )
    status.add_argument(
        "--json", action="store_true", help="the documented JSON shape, for scripts"
    )
    status.add_argument(
        "--sample",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="measure events per second over this long (default 1; 0: do not measure)",
    )
    watch = _command(
        commands,
        "watch",
        example="lintas watch --interval 5",
        help="the same as a live dashboard, until Ctrl-C",
    )
    watch.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="between samples (default 2)"
    )


def add_report_command(commands: Any) -> None:
    report = _command(
        commands,
        "report",
        example="lintas report C01M98983XRES49DSZN3PCKHDVA --html case.html",
        help="one case's audit report: a self-contained HTML page (timeline, checks)",
        epilog=_NO_SUCH_CASE,
    )
    report.add_argument("case_id", metavar="CASE", help="the case id")
    report.add_argument("--html", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")


_NO_SUCH_CASE = (
    "exit status 3: no such case (a well-formed case id the log holds no event of), the "
    "same for every command that takes a case id"
)


def _citation(text: str) -> str:
    if not re.fullmatch(CITATION_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is no citation: 'UU|PP|Perppu|Perpres|Permen|Perda <n>/<year>' and "
            "an optional ' Pasal <n>' and ' ayat (<n>)'"
        )
    return text


_REQUESTED_BY = ("data_subject", "parent", "guardian", "court", "retention_ended")


def add_privacy_commands(case_commands: Any) -> None:
    erase = _command(
        case_commands,
        "erase",
        example=(
            "lintas case erase C01M98983XRES49DSZN3PCKHDVA --role data_protection_officer "
            "--reason subject_request"
        ),
        help="erase a case's personal data: destroy its data keys, publish case.erased",
        epilog=_NO_SUCH_CASE,
    )
    erase.add_argument("case_id")
    erase.add_argument(
        "--reason",
        required=True,
        choices=tuple(ERASURE_REASONS),
        help="why, as a code (kept in the log after the erasure: never free text)",
    )
    erase.add_argument(
        "--role",
        required=True,
        choices=ERASURE_ROLES,
        help="your role: only a data protection officer may erase",
    )
    erase.add_argument(
        "--agency", help="the agency erasing it (default: the case's owner); must own the case"
    )
    erase.add_argument(
        "--requested-by", choices=_REQUESTED_BY, default="parent", help="whose request or rule"
    )
    erase.add_argument(
        "--legal-basis",
        action="append",
        type=_citation,
        help="a provision it answers, e.g. 'UU 27/2022 Pasal 8' (the default); repeat for more",
    )
    show = _command(
        case_commands,
        "file",
        example="lintas case file C01M98983XRES49DSZN3PCKHDVA --agency dinsos",
        help="one agency's case file: the personal fields it was sent, opened if shared",
    )
    show.add_argument("case_id")
    show.add_argument("--agency", required=True, help="whose case file (its key opens it)")
    exposed = _command(
        case_commands,
        "exposed",
        example="lintas case exposed --agency dinsos --json",
        help="the cases an agency's X25519 key opens, and their personal fields (a breach)",
    )
    exposed.add_argument("--agency", required=True, help="the agency whose key is in question")
    exposed.add_argument("--json", action="store_true", help="for scripts")


def add_rebuild_command(commands: Any) -> None:
    rebuild = _command(
        commands,
        "rebuild",
        example="lintas rebuild dukcapil",
        help="drop a projection and rebuild it from the log, from sequence 1",
        description=(
            "Drop a projection's tables and rebuild them from the log: the consumer's "
            "messages from stream sequence 1, through the same fold and consent gate as live "
            "ones, up to the last its durable delivered. What lintas does by itself on start "
            "when a projection's tables no longer match the code (docs/OPERATIONS.md). Run it "
            "with the consumer stopped, as its own identity: the platform for 'record' and "
            "'watchdog', the agency for its worklist."
        ),
    )
    rebuild.add_argument(
        "consumer",
        metavar="CONSUMER",
        help="'record', 'watchdog', or an agency id (its worklist, fed by agency-<a> and sent-<a>)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lintas",
        description="Interagency referral platform for children of Indonesian migrant workers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('lintas')}")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(
        commands,
        "demo",
        example="lintas demo --cases 24 --seed 7",
        help="run demo cases across every agency, print the record",
    )
    demo.add_argument("--cases", type=int, default=12, help="how many cases (default 12)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the invented children")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most")

    _command(
        commands, "up", example="lintas up", help="run the bus and every consumer until Ctrl-C"
    )

    run = _command(
        commands,
        "run",
        example="lintas run dukcapil",
        help="run one agency's consumer app, the platform's 'record', 'reads', 'admission' or "
        "'platform', or the deadline 'watchdog'",
    )
    run.add_argument(
        "agency",
        help="agency id (e.g. dukcapil), 'record' (the coordination record), 'reads' (the "
        "read service agencies' publishers and consumers ask), 'admission' (the only writer "
        "of the event log, which agencies send their events to), 'platform' (declarations "
        "for LINTAS_AGENCIES, record, read service, and admission where its seed is) or "
        "'watchdog' (the deadline watchdog)",
    )

    contracts = _command(
        commands,
        "contracts",
        example="lintas contracts check",
        help="schemas, compatibility, AsyncAPI",
    )
    contract_commands = contracts.add_subparsers(
        dest="contracts_command", required=True, metavar="ACTION"
    )
    for name, text in (
        ("check", "fail on stale schemas, edited published versions, missing upcasters"),
        ("docs", "regenerate JSON Schemas, the published lock and the AsyncAPI document"),
    ):
        action = _command(contract_commands, name, example=f"lintas contracts {name}", help=text)
        action.add_argument("--schemas", type=Path, default=SCHEMA_DIR, help="schema directory")
        action.add_argument(
            "--asyncapi", type=Path, default=DEFAULT_ASYNCAPI, help="AsyncAPI document"
        )

    keys = _command(
        commands, "keys", example="lintas keys init kp2mi", help="agencies' signing keys"
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_init = _command(
        key_commands,
        "init",
        example="lintas keys init kp2mi",
        help="make an agency's key pairs (Ed25519 to sign, X25519 to receive case data "
        "keys): private keys 0600 in the data dir, public keys in its registries",
    )
    key_init.add_argument("agency")
    key_list = _command(
        key_commands,
        "list",
        example="lintas keys list --json",
        help="the public keys this data dir trusts",
    )
    key_list.add_argument("--json", action="store_true", help="for scripts")
    key_export = _command(
        key_commands,
        "export",
        example="lintas keys export --out lintas-keys.json",
        help="write the platform's key registry (the LINTAS_KEYS bucket and this data dir's) "
        "to a new file, and print its fingerprint to publish: what auditors pass to "
        "`verify --keys`",
    )
    key_export.add_argument("--out", type=Path, required=True, help="a new file")
    _command(
        key_commands,
        "publish",
        example="lintas keys publish",
        help="put the registries' public keys into the LINTAS_KEYS and LINTAS_EXCHANGE_KEYS "
        "JetStream KV buckets",
    )

    dlq = _command(
        commands,
        "dlq",
        example="lintas dlq list --json",
        help="the quarantine: messages consumers could not apply (and, with outbox, an "
        "agency outbox's dead letters)",
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = _command(
        dlq_commands,
        "list",
        example="lintas dlq list --json",
        help="every quarantined message, oldest first",
    )
    listing.add_argument("--json", action="store_true", help="for scripts")
    dlq_show = _command(
        dlq_commands, "show", example="lintas dlq show 3", help="one entry, personal fields masked"
    )
    dlq_show.add_argument("id", type=int)
    dlq_show.add_argument("--json", action="store_true", help="for scripts")
    dlq_retry = _command(
        dlq_commands,
        "retry",
        example="lintas dlq retry --all",
        help="apply entries again, exactly once",
    )
    which = dlq_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true", help="every entry")
    dead = _command(
        dlq_commands,
        "outbox",
        example="lintas dlq outbox sqlite:///kemlu.db --json",
        help="an agency outbox's dead letters: rows admission refused for good",
    )
    dead.add_argument("database", help="the agency database's URL (SQLAlchemy)")
    dead.add_argument("--json", action="store_true", help="for scripts")

    case = _command(
        commands,
        "case",
        example="lintas case show C01M98983XRES49DSZN3PCKHDVA",
        help="look at one case",
    )
    case_commands = case.add_subparsers(dest="case_command", required=True, metavar="ACTION")
    show = _command(
        case_commands,
        "show",
        example="lintas case show C01M98983XRES49DSZN3PCKHDVA",
        help="print a case's coordination record, and whether it has caught up with the stream",
        epilog=_NO_SUCH_CASE,
    )
    show.add_argument("case_id")
    show.add_argument("--json", action="store_true", help="the record and its freshness")
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
    # -- operators: a projection rebuilt from the log (cli/_rebuild.py) -----------------------
    add_rebuild_command(commands)
    return parser
