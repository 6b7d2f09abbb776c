"""Custody of case keys: signed wraps, and the platform's checks before it stores one.

A *wrap* is a case's data key of one generation, wrapped for one agency (the recipient)
with its X25519 public key (:func:`lintas.infra.privacy.sealing.wrap_key`), bound
(associated data) to the case, the generation, the recipient, the *grant* that justified
it and the agency that made it, and stored as a JSON document signed by its maker's
Ed25519 key (the one it signs its events with)::

    {"v": 2, "case", "gen", "for", "grant", "maker", "at", "alg", "epk", "iv", "ct",
     "kid", "keyid", "signature"}

``grant`` is ``"made"`` (:data:`lintas.contracts.gate.MADE`) for the first wrap of a data
key, its maker's own, or ``"seq:<n>"``: the consent or override at stream sequence ``n``
that names the recipient. A recipient opens only a wrap it can verify (:func:`open_wrap`):
signed by its maker with a key of the registry, for this case, generation and recipient,
made by an agency that may hold case keys, and either its own first wrap or one for a
grant it finds on the log itself (:class:`GrantCheck`: a consent or override of this case
its maker signed, naming it with a reading scope, not withdrawn); else
:class:`WrapUnverified`. A wrap of the first version (no signature, no grant:
stores written before custody) is refused like a forgery: the two cannot be told apart.

Only the platform writes the store (:class:`Custody`, run by the read service: agencies
may not publish on it at all). It stores a wrap only when, from the case's events on the
log that the authority policy allows (:func:`lintas.contracts.authority.allowed`, over
signed events): the maker holds the case's data key (it made it, or its own wrap of that
generation is in the store), the grant is a consent or override still in force that the
maker published and that names the recipient (:func:`lintas.contracts.gate.wrap_refusal`),
and the signature verifies. A case's first data key (its marker ``<case>.<gen>`` and the
maker's own wrap) is stored for the agency that asks while the case has none and was not
erased; once the case is on the log, only for its opener or owner. Every write is
create-only: the store keeps the first, checked, wrap of a key.

An agency reads through the same service: the case markers, and its own wraps only.

Errors::

    WrapUnverified (SealBroken, PermanentError)  a wrap its recipient cannot verify
    CustodyRefused (PermanentError)               the platform will not store or show it
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import nats.js.errors
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lintas.contracts import (
    ContractError,
    Event,
    PermanentError,
    SignatureError,
    authority,
    decode,
    is_case_id,
    parse_message,
)
from lintas.contracts import gate as gate_rules
from lintas.contracts.subjects import broadcast_filter, kv_subject
from lintas.infra.keys.signing import Signer, Verifier
from lintas.infra.nats.topology import CASE_KEYS_BUCKET, case_keys_stream
from lintas.infra.privacy.sealing import SealBroken, unwrap_key, wrap_key

__all__ = [
    "WRAP_VERSION",
    "CaseLog",
    "Custody",
    "CustodyRefused",
    "GrantCheck",
    "WrapUnverified",
    "grant_of",
    "make_wrap",
    "open_wrap",
]

WRAP_VERSION: Final = 2
_GRANT = re.compile(r"^seq:([1-9][0-9]{0,18})$")
_SKEW: Final = timedelta(minutes=10)


class WrapUnverified(SealBroken):
    """A wrap its recipient cannot verify: unsigned (or of the first version), signed by
    no key of its maker, not for this case, generation or recipient, or made by an agency
    that never holds case keys. Refused, never opened."""


class CustodyRefused(PermanentError):
    """The platform will not store (or show) this entry of the case key store; ``code``
    says why as HTTP does (400 malformed, 403 not entitled, 409 the store says no)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def grant_of(seq: int | None) -> str:
    """The grant a wrap names: the consent or override at ``seq``, or (None) its maker's own
    first wrap."""
    return gate_rules.MADE if seq is None else f"seq:{seq}"


def make_wrap(
    signer: Signer,
    data_key: bytes,
    recipient_key: X25519PublicKey,
    *,
    kid: str,
    case_id: str,
    gen: int,
    recipient: str,
    grant: str,
    at: datetime | None = None,
) -> dict[str, Any]:
    """``data_key`` wrapped for ``recipient`` and signed by ``signer``'s agency, its maker."""
    maker = signer.agency
    sealed = wrap_key(
        data_key,
        recipient_key,
        case_id=case_id,
        gen=gen,
        agency=recipient,
        grant=grant,
        maker=maker,
    )
    doc: dict[str, Any] = {
        "v": WRAP_VERSION,
        "case": case_id,
        "gen": gen,
        "for": recipient,
        "grant": grant,
        "maker": maker,
        "at": (at or datetime.now(UTC)).isoformat(),
        **sealed,
        "kid": kid,
    }
    return signer.sign_document(doc)


