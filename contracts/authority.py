"""Who may say what about which case, in which state: the authority policy, for every type.

A signature proves who said an event; this policy decides whether that agency *may* say it
now. It is pure and total: :func:`judge` takes what the policy knows of one case
(:class:`CaseState`, folded from the case's admitted events in log order by :func:`apply`)
and one event, and returns a :class:`Refusal` (a stable code from :data:`CODES`, one
sentence, the field at fault) or None. :func:`refusals` runs a case's events through both.
The admission service judges before anything enters the log; every reader that sees a
whole case in order (the coordination record, the watchdog, ``lintas verify``) judges again
and quarantines what it refuses (defence in depth).

Per event type, a :class:`Rule` says who may send it (any of its :data:`PRINCIPALS`), in
which case state (:data:`STATES`), and the code when no principal fits. A few types check
one thing more (a legal basis, the kind of document, the hand-off a notice names). The
table in ``docs/AUTHORITY.md`` is generated from :data:`RULES` (``lintas contracts docs``)
and the contracts check fails when it is stale.

Who owns a case is :func:`lintas.contracts.gate.owner_after`, defined once there: the
opener, until its owner or the coordinator (KemenP2MI) assigns it on.

Where the honest traffic of the pathways (``demo/pathways.py``) needs more than the
issue's words, the rule allows it and still blocks the attack:

* consents are *recorded* (and overridden) by the owner, by the opener (the intake agency,
  where the parent gave consent: it records it as it opens the case, possibly after the
  coordinator already took the case over), or by a *party*: an agency holding a hand-off
  of the case still open (a mission abroad, asked to repatriate a child KemenP2MI owns,
  records the parent's consent to the partner agency abroad). Withdrawn only by the owner
  or the agency that recorded that consent;
* requests (referrals, documents, repatriations, rehabilitation and reintegration
  hand-offs, tracing) and assessments come from the owner, the coordinator (which may
  assign any case to itself anyway), the opener or a party (a rehabilitation centre hands
  the child on to the village; a mission refers to its partner abroad); an outsider opens
  none;
* ``oversight.escalated`` comes from the watchdog *or the owner* (KemenP2MI escalates a
  trafficking case to KPAI itself), and goes to KPAI only: it opens a hand-off asked of its
  target, and an agency holding one is a party; ``*.overdue`` notices from the watchdog only,
  and only for a hand-off still open (the watchdog, racing an answer, takes that refusal as
  nothing left to do);
* after ``case.erased`` a case may still be wound down (closed; hand-offs answered,
  revoked, noticed overdue and escalated; consents withdrawn): nothing is opened,
  recorded, assigned, assessed, reopened or erased again. The consent gate keeps personal
  data out of everything after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from lintas.contracts.agencies import PLATFORM_SERVICES, WATCHDOG
from lintas.contracts.envelope import Event
from lintas.contracts.errors import AuthorityRefused
from lintas.contracts.gate import COORDINATOR, OVERDUE_NOTICES, OVERSIGHT, owner_after
from lintas.contracts.handoffs import TERMINAL, Step, classify

__all__ = [
    "CLOCK_SKEW",
    "CODES",
    "ISSUES",
    "OVERRIDING",
    "PRINCIPALS",
    "RULES",
    "STATES",
    "CaseState",
    "Pending",
    "Refusal",
    "Rule",
    "allowed",
    "apply",
    "check",
    "check_alone",
    "judge",
    "judge_alone",
    "policy_table",
    "refusals",
    "start",
]

CODES: Final[Mapping[str, str]] = {
    "case_not_opened": "the case was never opened (no case.opened before it)",
    "case_already_opened": "the case is open already: it is opened once",
    "case_erased": "the case's personal data was erased: only winding it down may follow",
    "case_closed": "the case is closed already",
    "case_not_closed": "the case is not closed: only a closed case is reopened",
    "not_agency": "a platform service (the watchdog) sends only its notices",
    "not_owner": "only the case's owner (the opener until an assignment) may say it",
    "not_party": "only the owner, the opener, an agency holding an open hand-off of the "
    "case or (for requests and assessments) the coordinator may say it",
    "not_recorder": "only the owner or the agency that recorded the consent withdraws it",
    "not_entitled": "only an agency with a child-protection mandate overrides consent",
    "no_legal_basis": "an override names its legal basis",
    "not_asked": "only the agency asked answers a hand-off, and only one of its own family",
    "not_requester": "only the agency that asked revokes its request",
    "kind_not_issued": "the agency does not issue that kind of document",
    "no_such_request": "the notice names no hand-off still open (not answered, rejected, "
    "completed or revoked) asked of the agency it is sent to",
    "watchdog_only": "only the platform's deadline watchdog sends it",
    "kpai_only": "only KPAI reviews an escalation",
    "not_to_kpai": "an escalation goes to KPAI, and to no one else",
    "before_request": "it answers, revokes or notices a hand-off, yet is dated before the "
    "request (by more than the clock skew allowed)",
}
"""Every refusal code, with its documented meaning (stable: readers and reports key on it)."""

CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far two clocks (an agency's, the platform's) may disagree: an event may be dated this
much ahead of admission's clock (:data:`lintas.contracts.admission.MAX_FUTURE`), and an
answer this much before the request it answers, no more."""

