"""The ``lintas`` command line: every subcommand and its arguments, and nothing else.

Building the parser imports no command: ``lintas --help``, a subcommand's ``--help`` and an
argument error never import FastStream, SQLAlchemy or nats-py. The commands themselves are
imported by :func:`lintas.cli._main.main` once the arguments are known.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from lintas.cli._contracts import DEFAULT_ASYNCAPI
from lintas.contracts.families.case import ERASURE_ROLES
from lintas.contracts.schemadocs import SCHEMA_DIR

__all__ = ["build_parser"]


def _instant(text: str) -> datetime:
    # Imported only when an instant is given: the parser imports nothing heavy.
    from lintas.audit.events import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_audit_commands(commands: Any) -> None:
    """The auditors' subcommands, on the ``lintas`` subparsers."""
    verify = commands.add_parser(
        "verify",
        help="verify the log: contracts, signatures, hash chains, no gaps",
        description=(
            "Verify the log (the stream, or an exported archive offline) and list every "
            "problem found, each with a stable code (docs/AUDIT.md). Messages that are no "
            "event at all are counted and listed, and verification carries on past them."
        ),
        epilog=(
            "exit status: 0 all verified; 1 problems found (each listed); 2 could not "
            "verify (bus unreachable or refused, archive unreadable, bad arguments)"
        ),
    )
    verify.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")
    verify.add_argument("--case", dest="case_id", help="only this case's events")
    verify.add_argument(
        "--keys",
        type=Path,
        help="a key registry (JSON) to verify an archive against instead of its own keys",
    )
    verify.add_argument(
        "--json",
        action="store_true",
        help="print the verdict as one JSON document (problems, messages that are no event, "
        "counts)",
    )

    export = commands.add_parser("export", help="export the log as a self-contained archive")
    export.add_argument(
        "--out", type=Path, required=True, help="a new directory, or a file ending .tar.gz"
    )
    export.add_argument("--case", dest="case_id", help="only this case")
    export.add_argument(
        "--from", dest="time_from", type=_instant, help="event time from (ISO 8601, zoned)"
    )
    export.add_argument("--to", dest="time_to", type=_instant, help="event time up to, inclusive")

    rebuild = commands.add_parser(
        "replay", help="rebuild the coordination record from the log into a fresh database"
    )
    rebuild.add_argument(
        "--database", required=True, help="SQLAlchemy URL of a fresh store, e.g. sqlite:///r.db"
    )
    rebuild.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")
    rebuild.add_argument(
        "--as-of", dest="as_of", type=_instant, help="only events with event time <= this"
    )
    rebuild.add_argument("--case", dest="case_id", help="only this case")
    rebuild.add_argument("--keys", type=Path, help="a key registry (JSON) instead of the usual")

    record = commands.add_parser("record", help="the coordination record")
    record_commands = record.add_subparsers(dest="record_command", required=True, metavar="ACTION")
    digest = record_commands.add_parser(
        "digest", help="SHA-256 of the record (the live one, or --database a replay)"
    )
    digest.add_argument("--database", help="SQLAlchemy URL of another record (e.g. a replay)")

    checkpoint = commands.add_parser(
        "checkpoint", help="publish a signed checkpoint over the stream's events since the last one"
    )
    checkpoint.add_argument(
        "--agency",
        default="kp2mi",
        help="the agency whose key signs the checkpoint (default kp2mi)",
    )
    checkpoint.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help="checkpoint again every SECONDS until Ctrl-C (what `lintas up` does by itself)",
    )


def add_infra_commands(commands: Any) -> None:
    agency = commands.add_parser("agency", help="agencies on the bus: identities and consumers")
    agency_commands = agency.add_subparsers(dest="agency_command", required=True, metavar="ACTION")
    add = agency_commands.add_parser(
        "add",
        help="register an agency: NATS identity, permissions, durable consumers, signing key",
    )
    add.add_argument("name", help="agency id: kp2mi, desa-<code>, <cc>-<agency> abroad, ...")
    add.add_argument(
        "--nkey",
        help="the agency's own public nkey (U...), made on its premises: no seed is made here",
    )

    infra = commands.add_parser("infra", help="deployment: certificates and server configs")
    infra_commands = infra.add_subparsers(dest="infra_command", required=True, metavar="ACTION")
    certs = infra_commands.add_parser(
        "certs", help="a private CA and the NATS servers' (and clients') TLS certificates"
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
    config = infra_commands.add_parser(
        "config",
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
    trace = commands.add_parser(
        "trace", help="a case's spans as a waterfall (from the local span file)"
    )
    trace.add_argument("case_id", metavar="CASE", help="the case id")
    trace.add_argument(
        "--all", action="store_true", help="every span, also projections' and broadcasts'"
    )


def add_watch_commands(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="pending messages, lag, open and overdue hand-offs per agency, once"
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
    watch = commands.add_parser("watch", help="the same as a live dashboard, until Ctrl-C")
    watch.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="between samples (default 2)"
    )


def add_report_command(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="one case's audit report: a self-contained HTML page (timeline, checks)"
    )
    report.add_argument("case_id", metavar="CASE", help="the case id")
    report.add_argument("--html", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--archive", type=Path, help="an exported archive (no NATS needed)")


_REQUESTED_BY = ("data_subject", "parent", "guardian", "court", "retention_ended")


def add_privacy_commands(case_commands: Any) -> None:
    erase = case_commands.add_parser(
        "erase",
        help="erase a case's personal data: destroy its data keys, publish case.erased",
    )
    erase.add_argument("case_id")
    erase.add_argument("--reason", required=True, help="why (kept in the log: no child's data)")
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
        "--legal-basis", default="UU 27/2022 Pasal 8", help="the provision it answers"
    )
    show = case_commands.add_parser(
        "file", help="one agency's case file: the personal fields it was sent, opened if shared"
    )
    show.add_argument("case_id")
    show.add_argument("--agency", required=True, help="whose case file (its key opens it)")
    exposed = case_commands.add_parser(
        "exposed",
        help="the cases an agency's X25519 key opens, and their personal fields (a breach)",
    )
    exposed.add_argument("--agency", required=True, help="the agency whose key is in question")
    exposed.add_argument("--json", action="store_true", help="for scripts")


def build_parser() -> argparse.ArgumentParser:
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
