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

from collections.abc import Iterable, Mapping
from typing import Any, Final

from lintas.contracts.authority import CODES, Refusal, apply, judge, judge_alone, start
from lintas.contracts.envelope import Event

__all__ = ["AUTHORITY_PROBLEMS", "PREFIX", "authority"]

PREFIX: Final = "authority:"
"""A problem of the authority policy is coded ``authority:<code>``, ``<code>`` one of
:data:`lintas.contracts.authority.CODES` (the same code admission answers with)."""

AUTHORITY_PROBLEMS: Final[Mapping[str, str]] = {
    f"{PREFIX}{code}": f"the authority policy refuses it: {meaning}"
    for code, meaning in CODES.items()
}

_ALONE: Final = "alone"
"""The state of a case begun before what is read: each event judged by itself."""


def authority(event: Event, state: Any) -> tuple[Any, Iterable[tuple[str, str]]]:
    """The next of one case's events (decoded, signed, in log order) and the case's state
    so far (None before its first here): the state after it, and the refusal coded if the
    policy refuses it (a refused event changes nothing, as admission would never have
    admitted it). One state per case is held, never the case's events."""
    if state is None:
        state = _ALONE if event.envelope.prevhash is not None else start()
    refusal: Refusal | None
    if state is _ALONE:
        refusal = judge_alone(event)
    else:
        refusal = judge(state, event)
        if refusal is None:
            state = apply(state, event)
    if refusal is None:
        return state, ()
    where = f" ({refusal.field})" if refusal.field else ""
    return state, (
        (f"{PREFIX}{refusal.code}", f"{event.type} from {event.source}: {refusal.reason}{where}"),
    )
