"""The authority policy as a rule of ``lintas verify``: who may say what about which case.

Admission judges every event before it enters the log (:func:`lintas.contracts.authority.judge`);
``verify`` judges the log again, so that an event written past admission (straight onto a
bus without admission, by an operator with break-glass rights, or into an archive) is named.
It is a :data:`lintas.audit.check.CasePass`: each event the policy refuses is one problem,
coded ``authority:<the policy's code>`` (:data:`AUTHORITY_PROBLEMS`), its message the
policy's reason and the field at fault.

A case whose first event here carries a ``prevhash`` (a partial archive's anchored case)
began before what is read: its state cannot be folded from its opening, so each of its
events is judged alone (:func:`lintas.contracts.authority.judge_alone`: what is refused in
any state), never against a state that lacks the case's beginning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from lintas.contracts.authority import CODES, Refusal, judge_alone, refusals
from lintas.contracts.envelope import Event

__all__ = ["AUTHORITY_PROBLEMS", "PREFIX", "authority"]

PREFIX: Final = "authority:"
"""A problem of the authority policy is coded ``authority:<code>``, ``<code>`` one of
:data:`lintas.contracts.authority.CODES` (the same code admission answers with)."""

AUTHORITY_PROBLEMS: Final[Mapping[str, str]] = {
    f"{PREFIX}{code}": f"the authority policy refuses it: {meaning}"
    for code, meaning in CODES.items()
}


def authority(events: Sequence[Event]) -> Iterator[tuple[Event, str, str]]:
    """One case's events (decoded, signed, in log order): each the policy refuses, coded."""
    refused: Iterator[tuple[Event, Refusal]]
    if events and events[0].envelope.prevhash is not None:
        found = ((event, judge_alone(event)) for event in events)
        refused = ((event, refusal) for event, refusal in found if refusal is not None)
    else:
        refused = refusals(events)
    for event, refusal in refused:
        where = f" ({refusal.field})" if refusal.field else ""
        yield (
            event,
            f"{PREFIX}{refusal.code}",
            f"{event.type} from {event.source}: {refusal.reason}{where}",
        )