def _at(doc: Mapping[str, Any]) -> datetime:
    try:
        at = datetime.fromisoformat(str(doc.get("at")))
    except ValueError:
        raise WrapUnverified("the wrap says no time it was made") from None
    if at.tzinfo is None:
        raise WrapUnverified("the wrap's time has no time zone")
    return at


def _well_formed(doc: Any, *, case_id: str, gen: int, recipient: str) -> tuple[str, str]:
    """The wrap's maker and grant, if it is a wrap of the current version for exactly this
    case, generation and recipient, by an agency that may hold case keys."""
    what = f"the data key of case {case_id} (generation {gen}) wrapped for {recipient}"
    if not isinstance(doc, dict) or doc.get("v") != WRAP_VERSION:
        raise WrapUnverified(f"{what} is not a signed wrap (made before custody, or forged)")
    if (doc.get("case"), doc.get("gen"), doc.get("for")) != (case_id, gen, recipient):
        raise WrapUnverified(f"{what} says it is for another case, generation or agency")
    maker, grant = doc.get("maker"), doc.get("grant")
    if not isinstance(maker, str) or not gate_rules.may_hold_keys(maker):
        raise WrapUnverified(f"{what} was made by {maker!r}, which never holds case keys")
    if not isinstance(grant, str) or not (
        _GRANT.match(grant) or (grant == gate_rules.MADE and maker == recipient)
    ):
        raise WrapUnverified(f"{what} names no grant (a consent's seq, or its maker's own key)")
    return maker, grant