ISSUES: Final[Mapping[str, frozenset[str]]] = {
    # Civil registration (Adminduk): NIK, birth certificate, child identity card, family card.
    "dukcapil": frozenset({"nik", "akta_kelahiran", "kia", "kk"}),
    # Missions abroad: travel document (SPLP), birth record abroad (SBPK), nationality.
    "kemlu": frozenset({"splp", "sbpk", "citizenship_confirmation"}),
    # Migrant-worker identity number (NIT) and its records.
    "kp2mi": frozenset({"nit"}),
}
"""Which kinds of document each agency issues; no other agency issues any."""

OVERRIDING: Final = frozenset({"kp2mi", "kemlu", "kemensos", "kemenpppa", "kpai"})
"""Agencies entitled to override consent: those with a child-protection mandate (UU 35/2014
Pasal 59), not civil registration, labour, villages, partners abroad or platform services."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an event may not be said by its source. Names agencies, types and fields, never
    a value of the child's data."""

    code: str
    reason: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """One hand-off of the case: who asked whom, of which family, and whether it ended."""

    requester: str
    request_id: str
    handoff: str
    asked: str
    ended: bool = False
    asked_at: datetime | None = None
    """The request's time (None where a reader does not know it: no time check then)."""


@dataclass(frozen=True, slots=True)
class CaseState:
    """What the policy knows of one case, folded from its admitted events in log order."""

    opened_by: str | None = None
    owner: str | None = None
    closed: bool = False
    erased: bool = False
    handoffs: tuple[Pending, ...] = ()
    consents: tuple[tuple[str, str], ...] = ()  # (consent id, the agency that recorded it)

    def handoff(self, requester: str, request_id: str) -> Pending | None:
        return next(
            (h for h in self.handoffs if h.request_id == request_id and h.requester == requester),
            None,
        )

    def party(self, agency: str) -> bool:
        """Whether ``agency`` holds a hand-off of the case still open."""
        return any(h.asked == agency and not h.ended for h in self.handoffs)

    def recorder(self, consent_id: str) -> str | None:
        return next((by for cid, by in self.consents if cid == consent_id), None)


def start() -> CaseState:
    """A case before any event."""
    return CaseState()


# -- the rules, as data -----------------------------------------------------------------------

# A family's answers answer only its own hand-offs (a referral.accepted never answers a
# document request that happens to share its id).
_ANSWERS_FAMILY: Final[Mapping[str, frozenset[str]]] = {
    "referral": frozenset({"referral"}),
    "document": frozenset({"document"}),
    "repatriation": frozenset({"repatriation"}),
    "rehabilitation": frozenset({"rehabilitation", "reintegration"}),
    "oversight": frozenset({"oversight"}),
    "tracing": frozenset({"tracing"}),
}

