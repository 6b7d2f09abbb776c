"""One decision: may this message, sent by this agency for this case, enter the log now?

The checks, cheapest first; the first that fails is the answer (one refusal, one code).
Those down to the signature need nothing of the case (:func:`examine`) and come before
its state is read (a head read, or a walk of the case checking every signature): junk
sent for random case ids costs admission no read of the log. The rest (:func:`decide`)
judge the event against the case's state:

    size and nesting         contracts.admission.shape_refusal
    contract                 decode: envelope, type, version, data schema
    subject and envelope     contracts.admission.subject_refusal
    nothing personal in clear contracts.admission.clear_refusal (an older version's plaintext)
    signature                the source's registered key, in force at the event's time
    time                     contracts.admission.time_refusal (documented skew)
    id                       never admitted before with other content
    chain                    prevhash = the case's head (contracts.admission.chain_refusal)
    authority                contracts.authority.judge (who may say what, in which state)
    consent gate             contracts.gate.gate_refusal (sealed data to another agency)

An event already admitted with the same id and the same content is not refused: its first
admission is the answer (a sender that lost the answer sends again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lintas.admission.cases import CaseState
from lintas.contracts import (
    ContractError,
    Event,
    SignatureError,
    authority,
    decode,
    gate,
    message_hash,
    parse_message,
)
from lintas.contracts.admission import (
    ID_TAKEN,
    Refusal,
    chain_refusal,
    clear_refusal,
    shape_refusal,
    subject_refusal,
    time_refusal,
)
from lintas.infra.keys.signing import UnknownKey, Verifier

__all__ = ["Examined", "Verdict", "decide", "examine", "judge"]


@dataclass(frozen=True, slots=True)
class Verdict:
    event: Event | None = None
    hash: str | None = None
    refusal: Refusal | None = None
    admitted_before: tuple[int, str] | None = None
    """(seq, hash) of the same event, admitted earlier."""
    own: tuple[int, str] | None = None
    """With an ``ID_TAKEN`` refusal: (seq, hash) of the sender's own event of the case that
    holds the id (its retry with other content, e.g. rebuilt with a new time)."""


@dataclass(frozen=True, slots=True)
class Examined:
    """What the checks that need no case state made of a message: the event, its parsed
    form and its hash, or why it cannot be one."""

    event: Event | None = None
    hash: str | None = None
    refusal: Refusal | None = None


async def examine(
    raw: bytes, agency: str, case_id: str, verifier: Verifier, *, asked: float | None = None
) -> Examined:
    """Size, shape, contract, subject, nothing in clear, signature: everything judged
    before the case's state is read, so junk (any case id, no valid signature) costs no
    read of the log. ``asked``: from when a registry read serves a key id the verifier
    lacks (:meth:`~lintas.infra.keys.signing.Verifier.check`): admission passes when the
    message's batch was fetched."""
    _, refused = shape_refusal(raw)
    if refused is not None:
        return Examined(refusal=refused)
    # Parsed again, the way every reader parses a stored message: its canonical form (the
    # signature's input, the hash) then takes the C path, at about a third of the cost of
    # re-encoding the plain dicts the shape check made (docs/PERFORMANCE.md, Admission).
    doc = parse_message(raw)
    try:
        event = decode(raw, parsed=doc)
    except ContractError as exc:
        return Examined(refusal=Refusal("contract", str(exc), getattr(exc, "field", None)))
    refused = subject_refusal(event, agency, case_id) or clear_refusal(event)
    if refused is not None:
        return Examined(event, refusal=refused)
    try:
        await verifier.check(raw, event.envelope, parsed=doc, asked=asked)
    except UnknownKey as exc:
        return Examined(event, refusal=Refusal("unknown_key", str(exc), "keyid"))
    except SignatureError as exc:
        code = "unsigned" if event.envelope.signature is None else "bad_signature"
        return Examined(event, refusal=Refusal(code, str(exc), "signature"))
    return Examined(event, message_hash(raw, doc))


def decide(examined: Examined, state: CaseState, now: datetime) -> Verdict:
    """The checks on the case's state, of an event :func:`examine` let through."""
    event, digest = examined.event, examined.hash
    if examined.refusal is not None or event is None or digest is None:
        return Verdict(event, refusal=examined.refusal)
    known = state.ids.get(event.id)
    if known is not None:
        seq, stored, source = known
        if stored == digest:
            return Verdict(event, digest, admitted_before=(seq, stored))
        own = (seq, stored) if source == event.source else None
        return Verdict(event, refusal=ID_TAKEN, own=own)
    for refused in (
        time_refusal(event, now),
        chain_refusal(event, state.head),
        authority.judge(state.policy, event),
    ):
        if refused is not None:
            return Verdict(event, refusal=refused)
    gated = gate.gate_refusal(state.book, event)
    if gated is not None:
        return Verdict(event, refusal=Refusal("gate", str(gated), getattr(gated, "field", None)))
    return Verdict(event, digest)


async def judge(
    raw: bytes, agency: str, case_id: str, state: CaseState, verifier: Verifier, now: datetime
) -> Verdict:
    """:func:`examine`, then :func:`decide`: the whole judgement, for callers that hold the
    case's state already."""
    return decide(await examine(raw, agency, case_id, verifier), state, now)
