"""Admission: what an agency sends, what the platform answers, and the rules it admits by.

Agencies do not write the event log. An agency *sends* each signed event to the platform's
intake (``lintas_intake.<agency>.<case_id>``, with a ``Lintas-Reply`` header naming an
inbox of its own), and the admission service, the only writer of ``LINTAS``, *admits* it or
refuses it and answers on that inbox with one :class:`Answer`:

* admitted: the event's stream sequence, its hash (the next event of the case names it as
  ``prevhash``), and a receipt the platform signed, which the agency keeps as proof;
* refused: a stable code from :data:`CODES`, a reason in one sentence, the field at fault
  and, when the chain moved on, the case's head, so the agency re-decides on it at once.

Where the hash chain is computed: by the agency, inside the envelope it signs (``prevhash``),
and checked here. The chain then stays a property of what each agency signed: an archive
proves it without trusting the platform, which could otherwise re-link events at will. The
price, a publisher needing the case's head, is paid by the refusal carrying it.

The pure checks live here so that any reader (a non-Python agency's own validator, verify)
applies the same limits. The signature check needs the key registry and lives beside the
service; the authority policy is :mod:`lintas.contracts.authority`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from lintas.contracts import registry
from lintas.contracts.authority import CLOCK_SKEW, Refusal
from lintas.contracts.envelope import Event
from lintas.contracts.freetext import carried

__all__ = [
    "ADMITTED_AT_HEADER",
    "CODES",
    "ID_TAKEN",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_FUTURE",
    "MAX_PAST",
    "REPLY_HEADER",
    "SENDER_CODES",
    "Answer",
    "Head",
    "Receipt",
    "Refusal",
    "chain_refusal",
    "clear_refusal",
    "duplicate_member",
    "shape_refusal",
    "subject_refusal",
    "time_refusal",
]

REPLY_HEADER: Final = "Lintas-Reply"
"""The inbox the answer goes to; it must lie under the sending agency's own inbox prefix."""

ADMITTED_AT_HEADER: Final = "Lintas-Admitted-At"
"""The header admission writes with each event it stores: when it admitted it (ISO 8601),
the ``admitted_at`` of its receipt, which a resend of the event is answered with again."""

MAX_BYTES: Final = 64 * 1024
"""An event's largest size: ten times the largest honest event, far below NATS's 1 MiB."""
MAX_DEPTH: Final = 16
"""The deepest nesting of JSON objects and arrays an event may have (honest ones reach 5)."""
MAX_FUTURE: Final = CLOCK_SKEW
"""How far ahead of the platform's clock an event's ``time`` may be: clock skew, no more."""
MAX_PAST: Final = timedelta(days=30)
"""How far behind: an outbox held through a long outage still gets in. A back-dated event
that would rewrite a case's past does not: a step of a hand-off is not dated before its
request (:func:`lintas.contracts.authority.judge`, ``before_request``)."""

CODES: Final[dict[str, str]] = {
    "too_large": f"the message is larger than {MAX_BYTES} bytes",
    "too_deep": f"the JSON nests deeper than {MAX_DEPTH} levels",
    "not_json": "the body is not a JSON object in UTF-8 (no byte order mark)",
    "duplicate_member": "a JSON object names one member twice (readers would disagree on it)",
    "contract": "the event breaks its contract (envelope, type, version or data schema)",
    "not_sealed": "a personal field or a free text travels in clear (an older version without "
    "sealing or codes): send the newest version, the field sealed with the case's data key "
    "or as a code",
    "subject_mismatch": "the intake subject does not name the envelope's source and case",
    "unsigned": "the event carries no signature",
    "bad_signature": "the signature does not hold, or the key is not the source's",
    "unknown_key": "the key id is not registered, or not in force at the event's time",
    "time_skew": "the event's time is too far from the platform's clock",
    "duplicate_id": "an event with this id, and other content, was admitted before (when it "
    "is the sender's own, in the same case, the answer names it: seq and hash)",
    "chain_moved": "prevhash is not the hash of the case's last event (the head is attached)",
    "gate": "the consent gate refuses it (no consent covers the agency addressed, ...)",
    "bad_reply": "the reply inbox is missing or not under the sender's own inbox prefix",
}
"""Admission's own refusal codes; an authority refusal carries the policy's code
(:data:`lintas.contracts.authority.CODES`)."""


SENDER_CODES: Final[frozenset[str]] = frozenset(
    {"unsigned", "bad_signature", "unknown_key", "time_skew", "bad_reply"}
)
"""Refusals about the sender rather than the event (its key, its clock, its inbox): every
event it sends is refused alike until that is set right, and then the same event may be
admitted (a ``time`` ahead of the platform's clock, too). An outbox holds on these, and
sets aside a row refused for any other code, which sending again cannot change."""


ID_TAKEN: Final = Refusal("duplicate_id", "the id is taken", "id")
"""An id admitted before with other content, in this case or another."""


class Head(BaseModel):
    """A case's last admitted event: its stream sequence and hash (none for a new case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = 0
    hash: str | None = None


class Receipt(BaseModel):
    """The platform's signed statement that it admitted one event: what an agency keeps.

    One admission, one receipt: a resend of the event is answered with the same document
    (``admitted_at`` as stored with the event, :data:`ADMITTED_AT_HEADER`), never one dated
    at the resend; the answer's ``duplicate`` says it was a resend. Ed25519 signs
    deterministically, so the signature is the first one's too while the key is the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    case_id: str
    source: str
    seq: int
    hash: str
    admitted_at: str
    keyid: str
    signature: str