_ID_FIELD: Final[Mapping[str, str]] = {
    "referral": "referral_id",
    "document": "request_id",
    "repatriation": "repatriation_id",
    "rehabilitation": "handoff_id",
    "oversight": "escalation_id",
    "tracing": "tracing_id",
}


def _request_id(event: Event) -> str | None:
    value = getattr(event.data, _ID_FIELD[event.type.partition(".")[0]], None)
    return value if isinstance(value, str) else None


def _answered(state: CaseState, event: Event) -> Pending | None:
    """The hand-off an answer answers: asked by its target, of the answer's family."""
    request_id = _request_id(event)
    found = None if request_id is None else state.handoff(event.target, request_id)
    family = _ANSWERS_FAMILY[event.type.partition(".")[0]]
    return found if found is not None and found.handoff in family else None


def _asked(state: CaseState, event: Event) -> bool:
    found = _answered(state, event)
    if found is not None:
        return found.asked == event.source
    # A document issued unasked (no request id) is the issuer's own to give.
    return event.type == "document.issued" and _request_id(event) is None


def _requester(state: CaseState, event: Event) -> bool:
    request_id = _request_id(event)
    found = None if request_id is None else state.handoff(event.source, request_id)
    return found is not None and found.asked == event.target


def _recorder(state: CaseState, event: Event) -> bool:
    consent_id = getattr(event.data, "consent_id", None)
    return consent_id is not None and state.recorder(consent_id) == event.source


PRINCIPALS: Final[Mapping[str, tuple[str, Callable[[CaseState, Event], bool]]]] = {
    "agency": (
        "any agency (not a platform service)",
        lambda s, e: e.source not in PLATFORM_SERVICES,
    ),
    "owner": ("the owner", lambda s, e: e.source == s.owner),
    "coordinator": (f"the coordinator ({COORDINATOR})", lambda s, e: e.source == COORDINATOR),
    "opener": ("the opener", lambda s, e: e.source == s.opened_by),
    "party": ("an agency holding an open hand-off", lambda s, e: s.party(e.source)),
    "recorder": ("the consent's recorder", _recorder),
    "asked": ("the agency asked", _asked),
    "requester": ("the requester", _requester),
    "watchdog": (f"the watchdog ({WATCHDOG})", lambda s, e: e.source == WATCHDOG),
    "kpai": (f"KPAI ({OVERSIGHT})", lambda s, e: e.source == OVERSIGHT),
}
"""Who may say something, by name: (how the table says it, whether an event's source is)."""

STATES: Final[Mapping[str, str]] = {
    "new": "never opened",
    "live": "opened, not erased",
    "open": "opened, not closed",
    "closed": "closed, not erased",
    "any": "opened (erased too)",
}
"""The case states a rule may require."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may send one event type (any of ``who``), in which state; ``code`` when none."""

    who: tuple[str, ...]
    code: str
    state: str = "live"
    extra: tuple[str, ...] = ()  # further codes, from the type's own check


_REQUEST: Final = Rule(("owner", "coordinator", "opener", "party"), "not_party")
_ANSWER: Final = Rule(("asked",), "not_asked", "any", ("before_request",))
_REVOKE: Final = Rule(("requester",), "not_requester", "any", ("before_request",))
_OVERDUE: Final = Rule(("watchdog",), "watchdog_only", "any", ("no_such_request", "before_request"))

