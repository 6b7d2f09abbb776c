"""Seals: signed checkpoints over ranges of the event stream.

A seal covers the stream sequences after the previous seal's last, up to its own
``last_seq``, and says how many messages the range holds and their chained digest::

    d_0 = the previous seal's digest, or "sha256:" + 64 zeros for the first seal
    d_i = "sha256:" + hex(SHA-256(d_{i-1} + "\\n" + message_hash(message_i)))

over the messages of the range in stream order (:func:`lintas.contracts.message_hash`: the
SHA-256 of a message's RFC 8785 form, as a case's ``prevhash`` uses). The seal is signed
like an event: Ed25519 over the RFC 8785 form of its JSON without ``signature``, by the
key of ``sealed_by`` (an agency of the key registry, kp2mi unless told otherwise)::

    {"type": "lintas.seal", "stream": "LINTAS", "first_seq": 1, "last_seq": 24,
     "count": 24, "prev_digest": "sha256:000...", "digest": "sha256:...",
     "sealed_at": "2025-03-01T08:00:00+00:00", "sealed_by": "kp2mi",
     "keyid": "kp2mi:...", "signature": "..."}

Seals live in their own stream (``LINTAS_SEALS``, :mod:`lintas.infra.nats.seals`), which denies
delete and purge. Because a seal commits to the last sequence and to every message before
it, removing events at the end of the log (the stream's, or an archive's together with a
rewritten manifest) or whole cases is detected by the seal that covers them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import nats.js.errors

from lintas.audit.events import StoredEvent
from lintas.audit.stream import StreamCut, StreamReader
from lintas.contracts import LintasError, SignatureError, message_hash
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import Registry, Signer, Verifier
from lintas.infra.nats.seals import ensure_seals, seals_stream, seals_subject
from lintas.infra.settings import Settings

__all__ = [
    "SEAL_TYPE",
    "ZERO_DIGEST",
    "Seal",
    "SealChecker",
    "SealError",
    "SealRaced",
    "chain_digest",
    "last_seal",
    "read_seals",
    "seal_stream",
]

SEAL_TYPE = "lintas.seal"
ZERO_DIGEST = "sha256:" + "0" * 64


class SealError(ValueError):
    """A seal message that is not a well-formed seal."""


class SealRaced(LintasError):
    """Another sealer stored its seal between this one's read of the last seal and its
    publish: nothing was stored here, and the next round seals what is still unsealed."""


# JetStream's answer to a publish whose expected last subject sequence is not the last.
_WRONG_LAST_SEQUENCE = 10071


def chain_digest(previous: str, message: bytes) -> str:
    """One step of the chained digest: ``previous`` extended by ``message`` (its body)."""
    step = f"{previous}\n{message_hash(message)}".encode()
    return "sha256:" + hashlib.sha256(step).hexdigest()


@dataclass(frozen=True, slots=True)
class Seal:
    """A seal as stored: its parsed fields and the signed document itself."""

    seq: int
    """Its sequence in the seals stream (not signed): how findings name it."""
    stream: str
    first_seq: int
    last_seq: int
    count: int
    prev_digest: str
    digest: str
    sealed_at: datetime
    sealed_by: str
    doc: dict[str, Any] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"seal {self.seq} (stream seq {self.first_seq}..{self.last_seq})"

    @classmethod
    def from_doc(cls, seq: int, doc: Any) -> Seal:
        try:
            if not isinstance(doc, dict) or doc.get("type") != SEAL_TYPE:
                raise SealError(f"seal {seq} is not a {SEAL_TYPE} document")
            ints = {k: doc[k] for k in ("first_seq", "last_seq", "count")}
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints.values()):
                raise TypeError
            texts = {k: doc[k] for k in ("stream", "prev_digest", "digest", "sealed_by")}
            if not all(isinstance(v, str) for v in texts.values()):
                raise TypeError
            sealed_at = datetime.fromisoformat(str(doc["sealed_at"]))
            if sealed_at.tzinfo is None:
                raise ValueError
        except SealError:
            raise
        except (KeyError, TypeError, ValueError):
            raise SealError(f"seal {seq} is malformed") from None
        return cls(
            seq=seq,
            stream=texts["stream"],
            first_seq=ints["first_seq"],
            last_seq=ints["last_seq"],
            count=ints["count"],
            prev_digest=texts["prev_digest"],
            digest=texts["digest"],
            sealed_at=sealed_at,
            sealed_by=texts["sealed_by"],
            doc=doc,
        )

    @classmethod
    def from_body(cls, seq: int, body: bytes) -> Seal:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise SealError(f"seal {seq} is not JSON") from None
        return cls.from_doc(seq, doc)


async def read_seals(js: Any, settings: Settings) -> list[Seal]:
    """Every seal of ``settings.stream``, in order; none if there is no seals stream."""
    name, subject = seals_stream(settings), seals_subject(settings)
    with bus_errors(f"reading {name}"):
        try:
            state = (await js.stream_info(name)).state
        except nats.js.errors.NotFoundError:
            return []
    seals: list[Seal] = []
    cursor = 1
    while state.messages and cursor <= state.last_seq:
        with bus_errors(f"reading {name} at {cursor}"):
            try:
                raw = await js.get_msg(name, seq=cursor, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
        if raw.seq is None:
            break
        seals.append(Seal.from_body(int(raw.seq), raw.data or b""))
        cursor = int(raw.seq) + 1
    return seals


async def last_seal(js: Any, settings: Settings) -> Seal | None:
    """The newest seal of ``settings.stream``, or None: one read, however many seals."""
    name = seals_stream(settings)
    with bus_errors(f"reading {name}"):
        try:
            raw = await js.get_last_msg(name, seals_subject(settings))
        except nats.js.errors.NotFoundError:  # no seal yet, or no seals stream
            return None
    return Seal.from_body(int(raw.seq), raw.data or b"")


async def seal_stream(
    js: Any, settings: Settings, signer: Signer, *, now: datetime | None = None
) -> Seal | None:
    """Seal everything after the last seal up to the stream's last sequence now; None
    (publishing nothing) when there is nothing new. :class:`SealRaced` when another sealer
    stored a seal after this one read the last."""
    with bus_errors(f"reading {seals_stream(settings)}"):
        try:
            await js.stream_info(seals_stream(settings))
        except nats.js.errors.NotFoundError:  # declared by `lintas up`; made here if not
            await ensure_seals(js, settings)
    last = await last_seal(js, settings)
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    first = last.last_seq + 1 if last is not None else 1
    if cut.empty or cut.last_seq < first:
        return None
    digest = last.digest if last is not None else ZERO_DIGEST
    prev_digest, count = digest, 0
    span = StreamCut(cut.stream, first, cut.last_seq, cut.last_seq - first + 1)
    async for stored in reader.events(span):
        digest = chain_digest(digest, stored.body)
        count += 1
    doc = signer.sign_document(
        {
            "type": SEAL_TYPE,
            "stream": settings.stream,
            "first_seq": first,
            "last_seq": cut.last_seq,
            "count": count,
            "prev_digest": prev_digest,
            "digest": digest,
            "sealed_at": (now or datetime.now(UTC)).isoformat(),
            "sealed_by": signer.agency,
        }
    )
    headers = {
        "Nats-Msg-Id": f"seal:{settings.stream}:{cut.last_seq}",
        # Two sealers at once: the second is refused rather than seal the same range twice.
        "Nats-Expected-Last-Subject-Sequence": str(last.seq if last is not None else 0),
    }
    raced = SealRaced(
        f"another sealer sealed {settings.stream} after seal "
        f"{last.seq if last is not None else 0} first: {first}..{cut.last_seq} not sealed here"
    )
    with bus_errors(f"publishing a seal of {settings.stream} {first}..{cut.last_seq}"):
        try:
            ack = await js.publish(
                seals_subject(settings),
                json.dumps(doc, separators=(",", ":")).encode(),
                stream=seals_stream(settings),
                headers=headers,
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise raced from None
            raise
    if ack.duplicate:
        # A replicated stream checks the message id before the expected sequence: the
        # other sealer's seal of the same cut is what is stored, not this one.
        raise raced
    return Seal.from_doc(int(ack.seq), doc)


Mode = Literal["strict", "partial", "none"]


class SealChecker:
    """Checks seals against the log read in stream order.

    ``digests``: ``strict`` (a whole log: every seal's range is recomputed, a range the log
    does not hold in full fails), ``partial`` (a partial archive: only the seals whose
    range the log holds in full are recomputed, the others are counted as not checkable),
    ``none`` (one case's read: signatures and ranges only). ``where`` names the log.
    """

    def __init__(
        self,
        seals: Sequence[Seal],
        registry: Registry,
        *,
        stream: str,
        digests: Mode,
        where: str = "the stream",
    ) -> None:
        self.seals = sorted(seals, key=lambda s: s.first_seq)
        self.verifier = Verifier(registry)
        self.stream = stream
        self.digests = digests
        self.where = where
        self.recomputed = 0
        self.not_checkable = 0
        self._index = 0
        self._digest = ""
        self._seen = 0
        self._next_seq: int | None = None
        self._whole = True

    def check_seals(self, *, complete: bool) -> str | None:
        """Signatures, and each seal's range following its predecessor's. ``complete``:
        these are all the seals there are, so the first starts the log."""
        previous: Seal | None = None
        for seal in self.seals:
            if seal.stream != self.stream:
                return f"{seal} is of stream {seal.stream}, not {self.stream}"
            try:
                self.verifier.verify_document(seal.doc, signer=seal.sealed_by, at=seal.sealed_at)
            except SignatureError as exc:
                return f"{seal}, sealed by {seal.sealed_by}: signature: {exc}"
            if seal.last_seq < seal.first_seq or seal.count > seal.last_seq - seal.first_seq + 1:
                return f"{seal} holds an impossible range or count ({seal.count})"
            if previous is None:
                if complete and (seal.first_seq != 1 or seal.prev_digest != ZERO_DIGEST):
                    return f"{seal} is the first seal but does not start the log at seq 1"
            elif seal.first_seq != previous.last_seq + 1 or seal.prev_digest != previous.digest:
                return (
                    f"{seal} does not follow {previous}: the seals are not contiguous "
                    "(a seal removed, or forged)"
                )
            previous = seal
        return None

    def feed(self, stored: StoredEvent) -> str | None:
        if self.digests == "none":
            return None
        while self._index < len(self.seals) and stored.seq > self.seals[self._index].last_seq:
            if problem := self._close():
                return problem
        if self._index < len(self.seals):
            seal = self.seals[self._index]
            if stored.seq >= seal.first_seq:
                if self._seen == 0:
                    self._digest = seal.prev_digest
                    self._next_seq = seal.first_seq
                if stored.seq != self._next_seq:
                    self._whole = False
                self._next_seq = stored.seq + 1
                self._digest = chain_digest(self._digest, stored.body)
                self._seen += 1
        return None

    def _close(self) -> str | None:
        seal = self.seals[self._index]
        seen, digest, whole = self._seen, self._digest, self._whole
        self._index += 1
        self._seen, self._digest, self._next_seq, self._whole = 0, "", None, True
        if self.digests == "partial" and not (whole and seen == seal.count and seen):
            self.not_checkable += 1
            return None
        if seen == 0:
            digest = seal.prev_digest
        if seen != seal.count:
            return (
                f"{seal} counts {seal.count} messages, {self.where} holds {seen} in that range: "
                "events were removed or inserted"
            )
        if digest != seal.digest:
            return (
                f"{seal}: the digest of {self.where}'s messages in that range does not match "
                "the seal: an event there was altered, removed, inserted or reordered"
            )
        self.recomputed += 1
        return None

    def end(self, last_seq: int | None, *, tail: bool = True) -> str | None:
        """After the last event read (``last_seq``, None if none): the seals still open."""
        if tail and self.seals:
            top = max(self.seals, key=lambda s: s.last_seq)
            if top.last_seq > (last_seq or 0):
                return (
                    f"{self.where} ends at {last_seq or 0} but seal {top.seq} covers up to "
                    f"{top.last_seq}: the events after {last_seq or 0} were removed"
                )
        if self.digests == "none":
            return None
        while self._index < len(self.seals):
            if problem := self._close():
                return problem
        return None

    def note(self) -> str:
        if not self.seals:
            return "seals: none cover this log"
        span = f"stream seq {self.seals[0].first_seq}..{self.seals[-1].last_seq}"
        if self.digests == "none":
            return (
                f"seals: {len(self.seals)} ({span}): signatures and ranges checked, digests "
                "not (one case's read)"
            )
        text = f"seals: {len(self.seals)} ({span}), {self.recomputed} recomputed"
        if self.not_checkable:
            text += f", {self.not_checkable} not checkable here (range not wholly in this log)"
        return text
