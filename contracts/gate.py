"""The privacy gate: which events need a consent, and whether the case's consents cover it.

Pure rules both ends apply alike: the Publisher refuses what the gate refuses (nothing is
published), and the consumer of the agency addressed quarantines it (an event that
bypassed the Publisher is never applied). The state they decide on is a case's
:class:`ConsentBook`, folded from the case's *broadcast* consent events (``consent.*``
addressed to ``all``, which every agency's consumer receives, so every gate sees the same
book) and ``case.erased``.

What needs a consent covering the agency addressed (``target``)::

    referral.requested                         scope "services"
    tracing.requested                          scope "tracing"
    any event to a partner abroad              scope "disclosure_to_agencies" (unless above)
    any other event carrying personal data     scope "disclosure_to_agencies"
      (except case.opened: the intake, sealed for the opening agency alone until a
       consent covers others)

Needing none: broadcasts (notices to everyone, carrying sealed data only); overdue
notices (``referral.overdue``, ``document.overdue``, ``rehabilitation.handoff_overdue``:
they carry no personal data and name only a request the agency addressed already
received, under the consent that let it be sent; the platform's deadline watchdog sends
them); and ``oversight.escalated`` to KPAI, whose oversight mandate (UU 35/2014) is the
legal basis, so an escalation is never held back for want of a consent. A sealed
``reason`` in it opens only for KPAI if a consent or override gives KPAI the case's data
key; the watchdog's escalations carry no reason at all. A consent
covers an event when a ``consent.recorded`` with that scope names the target and was not
withdrawn before the event, or a ``consent.overridden`` (officer's role, legal basis,
reason) does. After ``case.erased`` no event may carry personal data.

Minimisation: an event addressed to a partner abroad (``<cc>-<agency>``) may carry only the
fields its version declares for cross-border sharing (``EventData.CROSS_BORDER``, published
in ``contracts/schemas/cross-border.json``).

Who owns a case (whom an erasure must come from, and whom the record names): the agency
that opened it, until a ``case.assigned`` hands it on. An assignment counts only from the
case's owner, or from the coordinating ministry (:data:`COORDINATOR`, KemenP2MI, which
coordinates every case and its return); any other agency's ``case.assigned`` stays on the
log and changes no owner, so no agency can make itself owner and then erase a case; a
``case.erased`` counts as the case's erasure only from its owner then
(:func:`owners_erasure`).

Who may read a case's sealed fields follows the same book: the agencies covered by an
active grant with a scope in :data:`READ_SCOPES` hold the case's data key, except partners
abroad, who never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from lintas.contracts import registry
from lintas.contracts.agencies import BROADCAST, PLATFORM_SERVICES, is_agency_id, is_partner_abroad
from lintas.contracts.envelope import Event
from lintas.contracts.errors import (
    CaseErased,
    ConsentMissing,
    ContractError,
    GateRefused,
    NotForAbroad,
)
from lintas.contracts.families import consent

__all__ = [
    "CONSENT_TYPES",
    "COORDINATOR",
    "ERASING",
    "GRANTING",
    "MADE",
    "NAMING_OWNER",
    "OVERDUE_NOTICES",
    "OVERSIGHT",
    "READ_SCOPES",
    "TO_EVERYONE",
    "ConsentBook",
    "Grant",
    "Requirement",
    "border_refusal",
    "carries_personal",
    "erases",
    "fold",
    "fold_all",
    "gate_refusal",
    "lost_readers",
    "may_hold_keys",
    "misaddressed",
    "owner_after",
    "owner_of",
    "owners_erasure",
    "refusal",
    "requirement",
    "wrap_refusal",
]

CONSENT_TYPES: Final = frozenset({"consent.recorded", "consent.overridden", "consent.withdrawn"})
READ_SCOPES: Final = frozenset({"services", "disclosure_to_agencies", "tracing"})
"""Scopes that let an agency read the child's identity (``reporting`` is aggregate only)."""