RULES: Final[Mapping[str, Rule]] = {
    "case.opened": Rule(("agency",), "not_agency", "new"),
    "case.assigned": Rule(("owner", "coordinator"), "not_owner"),
    "case.assessed": _REQUEST,
    "case.closed": Rule(("owner",), "not_owner", "open"),
    "case.reopened": Rule(("owner",), "not_owner", "closed"),
    "case.erased": Rule(("owner",), "not_owner"),
    "consent.recorded": Rule(("owner", "opener", "party"), "not_party"),
    "consent.overridden": Rule(
        ("owner", "opener", "party"), "not_party", extra=("not_entitled", "no_legal_basis")
    ),
    "consent.withdrawn": Rule(("owner", "recorder"), "not_recorder", "any"),
    "referral.requested": _REQUEST,
    "referral.accepted": _ANSWER,
    "referral.rejected": _ANSWER,
    "referral.completed": _ANSWER,
    "referral.revoked": _REVOKE,
    "referral.overdue": _OVERDUE,
    "document.requested": _REQUEST,
    "document.issued": replace(_ANSWER, extra=("kind_not_issued", "before_request")),
    "document.rejected": replace(_ANSWER, extra=("kind_not_issued", "before_request")),
    "document.overdue": _OVERDUE,
    "repatriation.requested": _REQUEST,
    "repatriation.scheduled": _ANSWER,
    "repatriation.completed": _ANSWER,
    "repatriation.failed": _ANSWER,
    "rehabilitation.handoff_requested": _REQUEST,
    "rehabilitation.handoff_accepted": _ANSWER,
    "rehabilitation.progress_reported": _ANSWER,
    "rehabilitation.completed": _ANSWER,
    "rehabilitation.reintegration_handoff": _REQUEST,
    "rehabilitation.handoff_overdue": _OVERDUE,
    "oversight.escalated": Rule(("watchdog", "owner"), "watchdog_only", "any", ("not_to_kpai",)),
    "oversight.reviewed": Rule(("kpai",), "kpai_only", "any", ("not_asked", "before_request")),
    "tracing.requested": _REQUEST,
    "tracing.match_found": _ANSWER,
    "tracing.reunified": _ANSWER,
}
"""The policy, per event type. A type missing here is refused (``not_agency``): a new type
needs its rule before anyone may send it (the contracts tests hold every type covered)."""


# -- judging ----------------------------------------------------------------------------------


def _state_refusal(state: CaseState, required: str, event: Event) -> Refusal | None:
    if required == "new":
        if state.opened_by is not None:
            return Refusal(
                "case_already_opened", f"{event.type}: the case was opened already", "subject"
            )
        return None
    if state.opened_by is None:
        return Refusal("case_not_opened", f"{event.type} is about a case never opened", "subject")
    if state.erased and required in ("live", "closed"):
        return Refusal("case_erased", f"{event.type} may not follow the case's erasure", "subject")
    if required == "open" and state.closed:
        return Refusal("case_closed", f"{event.type}: the case is closed already", "subject")
    if required == "closed" and not state.closed:
        return Refusal("case_not_closed", f"{event.type}: the case is not closed", "subject")
    return None


def _extra_refusal(state: CaseState, event: Event) -> Refusal | None:
    """The further check of a type whose rule names one."""
    data = event.data
    if event.type in OVERDUE_NOTICES:
        requester = getattr(data, "requester", None) or event.source
        request_id = _request_id(event)
        found = None if request_id is None else state.handoff(requester, request_id)
        if found is None or found.asked != event.target:
            return Refusal(
                "no_such_request",
                f"{event.type} names no hand-off of {requester} asked of {event.target}",
                "data",
            )
        if found.ended:
            # Answered (or revoked) already: a notice would tell the agency asked, its
            # worklist and KPAI's escalation after it that it still owes an answer.
            return Refusal(
                "no_such_request",
                f"{event.type} names a hand-off of {requester} answered already",
                "data",
            )
    elif event.type == "oversight.reviewed" and not _asked(state, event):
        return Refusal(
            "not_asked",
            f"{event.target} escalated nothing of this id to KPAI",
            "data.escalation_id",
        )
    return _own_refusal(event) or _time_refusal(state, event)


def _time_refusal(state: CaseState, event: Event) -> Refusal | None:
    """A step of a hand-off is not dated before its request: the record and the watchdog
    read an answer's time as when it was answered, so an agency asked late could otherwise
    date its answer back to look on time (admission takes a time up to
    :data:`lintas.contracts.admission.MAX_PAST` back, for an outbox held through an outage)."""
    step: Step | None = classify(event)
    if step is None or step.kind == "requested":
        return None
    found = state.handoff(step.requester, step.request_id)
    if found is None or found.asked_at is None or event.time >= found.asked_at - CLOCK_SKEW:
        return None
    return Refusal(
        "before_request",
        f"{event.type} is dated before the {found.handoff} request it names "
        f"(more than {CLOCK_SKEW} earlier)",
        "time",
    )


