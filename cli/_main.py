"""``lintas``: parse the arguments, then import and run the one command asked for.

Each command's module is imported here, once the arguments are known, so that ``--help``
and argument errors cost no more than the parser (:mod:`lintas.cli._parser`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from rich.console import Console

from lintas.cli._errors import fail
from lintas.cli._parser import build_parser
from lintas.contracts import LintasError
from lintas.infra.nats.outage import run_to_end
from lintas.infra.observability.logging import configure_logging
from lintas.infra.settings import Settings

__all__ = ["main"]

_AUDIT = ("verify", "export", "replay", "record", "checkpoint")
_INFRA = ("agency", "infra")


def _settings() -> Settings | None:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            name = "LINTAS_" + "_".join(str(p) for p in error["loc"]).upper()
            fail(f"[red]lintas: {name}: {error['msg']}[/red]", highlight=False)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level.upper())
    # Piped output is not a terminal: give tables room instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    settings = _settings()
    if settings is None:
        return 2
    try:
        return _dispatch(settings, args, console)
    except LintasError as exc:
        fail(f"[red]lintas: {exc}[/red]", highlight=False, soft_wrap=True)
        return 1
    except OSError as exc:  # e.g. LINTAS_DATA_DIR is a file, or not writable
        fail(f"[red]lintas: {exc}[/red]", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    command = args.command
    if command in ("demo", "up", "run"):
        from lintas.cli import _run

        return _run.run_command(settings, args, console)
    if command == "contracts":
        from lintas.cli._contracts import contracts_check, contracts_docs

        act = contracts_check if args.contracts_command == "check" else contracts_docs
        return act(console, args.schemas, args.asyncapi)
    if command == "keys":
        from lintas.cli._keys import run_keys

        return run_keys(settings, args, console)
    if command == "dlq" and args.dlq_command == "outbox":  # an agency's database, no bus
        from lintas.cli._outbox import outbox_dead_letters

        return outbox_dead_letters(args, console)
    if command == "dlq":
        from lintas.cli._dlq import run_dlq

        return run_to_end(run_dlq(settings, args, console))
    if command == "case":
        from lintas.cli._case import run_case

        return run_case(settings, args, console)
    if command in _AUDIT:
        from lintas.cli._audit import run_audit

        return run_audit(settings, args, console)
    if command == "report":
        from lintas.cli._report import run_report

        return run_to_end(run_report(settings, args, console))
    if command == "trace":
        from lintas.cli._trace import run_trace

        return run_trace(settings, args, console)
    if command in ("status", "watch"):
        from lintas.cli._watch import run_status, run_watch

        run = run_status if command == "status" else run_watch
        return run_to_end(run(settings, args, console))
    if command == "rebuild":
        from lintas.cli._rebuild import run_rebuild

        return run_to_end(run_rebuild(settings, args, console))
    if command in _INFRA:
        from lintas.cli._infra import run_infra

        return run_infra(settings, args, console)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