class Answer(BaseModel):
    """The one reply to a sent event.

    ``duplicate``: the event was admitted before (a sender that lost its answer sent it
    again); the answer repeats the first one's sequence and hash. A ``duplicate_id``
    refusal carries ``seq`` and ``hash`` when the id is the sender's own event of the same
    case: a retry that rebuilt the event (a new ``time``) finds the one the log holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    admitted: bool
    event_id: str | None = None
    seq: int | None = None
    hash: str | None = None
    receipt: Receipt | None = None
    duplicate: bool = False
    code: str | None = None
    reason: str | None = None
    field: str | None = None
    head: Head | None = None

    @classmethod
    def refused(
        cls,
        refusal: Refusal,
        event_id: str | None,
        head: Head | None = None,
        *,
        stored: tuple[int, str] | None = None,
    ) -> Answer:
        return cls(
            admitted=False,
            event_id=event_id,
            seq=stored[0] if stored else None,
            hash=stored[1] if stored else None,
            code=refusal.code,
            reason=refusal.reason,
            field=refusal.field,
            head=head,
        )


def _depth(doc: Any, limit: int) -> int:
    # Iterative: a hostile nesting must not reach Python's recursion limit.
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


class _DuplicateMember(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The standard library keeps the last of two equal names, other parsers the first: a
    # signature over one reading would then vouch for another.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMember(name)
            seen.add(name)
    return doc


def duplicate_member(raw: bytes) -> str | None:
    """The first member name an object in the JSON ``raw`` names twice, if any (None too
    when ``raw`` is no JSON): the check admission refuses ``duplicate_member`` by, for
    readers of a log or an archive."""
    try:
        json.loads(raw, object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        return exc.name
    except (ValueError, RecursionError):
        return None
    return None


def shape_refusal(raw: bytes) -> tuple[dict[str, Any] | None, Refusal | None]:
    """The parsed body, or why its size or shape cannot be an event."""
    if len(raw) > MAX_BYTES:
        return None, Refusal("too_large", f"{len(raw)} bytes, at most {MAX_BYTES}")
    try:
        # UTF-8 without a byte order mark, as RFC 8259 has JSON exchanged between systems:
        # json.loads on bytes also reads UTF-16 and UTF-32, which the signature (over the
        # parsed document) would let onto the log for every other agency's parser to refuse.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, Refusal("not_json", "the body is not UTF-8")
    try:
        doc = json.loads(text, object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        return None, Refusal("duplicate_member", f"member {exc.name!r} appears twice", exc.name)
    except (ValueError, RecursionError):
        return None, Refusal("not_json", "the body is not JSON")
    if not isinstance(doc, dict):
        return None, Refusal("not_json", "the body is JSON but not an object")
    if _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        return None, Refusal("too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return doc, None


def clear_refusal(event: Event) -> Refusal | None:
    """Nothing personal, and no free text, enters the log in clear, whatever version it was
    sent in: an older version's plaintext stays readable by anyone who reads the log, for
    good. Readers still read the older versions already in the log."""
    clear = event.data.clear_fields()
    if clear:
        return Refusal(
            "not_sealed",
            f"{', '.join(clear)} in clear: send version {type(event.data).VERSION}'s field "
            "sealed (the newest version seals it on the wire)",
            f"data.{clear[0]}",
        )
    # A field the newest version carries as a code was free text before: the old version
    # would let any text, a child's name included, into the log in clear.
    sent = registry.lookup(event.type, event.envelope.dataversion)
    texts = carried(sent, event.envelope.data)
    if texts:
        return Refusal(
            "not_sealed",
            f"{', '.join(texts)} free text in clear (v{sent.VERSION}): send version "
            f"{type(event.data).VERSION}, which carries it as a code or sealed",
            f"data.{texts[0]}",
        )
    return None


def subject_refusal(event: Event, agency: str, case_id: str) -> Refusal | None:
    """The intake subject is the sender's own (the bus lets it send only there), so the
    envelope must name the same source and case."""
    if event.source != agency:
        return Refusal(
            "subject_mismatch", f"sent by {agency}, but its source is {event.source}", "source"
        )
    if event.case_id != case_id:
        return Refusal("subject_mismatch", "sent for another case than its subject", "subject")
    return None


def time_refusal(event: Event, now: datetime) -> Refusal | None:
    if event.time > now + MAX_FUTURE:
        return Refusal(
            "time_skew", f"its time is more than {MAX_FUTURE} ahead of the platform", "time"
        )
    if event.time < now - MAX_PAST:
        return Refusal("time_skew", f"its time is more than {MAX_PAST.days} days ago", "time")
    return None


def chain_refusal(event: Event, head: Head) -> Refusal | None:
    """The event must name the case's last admitted event as ``prevhash`` (none for a new case)."""
    if event.envelope.prevhash != head.hash:
        return Refusal(
            "chain_moved",
            "prevhash is not the hash of the case's last event"
            if head.hash
            else "the case has no event yet, so prevhash must be absent",
            "prevhash",
        )
    return None