class LogMessage(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class CaseLog(Protocol):
    """The log as a recipient may read it (:class:`lintas.infra.reads.DirectReads`, or the
    read service's ``range``: :class:`lintas.infra.reads.ServiceReads`)."""

    async def between(
        self, subject_filter: str, first: int, last: int, limit: int
    ) -> Sequence[LogMessage]: ...


_LAST: Final = 2**63 - 1


class GrantCheck:
    """What a recipient checks, on the log itself, of the grant a wrap names: for
    ``seq:<n>``, that the case's broadcast at ``n`` is a consent or override of this case,
    signed by the wrap's maker with a key of the registry, naming the recipient with a
    reading scope, neither withdrawn nor the case erased since
    (:func:`lintas.contracts.gate.wrap_refusal`, the rule custody applies, over the book
    folded from the case's broadcasts, which every agency may read); for ``made``, that the
    recipient made it. The verdict is kept per (case, generation) for ``cache_s``: one
    read of the case's broadcasts per data key, not one per sealed field.

    What it cannot check: that the maker holds *this* case's key (only custody sees the
    other agencies' wraps), nor the authority policy's judgement of the grant, which needs
    the case's events the recipient may not read (admission and custody judge it)."""

    def __init__(
        self,
        log: CaseLog,
        verifier: Verifier,
        *,
        cached: int = 4096,
        cache_s: float = 300.0,
    ) -> None:
        self._log = log
        self._verifier = verifier
        self._cached = cached
        self._cache_s = cache_s
        self._verdicts: OrderedDict[tuple[str, int], tuple[str, str, str, float]] = OrderedDict()

    def forget(self, case_id: str, gen: int) -> None:
        self._verdicts.pop((case_id, gen), None)

    async def _book(self, case_id: str) -> gate_rules.ConsentBook:
        """The case's consent book from its broadcasts: a grant counts only signed by its
        source with a key of the registry; a withdrawal or an erasure as soon as it
        decodes (as every gate folds it: a missing key must never let a key through)."""
        book = gate_rules.ConsentBook()
        asked = time.monotonic()  # a key id unknown then is learned by one read, for the walk
        cursor = 1
        while True:
            batch = await self._log.between(broadcast_filter(case_id), cursor, _LAST, 256)
            if not batch:
                return book
            for found in batch:
                try:
                    doc = parse_message(found.data)
                    event = decode(found.data, subject=found.subject, parsed=doc)
                    if event.type in gate_rules.GRANTING:
                        await self._verifier.check(
                            found.data, event.envelope, parsed=doc, asked=asked
                        )
                except (ContractError, SignatureError):
                    continue
                book = gate_rules.fold(book, event, found.seq)
            cursor = batch[-1].seq + 1

    async def check(
        self, *, case_id: str, gen: int, maker: str, grant: str, recipient: str
    ) -> None:
        """:class:`WrapUnverified` unless the grant holds (see the class doc)."""
        what = f"the data key of case {case_id} (generation {gen}) wrapped for {recipient}"
        if grant == gate_rules.MADE:
            if maker != recipient:
                raise WrapUnverified(f"{what} says it is {maker}'s own first wrap")
            return
        matched = _GRANT.match(grant)
        if matched is None:
            raise WrapUnverified(f"{what} names no grant (a consent's seq, or its maker's own key)")
        if self._recalled(case_id, gen) == (maker, grant, recipient):
            return
        book = await self._book(case_id)
        refused = gate_rules.wrap_refusal(
            book, grant_seq=int(matched.group(1)), maker=maker, recipient=recipient
        )
        if refused is not None:
            raise WrapUnverified(
                f"{what} by {maker}: its grant does not hold on the log: {refused}"
            )
        self._verdicts[(case_id, gen)] = (maker, grant, recipient, time.monotonic() + self._cache_s)
        self._verdicts.move_to_end((case_id, gen))
        while len(self._verdicts) > self._cached:
            self._verdicts.popitem(last=False)

    def _recalled(self, case_id: str, gen: int) -> tuple[str, str, str] | None:
        cached = self._verdicts.get((case_id, gen))
        if cached is None:
            return None
        if cached[3] < time.monotonic():
            del self._verdicts[(case_id, gen)]
            return None
        return cached[:3]


async def open_wrap(
    doc: Any,
    private: X25519PrivateKey,
    verifier: Verifier,
    grants: GrantCheck,
    *,
    case_id: str,
    gen: int,
    recipient: str,
) -> bytes:
    """The data key a stored wrap holds, once verified: well formed, signed by its maker,
    and its grant on the log (``grants``). :class:`WrapUnverified` if it cannot be;
    :class:`~lintas.infra.privacy.sealing.SealBroken` if it does not open."""
    maker, grant = _well_formed(doc, case_id=case_id, gen=gen, recipient=recipient)
    try:
        await verifier.check_document(doc, signer=maker, at=_at(doc))
    except SignatureError as exc:
        raise WrapUnverified(
            f"the data key of case {case_id} wrapped for {recipient} is not signed by its "
            f"maker {maker}: {exc}"
        ) from None
    await grants.check(case_id=case_id, gen=gen, maker=maker, grant=grant, recipient=recipient)
    return unwrap_key(
        doc, private, case_id=case_id, gen=gen, agency=recipient, grant=grant, maker=maker
    )


# -- the platform's side ----------------------------------------------------------------------

_ERASED: Final = "erased"
_WRONG_LAST_SEQUENCE: Final = 10071
_GEN = re.compile(r"^[1-9][0-9]{0,8}$")

AllowedEvents = Callable[[str], Awaitable[list[tuple[int, Event, authority.CaseState]]]]
"""A case's events on the log the authority policy allows, each with the state after it."""


class Custody:
    """The platform's writes to the case key store, and agencies' reads of it: the read
    service's ``key``, ``make-key`` and ``wrap-key`` operations (:mod:`lintas.infra.reads`),
    which name the asking agency by the subject only it may publish on."""

    def __init__(
        self,
        js: Any,
        verifier: Verifier | None,
        allowed: AllowedEvents,
        *,
        bucket: str = CASE_KEYS_BUCKET,
    ) -> None:
        self._js = js
        self._verifier = verifier
        self._allowed = allowed
        self.bucket = bucket

    async def _get(self, key: str) -> bytes | None:
        # From the stream's leader (a replica may not hold what was just written).
        try:
            raw = await self._js.get_msg(
                case_keys_stream(self.bucket), subject=kv_subject(self.bucket, key)
            )
        except nats.js.errors.NotFoundError:
            return None
        return bytes(raw.data or b"") or None

    async def _create(self, key: str, value: bytes) -> bool:
        try:
            await self._js.publish(
                kv_subject(self.bucket, key),
                value,
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )
        except nats.js.errors.NoStreamResponseError:
            raise CustodyRefused(409, f"the case key store {self.bucket} is not declared") from None
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    # -- reads -------------------------------------------------------------------------------

    async def read(self, agency: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """One entry: a marker (``<case>.<gen>``, ``<case>.erased``) or the asker's own wrap
        (``<case>.<gen>.<asker>``); never another agency's, never a filter."""
        key = request.get("key")
        parts = key.split(".") if isinstance(key, str) else []
        if not parts or not is_case_id(parts[0]):
            raise CustodyRefused(400, "key must be <case>.<gen>, <case>.erased or a wrap")
        rest = parts[1:]
        marker = rest == [_ERASED] or (len(rest) == 1 and bool(_GEN.match(rest[0])))
        own = len(rest) == 2 and bool(_GEN.match(rest[0])) and rest[1] == agency
        if not (marker or own):
            raise CustodyRefused(403, f"{agency} reads only the case markers and its own wraps")
        value = await self._get(str(key))
        return {"value": base64.b64encode(value).decode() if value is not None else None}

    # -- writes ------------------------------------------------------------------------------

    async def _signed(self, doc: Mapping[str, Any], maker: str) -> None:
        if self._verifier is None:
            return  # a bus without a registry: nothing to check a signature against
        try:
            at = _at(doc)
        except WrapUnverified as exc:
            raise CustodyRefused(400, str(exc)) from None
        now = datetime.now(UTC)
        if abs(now - at) > _SKEW:
            raise CustodyRefused(400, "the wrap was not made now (its time is off by too much)")
        try:
            await self._verifier.check_document(doc, signer=maker, at=at)
        except SignatureError as exc:
            raise CustodyRefused(403, f"the wrap is not signed by {maker}: {exc}") from None

    def _wrap_of(
        self, agency: str, request: Mapping[str, Any]
    ) -> tuple[str, int, str, str, dict[str, Any]]:
        case_id, gen, wrap = request.get("case"), request.get("gen"), request.get("wrap")
        if not isinstance(case_id, str) or not is_case_id(case_id):
            raise CustodyRefused(400, "case must be a lintas case id")
        if not isinstance(gen, int) or isinstance(gen, bool) or not _GEN.match(str(gen)):
            raise CustodyRefused(400, "gen must be a key generation")
        if not isinstance(wrap, dict):
            raise CustodyRefused(400, "wrap must be a signed wrap")
        recipient = wrap.get("for")
        if not isinstance(recipient, str):
            raise CustodyRefused(400, "the wrap names no recipient")
        try:
            maker, grant = _well_formed(wrap, case_id=case_id, gen=gen, recipient=recipient)
        except WrapUnverified as exc:
            raise CustodyRefused(400, str(exc)) from None
        if maker != agency:
            raise CustodyRefused(403, f"{agency} stores only wraps it made, not {maker}'s")
        return case_id, gen, recipient, grant, wrap

    async def _holds(self, case_id: str, gen: int, agency: str) -> bool:
        """Whether ``agency`` holds the case's data key of ``gen``: its wrap is stored (the
        store keeps only wraps checked here, and its maker's first)."""
        return await self._get(f"{case_id}.{gen}.{agency}") is not None

    async def make(self, agency: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Store a case's first data key: its marker and the asker's own wrap."""
        case_id, gen, recipient, grant, wrap = self._wrap_of(agency, request)
        if recipient != agency or grant != gate_rules.MADE:
            raise CustodyRefused(400, "a first key is wrapped for its maker alone")
        await self._signed(wrap, agency)
        if await self._get(f"{case_id}.{_ERASED}") is not None:
            raise CustodyRefused(409, f"case {case_id} was erased: no data key is made again")
        allowed = await self._allowed(case_id)
        if allowed:
            state = allowed[-1][2]
            if agency not in (state.opened_by, state.owner):
                raise CustodyRefused(
                    403, f"case {case_id} is on the log: only its opener or owner makes its key"
                )
        marker = json.dumps({"created_by": agency, "at": datetime.now(UTC).isoformat()}).encode()
        if not await self._create(f"{case_id}.{gen}", marker):
            made = await self._get(f"{case_id}.{gen}")
            creator = _creator(made)
            if creator != agency:
                return {"made": False, "creator": creator}
            # Ours: a first attempt stored the marker and not the wrap (it died between).
        wrapped = await self._create(f"{case_id}.{gen}.{agency}", json.dumps(wrap).encode())
        return {"made": wrapped, "creator": agency}

    async def wrap(self, agency: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Store a wrap the asker made for a recipient a grant of its names."""
        case_id, gen, recipient, grant, wrap = self._wrap_of(agency, request)
        matched = _GRANT.match(grant)
        if matched is None:
            raise CustodyRefused(400, "a wrap for another agency names the grant that allows it")
        await self._signed(wrap, agency)
        if await self._get(f"{case_id}.{_ERASED}") is not None:
            raise CustodyRefused(409, f"case {case_id} was erased: its key goes to no one")
        if not await self._holds(case_id, gen, agency):
            raise CustodyRefused(403, f"{agency} does not hold case {case_id}'s data key")
        allowed = await self._allowed(case_id)
        book = gate_rules.fold_all((seq, event) for seq, event, _ in allowed)
        refused = gate_rules.wrap_refusal(
            book, grant_seq=int(matched.group(1)), maker=agency, recipient=recipient
        )
        if refused is not None:
            raise CustodyRefused(403, refused)
        wrapped = await self._create(f"{case_id}.{gen}.{recipient}", json.dumps(wrap).encode())
        return {"wrapped": wrapped}


def _creator(marker: bytes | None) -> str | None:
    try:
        creator = json.loads(marker or b"").get("created_by")
    except (ValueError, AttributeError):
        return None
    return creator if isinstance(creator, str) else None