_SCOPE_OF: Final = {"referral.requested": "services", "tracing.requested": "tracing"}
_INTAKE: Final = frozenset({"case.opened"})
OVERDUE_NOTICES: Final = frozenset(
    {"referral.overdue", "document.overdue", "rehabilitation.handoff_overdue"}
)
OVERSIGHT: Final = "kpai"
"""The child-protection commission: escalations to it need no consent (its mandate)."""
COORDINATOR: Final = "kp2mi"
"""KemenP2MI coordinates every case: it may assign any case, owner or not."""
GRANTING: Final = frozenset({"consent.recorded", "consent.overridden"})
"""What gives agencies a case's data: it counts only signed by its source, with a key the
registry holds (a forged grant must never open anything)."""
NAMING_OWNER: Final = frozenset({"case.opened", "case.assigned"})
"""What decides who owns a case (whom an erasure or assignment must come from): it counts
only signed by its source."""
ERASING: Final = frozenset({"case.erased"})
"""What destroys a case's data keys: it counts only signed by its source. As a restriction on
sharing (the gate refuses personal data after it) it counts as soon as it decodes: a key missing
here must never let data through."""
TO_EVERYONE: Final = CONSENT_TYPES | {"case.erased", "case.assigned"}
"""What every agency's gate decides on (a case's consents, its erasure, who owns it): only
ever addressed to ``all``, since a gate counts only the broadcasts it receives."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One consent (or override) of a case: who may receive what, from which event on."""

    seq: int
    by: str
    consent_id: str | None  # None: an override
    scopes: frozenset[str]
    agencies: frozenset[str]
    withdrawn_seq: int | None = None

    @property
    def override(self) -> bool:
        return self.consent_id is None

    def active(self, at: int | None) -> bool:
        """In force for the event at stream sequence ``at`` (None: now); for the withdrawal
        itself, that is just before it."""
        if at is not None and self.seq >= at:
            return False
        return self.withdrawn_seq is None or (at is not None and self.withdrawn_seq >= at)


@dataclass(frozen=True, slots=True)
class ConsentBook:
    """A case's consents and overrides, and whether its personal data was erased."""

    grants: tuple[Grant, ...] = ()
    erased_seq: int | None = None

    def active(self, at: int | None = None) -> list[Grant]:
        return [g for g in self.grants if g.active(at)]

    def covering(self, scope: str, agency: str, at: int | None = None) -> Grant | None:
        return next(
            (g for g in self.grants if scope in g.scopes and agency in g.agencies and g.active(at)),
            None,
        )

    def readers(self, at: int | None = None) -> frozenset[str]:
        """Agencies that may read the case's sealed fields (hold its data key): those an
        active grant with a scope in :data:`READ_SCOPES` names, but never a partner
        abroad (minimisation: nothing personal crosses the border, not even the key)."""
        return frozenset(
            agency
            for g in self.active(at)
            if g.scopes & READ_SCOPES
            for agency in g.agencies
            if not is_partner_abroad(agency)
        )

    def about(self, agency: str) -> ConsentBook:
        """Only the grants naming ``agency``: all its gate needs to decide for it."""
        grants = tuple(g for g in self.grants if agency in g.agencies)
        return self if len(grants) == len(self.grants) else replace(self, grants=grants)

    def erased(self, at: int | None = None) -> bool:
        return self.erased_seq is not None and (at is None or self.erased_seq < at)


def fold(book: ConsentBook, event: Event, seq: int) -> ConsentBook:
    """The book after the event at stream sequence ``seq`` (others leave it as it is)."""
    if event.type == "case.erased":
        return book if book.erased_seq is not None else replace(book, erased_seq=seq)
    if event.type not in CONSENT_TYPES or event.target != BROADCAST:
        return book
    data = event.data
    if any(g.seq == seq for g in book.grants):  # the same event again
        return book
    if isinstance(data, consent.ConsentRecordedV1):
        grant = Grant(
            seq, event.source, data.consent_id, frozenset(data.scopes), frozenset(data.agencies)
        )
        return replace(book, grants=(*book.grants, grant))
    if isinstance(data, consent.ConsentOverriddenV3):
        grant = Grant(seq, event.source, None, frozenset(data.scopes), frozenset(data.agencies))
        return replace(book, grants=(*book.grants, grant))
    if isinstance(data, consent.ConsentWithdrawnV2):
        withdrawn = tuple(
            replace(g, withdrawn_seq=seq)
            if g.consent_id == data.consent_id and g.withdrawn_seq is None and g.seq < seq
            else g
            for g in book.grants
        )
        return replace(book, grants=withdrawn)
    return book


