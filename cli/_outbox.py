"""``lintas dlq outbox DATABASE_URL``: an agency outbox's dead letters, for operators.

The outbox lives in an agency's own database, not on the bus: this reads its
``lintas_outbox_dead`` table (rows admission refused for good, set aside so the rows
behind them flowed). They hold no event data: the id, the subject (type, source, target,
case), admission's code and the field at fault.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import inspect

from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.contracts.redaction import printable
from lintas.infra.db import create_db_engine
from lintas.producers.outbox import OutboxDeadLetter, dead_letters

__all__ = ["outbox_dead_letters"]


def outbox_dead_letters(args: argparse.Namespace, console: Console) -> int:
    engine = create_db_engine(args.database)
    try:
        if not inspect(engine).has_table(OutboxDeadLetter.__tablename__):
            fail(
                f"no {OutboxDeadLetter.__tablename__} in that database: "
                "its outbox relay makes it (ensure_outbox_table)",
                markup=False,
            )
            return 1
        found = dead_letters(engine)
    finally:
        engine.dispose()
    if args.json:
        print_json(console, [_summary(d) for d in found])
        return 0
    table = Table(title=f"Outbox dead letters: {len(found)}", title_justify="left")
    for column in ("position", "event id", "subject", "code", "field", "tries", "refused"):
        table.add_column(column)
    for d in found:
        table.add_row(
            str(d.position),
            Text(printable(d.id)),
            Text(printable(d.subject)),
            Text(printable(d.code)),
            Text(printable(d.field or "")),
            str(d.attempts),
            d.refused_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    return 0


def _summary(dead: OutboxDeadLetter) -> dict[str, Any]:
    return {
        "position": dead.position,
        "id": dead.id,
        "agency": dead.agency,
        "subject": dead.subject,
        "code": dead.code,
        "field": dead.field,
        "attempts": dead.attempts,
        "created_at": dead.created_at.isoformat(),
        "refused_at": dead.refused_at.isoformat(),
    }
