"""A case asked for by its id: whether the log holds it, one answer everywhere.

Every command that takes a case id (``case show``, ``case erase``, ``case file``, ``verify --case``,
``replay --case``, ``export --case``, ``report``, ``trace``) answers a well-formed id the
log holds no event of with the same line on standard error and the same exit status,
:data:`NO_SUCH_CASE`: not a failed verification, not an empty archive, not the digest
of nothing. A malformed id stays an argument error (2).
"""

from __future__ import annotations

from typing import Any, Final

import nats.js.errors

from lintas.cli._errors import fail
from lintas.contracts import case_filter
from lintas.infra.errors import bus_errors

__all__ = ["NO_SUCH_CASE", "case_messages", "no_such_case"]

NO_SUCH_CASE: Final = 3
"""The exit status of every command given a well-formed case id the log does not hold
(README, docs/AUDIT.md and docs/OPERATIONS.md say the same)."""


def no_such_case(case_id: str, where: str) -> int:
    """Say that ``where`` (``stream LINTAS``, ``archive PATH``) holds no event of the case,
    on standard error; the exit status to return."""
    fail(f"[red]no case {case_id}: {where} holds no event of it[/red]", highlight=False)
    return NO_SUCH_CASE


async def case_messages(
    js: Any, stream: str, case_id: str, *, after: int = 0, at_most: int | None = None
) -> int:
    """How many messages ``stream`` holds on the case's subjects after stream sequence
    ``after`` (counting stops at ``at_most``): one next-by-subject get of the stream's
    leader each, so its cost follows the case, not the stream (the auditor may make them;
    a missing stream holds nothing)."""
    count, cursor = 0, after + 1
    subject = case_filter(case_id)
    while at_most is None or count < at_most:
        try:
            with bus_errors(f"reading case {case_id} in stream {stream}"):
                raw = await js.get_msg(stream, seq=cursor, subject=subject, next=True)
        except nats.js.errors.NotFoundError:  # no more of the case, or no such stream
            return count
        count += 1
        cursor = int(raw.seq or 0) + 1
    return count