def _own_refusal(event: Event) -> Refusal | None:
    """The further checks that need nothing but the event itself."""
    data = event.data
    if event.type == "oversight.escalated" and event.target != OVERSIGHT:
        # It opens a hand-off asked of its target, which makes the target a party of the
        # case (it may then record consents): the watchdog, which may escalate any case,
        # would otherwise make any agency a party of any case.
        return Refusal(
            "not_to_kpai", f"an escalation goes to KPAI ({OVERSIGHT}), not {event.target}", "target"
        )
    if event.type == "consent.overridden":
        if event.source not in OVERRIDING:
            return Refusal(
                "not_entitled",
                f"{event.source} has no child-protection mandate to override consent",
                "source",
            )
        # As sent, whatever its version: an older event's text that holds no citation reads
        # as null today, and was no less a legal basis when it was admitted.
        basis = event.envelope.data.get("legal_basis")
        if not (basis.strip() if isinstance(basis, str) else basis):
            return Refusal(
                "no_legal_basis", "the override names no legal basis", "data.legal_basis"
            )
    elif event.type in ("document.issued", "document.rejected"):
        kind = getattr(data, "kind", None)
        if kind not in ISSUES.get(event.source, frozenset()):
            return Refusal(
                "kind_not_issued",
                f"{event.source} does not issue documents of kind {kind}",
                "data.kind",
            )
    return None


def judge(state: CaseState, event: Event) -> Refusal | None:
    """Why ``event.source`` may not say ``event`` now, or None when it may."""
    rule = RULES.get(event.type)
    if rule is None:
        return Refusal("not_agency", f"{event.type} has no authority rule", "type")
    refused = _state_refusal(state, rule.state, event)
    if refused is not None:
        return refused
    if event.source in PLATFORM_SERVICES and "watchdog" not in rule.who:
        return Refusal("not_agency", f"{event.source} does not send {event.type}", "source")
    if not any(PRINCIPALS[name][1](state, event) for name in rule.who):
        return _not_from(rule, event)
    return _extra_refusal(state, event) if rule.extra else None


def _not_from(rule: Rule, event: Event) -> Refusal:
    allowed = " or ".join(PRINCIPALS[name][0] for name in rule.who)
    return Refusal(rule.code, f"{event.type} comes only from {allowed}", "source")


_IDENTITIES: Final = frozenset({"agency", "coordinator", "watchdog", "kpai"})
"""The principals an event's source is or is not whatever the case's state."""


def judge_alone(event: Event) -> Refusal | None:
    """What :func:`judge` refuses whatever the case's state: for a reader that sees only
    part of a case (an agency's consumers get neither the case's opening, addressed to
    one agency, nor the hand-offs of others), so it cannot fold its state in log order.
    Never refuses what :func:`judge` admits."""
    rule = RULES.get(event.type)
    if rule is None:
        return Refusal("not_agency", f"{event.type} has no authority rule", "type")
    if event.source in PLATFORM_SERVICES and "watchdog" not in rule.who:
        return Refusal("not_agency", f"{event.source} does not send {event.type}", "source")
    if set(rule.who) <= _IDENTITIES and not any(
        PRINCIPALS[name][1](start(), event) for name in rule.who
    ):
        return _not_from(rule, event)
    return _own_refusal(event) if rule.extra else None


# -- folding ----------------------------------------------------------------------------------