def lost_readers(book: ConsentBook, seq: int, by: str) -> frozenset[str]:
    """The agencies that may no longer read the case once the withdrawal at ``seq`` (by
    ``by``, which keeps its own key) is folded into ``book``: whose wraps are erased."""
    return book.readers(at=seq) - book.readers() - {by}


MADE: Final = "made"
"""The grant a case's first wrap names: its maker's own, made with the key itself."""


def may_hold_keys(agency: str) -> bool:
    """Whether ``agency`` may ever hold a case's data key: an agency, but never a partner
    abroad (minimisation) nor a platform service (the platform's operator sees no child)."""
    return (
        is_agency_id(agency) and agency not in PLATFORM_SERVICES and not is_partner_abroad(agency)
    )


def wrap_refusal(book: ConsentBook, *, grant_seq: int, maker: str, recipient: str) -> str | None:
    """Why ``maker`` may not wrap the case's data key for ``recipient`` on the strength of
    the grant at stream sequence ``grant_seq`` (None: it may). ``book`` is folded from the
    case's events the authority policy allows, up to now; that ``maker`` holds the key is
    the key store's to say.

    The grant must be a consent or override on the log, still in force, with a scope that
    reads the child's identity, naming ``recipient``, and published by ``maker`` (the
    Publisher that records a consent wraps for it), and the case not erased."""
    if book.erased():
        return "the case was erased: its data key goes to no one"
    if not may_hold_keys(recipient):
        return f"{recipient} never holds a case's data key (a partner abroad or a platform service)"
    if not may_hold_keys(maker):
        return f"{maker} never holds a case's data key, so it wraps it for no one"
    grant = next((g for g in book.grants if g.seq == grant_seq), None)
    if grant is None:
        return f"no admitted consent or override of the case is at seq {grant_seq}"
    if grant.by != maker:
        return f"the grant at seq {grant_seq} was given by {grant.by}, not {maker}"
    if not grant.active(None):
        return f"the consent at seq {grant_seq} was withdrawn"
    if not grant.scopes & READ_SCOPES:
        return f"the grant at seq {grant_seq} gives no scope that reads the child's identity"
    if recipient not in grant.agencies:
        return f"the grant at seq {grant_seq} does not name {recipient}"
    return None


def owner_after(owner: str | None, event: Event) -> str | None:
    """The case's owner once ``event`` is folded, ``owner`` being the one before it."""
    if event.type == "case.opened":
        return event.source if owner is None else owner
    if event.type == "case.assigned" and event.source in (owner, COORDINATOR):
        return getattr(event.data, "owner", owner)
    return owner


def owner_of(events: Iterable[Event]) -> str | None:
    """The case's owner as its events (in stream order) say: the agency that opened it,
    or the one it was last assigned to by its owner or the coordinator; None if none is
    named among them."""
    owner = None
    for event in events:
        owner = owner_after(owner, event)
    return owner


def erases(owner: str | None, event: Event) -> bool:
    """Whether ``event`` is the case's erasure, ``owner`` owning the case before it: a
    ``case.erased`` by the owner (by anyone while no event names an owner)."""
    return event.type == "case.erased" and owner in (None, event.source)


def owners_erasure(events: Iterable[tuple[int, Event]]) -> int | None:
    """The stream sequence of the case's erasure (its first ``case.erased`` made by whoever
    owned the case then; by anyone, while no event names an owner), or None. The record
    keeps that erasure, and the case's keys are erased for it, for no other."""
    owner = None
    for seq, event in events:
        if erases(owner, event):
            return seq
        owner = owner_after(owner, event)
    return None


def fold_all(events: Iterable[tuple[int, Event]], book: ConsentBook | None = None) -> ConsentBook:
    book = book or ConsentBook()
    for seq, event in events:
        book = fold(book, event, seq)
    return book


@dataclass(frozen=True, slots=True)
class Requirement:
    scope: str
    agency: str


def misaddressed(event_type: str, target: str) -> ContractError | None:
    """Why an event of ``event_type`` may not go to ``target`` alone, if it may not."""
    if event_type in TO_EVERYONE and target != BROADCAST:
        return ContractError(
            f"is addressed to {target}; it must go to everyone ('all'), since every "
            "agency's gate needs it",
            event_type=event_type,
            field="target",
        )
    return None


def requirement(event_type: str, target: str, personal: bool) -> Requirement | None:
    """The consent an event needs (see the module doc), or None."""
    if target == BROADCAST or event_type in OVERDUE_NOTICES:
        return None
    if event_type == "oversight.escalated" and target == OVERSIGHT:
        return None
    scope = _SCOPE_OF.get(event_type)
    if scope is not None:
        return Requirement(scope, target)
    if is_partner_abroad(target):
        return Requirement("disclosure_to_agencies", target)
    if personal and event_type not in _INTAKE:
        return Requirement("disclosure_to_agencies", target)
    return None


def carries_personal(event: Event) -> bool:
    data = event.data
    return any(getattr(data, name) is not None for name in type(data).personal_fields())


def refusal(
    book: ConsentBook,
    event_type: str,
    source: str,
    target: str,
    *,
    personal: bool,
    at: int | None = None,
) -> GateRefused | None:
    """Why the gate refuses the event (``at``: its stream sequence; None: now), or None."""
    if personal and book.erased(at):
        return CaseErased(
            f"{event_type} from {source} carries personal data, but the case's personal data "
            "was erased (case.erased): nothing personal may be shared for it any more"
        )
    needed = requirement(event_type, target, personal)
    if needed is None or book.covering(needed.scope, needed.agency, at) is not None:
        return None
    withdrawn = any(
        needed.scope in g.scopes and needed.agency in g.agencies and g.withdrawn_seq is not None
        for g in book.grants
    )
    carries = " carries personal data and" if personal else ""
    abroad = " (a partner abroad)" if is_partner_abroad(target) else ""
    state = (
        "the consent that covered it was withdrawn"
        if withdrawn
        else "no consent.recorded covers it, and no consent.overridden (officer's role, "
        "legal basis, reason) names it"
    )
    return ConsentMissing(
        f"{event_type} from {source} to {target}{abroad}{carries} needs consent for scope "
        f"{needed.scope!r} covering {target}: {state}"
    )


def gate_refusal(book: ConsentBook, event: Event, at: int | None = None) -> GateRefused | None:
    """:func:`refusal` and :func:`border_refusal` for a decoded event."""
    refused = refusal(
        book, event.type, event.source, event.target, personal=carries_personal(event), at=at
    )
    if refused is not None or not is_partner_abroad(event.target):
        return refused  # (the fields of an event to an agency at home are not looked at)
    present = [k for k, v in event.envelope.data.items() if v is not None]
    return border_refusal(event.type, event.envelope.dataversion, present, event.target)


def border_refusal(
    event_type: str, version: int, fields: Iterable[str], target: str
) -> NotForAbroad | None:
    """An event to a partner abroad carrying fields not declared for cross-border sharing."""
    if not is_partner_abroad(target):
        return None
    allowed = registry.lookup(event_type, version).CROSS_BORDER
    extra = sorted(set(fields) - allowed)
    if not extra:
        return None
    declared = ", ".join(sorted(allowed)) or "none"
    return NotForAbroad(
        f"{event_type} v{version} to {target} (a partner abroad) carries {', '.join(extra)}, "
        f"not declared for cross-border sharing (declared: {declared}): leave "
        f"{'it' if len(extra) == 1 else 'them'} out"
    )