def apply(state: CaseState, event: Event) -> CaseState:
    """The state after an *admitted* event (one :func:`judge` let through)."""
    kind = event.type
    if kind == "case.opened":
        state = replace(state, opened_by=event.source)
    elif kind == "case.closed":
        state = replace(state, closed=True)
    elif kind == "case.reopened":
        state = replace(state, closed=False)
    elif kind == "case.erased":
        state = replace(state, erased=True)
    elif kind == "consent.recorded":
        consent_id = getattr(event.data, "consent_id", None)
        if consent_id is not None and state.recorder(consent_id) is None:
            state = replace(state, consents=(*state.consents, (consent_id, event.source)))
    owner = owner_after(state.owner, event)
    if owner != state.owner:
        state = replace(state, owner=owner)
    step = classify(event)
    if step is None:
        return state
    if step.kind == "requested" and step.handoff is not None and step.asked is not None:
        if state.handoff(step.requester, step.request_id) is None:
            pending = Pending(
                step.requester, step.request_id, step.handoff, step.asked, asked_at=event.time
            )
            state = replace(state, handoffs=(*state.handoffs, pending))
    elif step.kind in TERMINAL:
        found = state.handoff(step.requester, step.request_id)
        if found is not None and not found.ended:
            ended = replace(found, ended=True)
            state = replace(
                state, handoffs=tuple(ended if h is found else h for h in state.handoffs)
            )
    return state


def allowed(
    events: Iterable[tuple[int, Event]],
) -> Iterator[tuple[int, Event, CaseState]]:
    """One case's events in log order, with their sequences: those the policy allows, each
    with the case's state once it is applied (the others decide nothing). What a reader
    that acts for the case (the read service's key operations) folds."""
    state = start()
    for seq, event in events:
        if judge(state, event) is None:
            state = apply(state, event)
            yield seq, event, state


def refusals(events: Iterable[Event]) -> Iterator[tuple[Event, Refusal]]:
    """One case's events in log order: each one refused, with why; the others are applied."""
    state = start()
    for event in events:
        refused = judge(state, event)
        if refused is None:
            state = apply(state, event)
        else:
            yield event, refused


# -- the generated table ----------------------------------------------------------------------


def policy_table() -> str:
    """``docs/AUTHORITY.md``: the policy as a table, from :data:`RULES` and :data:`CODES`."""
    lines = [
        "# Authority policy",
        "",
        "Generated from `contracts/authority.py` by `lintas contracts docs`; the contracts",
        "check fails when it is stale. Who may send each event type, in which case state,",
        "and the refusal code otherwise (the module's docstring says why where the demo's",
        "honest traffic needs more than the plain rule).",
        "",
        "| event type | who may send it | case state | refused with |",
        "| --- | --- | --- | --- |",
    ]
    for event_type, rule in sorted(RULES.items()):
        who = " or ".join(PRINCIPALS[name][0] for name in rule.who)
        codes = ", ".join(f"`{c}`" for c in (rule.code, *rule.extra))
        lines.append(f"| `{event_type}` | {who} | {STATES[rule.state]} | {codes} |")
    lines += [
        "",
        "A case in another state than the one required is refused with `case_not_opened`,",
        "`case_already_opened`, `case_erased`, `case_closed` or `case_not_closed`. A platform",
        "service sending anything but its notices is refused with `not_agency`.",
        "",
        "Documents each agency issues: "
        + "; ".join(f"{a}: {', '.join(sorted(k))}" for a, k in sorted(ISSUES.items()))
        + ".",
        "",
        "Entitled to override consent: " + ", ".join(sorted(OVERRIDING)) + ".",
        "",
        "## Codes",
        "",
        "| code | meaning |",
        "| --- | --- |",
        *(f"| `{code}` | {meaning} |" for code, meaning in CODES.items()),
        "",
    ]
    return "\n".join(lines)


def check(state: CaseState, event: Event) -> CaseState:
    """The state after ``event``, or :class:`~lintas.contracts.AuthorityRefused` when
    :func:`judge` refuses it: what a reader calls for each event it folds."""
    refused = judge(state, event)
    if refused is not None:
        raise AuthorityRefused(refused, event_type=event.type, source=event.source)
    return apply(state, event)


def check_alone(event: Event) -> None:
    """:class:`~lintas.contracts.AuthorityRefused` when :func:`judge_alone` refuses."""
    refused = judge_alone(event)
    if refused is not None:
        raise AuthorityRefused(refused, event_type=event.type, source=event.source)
