"""Checkpoints: signed checkpoints over ranges of the event stream.

A checkpoint covers the stream sequences after the previous checkpoint's last, up to its own
``last_seq``, and says how many messages the range holds and their chained digest::

    d_0 = the previous checkpoint's digest, or "sha256:" + 64 zeros for the first checkpoint
    d_i = "sha256:" + hex(SHA-256(d_{i-1} + "\\n" + message_hash(message_i)))

over the messages of the range in stream order (:func:`lintas.contracts.message_hash`: the
SHA-256 of a message's RFC 8785 form, as a case's ``prevhash`` uses). The checkpoint is signed
like an event: Ed25519 over the RFC 8785 form of its JSON without ``signature``, by a key
registered for the sealer (:data:`~lintas.infra.keys.registry.SEALER`), the platform's
signing role: a checkpoint signed by anyone else, an agency above all, is refused::

    {"type": "lintas.checkpoint", "stream": "LINTAS", "first_seq": 1, "last_seq": 24,
     "count": 24, "prev_digest": "sha256:000...", "digest": "sha256:...",
     "signed_at": "2025-03-01T08:00:00+00:00", "signed_by": "sealer",
     "keyid": "sealer:...", "signature": "..."}

Checkpoints live in their own stream (``LINTAS_CHECKPOINTS``, :mod:`lintas.infra.nats.checkpoints`),
which denies delete and purge. Because a checkpoint commits to the last sequence and to every
message before it, removing events at the end of the log (the stream's, or an archive's together
with a rewritten manifest) or whole cases is detected by the checkpoint that covers them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import nats.js.errors

from lintas.audit.events import StoredEvent
from lintas.audit.logtree import LogGap, LogTree, hash_bytes, hash_text
from lintas.audit.merkle import verify_consistency
from lintas.audit.stream import StreamCut, StreamReader
from lintas.contracts import LintasError, SignatureError, message_hash
from lintas.contracts.subjects import checkpoints_subject
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import SEALER, Registry, Signer, Verifier
from lintas.infra.nats.topology import checkpoints_config, checkpoints_stream, ensure_stream_config
from lintas.infra.settings import Settings

__all__ = [
    "CHECKPOINT_TYPE",
    "CHECKPOINT_VERSION",
    "ZERO_DIGEST",
    "Checkpoint",
    "CheckpointChecker",
    "CheckpointError",
    "CheckpointRaced",
    "chain_digest",
    "checkpoint_stream",
    "kept_problem",
    "last_checkpoint",
    "read_checkpoints",
]

CHECKPOINT_TYPE = "lintas.checkpoint"
CHECKPOINT_VERSION = 2
"""Checkpoints that commit to the log's Merkle tree and its case heads (``version``: 2);
those without ``version`` (1) commit to their range's chained digest only, and are read as
ever."""
_SIGNED = ("signed_at", "signed_by")
LEGACY_TYPE = "lintas.seal"
"""Checkpoints signed before they were called so: the same document with ``sealed_at`` and
``sealed_by``, which the signature covers, so they are read under those names."""
ZERO_DIGEST = "sha256:" + "0" * 64


class CheckpointError(ValueError):
    """A checkpoint message that is not a well-formed checkpoint."""


class CheckpointRaced(LintasError):
    """Another checkpointer stored its checkpoint between this one's read of the last checkpoint and
    its publish: nothing was stored here, and the next round checkpoints what is still
    uncheckpointed."""


# JetStream's answer to a publish whose expected last subject sequence is not the last.
_WRONG_LAST_SEQUENCE = 10071


def chain_digest(previous: str, message: bytes) -> str:
    """One step of the chained digest: ``previous`` extended by ``message`` (its body)."""
    return _chain(previous, message_hash(message))


def _chain(previous: str, hashed: str) -> str:
    return "sha256:" + hashlib.sha256(f"{previous}\n{hashed}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint as stored: its parsed fields and the signed document itself."""

    seq: int
    """Its sequence in the checkpoints stream (not signed): how findings name it."""
    stream: str
    first_seq: int
    last_seq: int
    count: int
    prev_digest: str
    digest: str
    signed_at: datetime
    signed_by: str
    doc: dict[str, Any] = field(repr=False, compare=False)
    tree_size: int | None = None
    """Version 2: the messages of the log's Merkle tree (the whole stream, 1..``last_seq``);
    None for a checkpoint made before checkpoints committed to trees."""
    root_hash: bytes | None = None
    cases_size: int | None = None
    """Version 2: the cases in the tree of case heads (:mod:`.logtree`)."""
    cases_root: bytes | None = None

    @property
    def has_tree(self) -> bool:
        return self.root_hash is not None

    def __str__(self) -> str:
        return f"checkpoint {self.seq} (stream seq {self.first_seq}..{self.last_seq})"

    @classmethod
    def from_doc(cls, seq: int, doc: Any) -> Checkpoint:
        try:
            if not isinstance(doc, dict) or doc.get("type") not in (CHECKPOINT_TYPE, LEGACY_TYPE):
                raise CheckpointError(f"checkpoint {seq} is not a {CHECKPOINT_TYPE} document")
            at, by = ("sealed_at", "sealed_by") if doc["type"] == LEGACY_TYPE else _SIGNED
            ints = {k: doc[k] for k in ("first_seq", "last_seq", "count")}
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints.values()):
                raise TypeError
            texts = {k: doc[k] for k in ("stream", "prev_digest", "digest")} | {
                "signed_by": doc[by]
            }
            if not all(isinstance(v, str) for v in texts.values()):
                raise TypeError
            signed_at = datetime.fromisoformat(str(doc[at]))
            if signed_at.tzinfo is None:
                raise ValueError
            tree = _tree_fields(doc) if doc.get("version") == CHECKPOINT_VERSION else {}
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"checkpoint {seq} is malformed") from None
        return cls(
            seq=seq,
            stream=texts["stream"],
            first_seq=ints["first_seq"],
            last_seq=ints["last_seq"],
            count=ints["count"],
            prev_digest=texts["prev_digest"],
            digest=texts["digest"],
            signed_at=signed_at,
            signed_by=texts["signed_by"],
            doc=doc,
            **tree,
        )

    @classmethod
    def from_body(cls, seq: int, body: bytes) -> Checkpoint:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise CheckpointError(f"checkpoint {seq} is not JSON") from None
        return cls.from_doc(seq, doc)


def _tree_fields(doc: dict[str, Any]) -> dict[str, Any]:
    sizes = {k: doc[k] for k in ("tree_size", "cases_size")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        raise TypeError
    return sizes | {
        "root_hash": hash_bytes(str(doc["root_hash"])),
        "cases_root": hash_bytes(str(doc["cases_root"])),
    }


async def read_checkpoints(js: Any, settings: Settings) -> list[Checkpoint]:
    """Every checkpoint of ``settings.stream``, in order; none if there is no checkpoints stream."""
    name, subject = checkpoints_stream(settings), checkpoints_subject(settings.stream)
    with bus_errors(f"reading {name}"):
        try:
            state = (await js.stream_info(name)).state
        except nats.js.errors.NotFoundError:
            return []
    checkpoints: list[Checkpoint] = []
    cursor = 1
    while state.messages and cursor <= state.last_seq:
        with bus_errors(f"reading {name} at {cursor}"):
            try:
                raw = await js.get_msg(name, seq=cursor, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
        if raw.seq is None:
            break
        checkpoints.append(Checkpoint.from_body(int(raw.seq), raw.data or b""))
        cursor = int(raw.seq) + 1
    return checkpoints


async def last_checkpoint(js: Any, settings: Settings) -> Checkpoint | None:
    """The newest checkpoint of ``settings.stream``, or None: one read, however many checkpoints."""
    name = checkpoints_stream(settings)
    with bus_errors(f"reading {name}"):
        try:
            raw = await js.get_last_msg(name, checkpoints_subject(settings.stream))
        except nats.js.errors.NotFoundError:  # no checkpoint yet, or no checkpoints stream
            return None
    return Checkpoint.from_body(int(raw.seq), raw.data or b"")


async def checkpoint_stream(
    js: Any,
    settings: Settings,
    signer: Signer,
    *,
    now: datetime | None = None,
    tree: LogTree | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Checkpoint | None:
    """Checkpoint everything after the last checkpoint up to the stream's last sequence now; None
    (publishing nothing) when there is nothing new. :class:`CheckpointRaced` when another
    checkpointer stored a checkpoint after this one read the last. ``signer`` is the
    sealer's: ValueError for any other.

    The checkpoint commits to the Merkle tree of the whole stream and its case heads
    (version 2). ``tree``: the tree as the previous round left it (a checkpointer's, kept
    between rounds), grown here by the new messages only; without it, or when it does not
    end where the last checkpoint does (a restart), it is rebuilt from the stream, every
    message read once (``progress(read, total)``), and must give the last checkpoint's root,
    else :class:`CheckpointError` and nothing is signed."""
    if signer.agency != SEALER:
        raise ValueError(f"checkpoints are signed by the {SEALER} only, not by {signer.agency}")
    with bus_errors(f"reading {checkpoints_stream(settings)}"):
        try:
            await js.stream_info(checkpoints_stream(settings))
        except nats.js.errors.NotFoundError:  # declared by `lintas up`; made here if not
            await ensure_stream_config(js, checkpoints_config(settings))
    last = await last_checkpoint(js, settings)
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    first = last.last_seq + 1 if last is not None else 1
    if cut.empty or cut.last_seq < first:
        return None
    tree = tree if tree is not None else LogTree()
    try:
        if tree.size != first - 1:
            tree.clear()
            await _grow(reader, tree, cut.stream, 1, first - 1, progress)
            if last is not None and last.has_tree and tree.root() != last.root_hash:
                raise CheckpointError(
                    f"the stream's messages 1..{first - 1} no longer give the tree root "
                    f"{last} committed to: the log was altered before it; not checkpointed"
                )
        digest = last.digest if last is not None else ZERO_DIGEST
        prev_digest, count = digest, 0

        def step(stored: StoredEvent, hashed: str) -> None:
            nonlocal digest, count
            digest = _chain(digest, hashed)
            count += 1

        await _grow(reader, tree, cut.stream, first, cut.last_seq, progress, step)
    except BaseException:
        tree.clear()  # half grown: the next round rebuilds it
        raise
    doc = signer.sign_document(
        {
            "type": CHECKPOINT_TYPE,
            "version": CHECKPOINT_VERSION,
            "stream": settings.stream,
            "first_seq": first,
            "last_seq": cut.last_seq,
            "count": count,
            "prev_digest": prev_digest,
            "digest": digest,
            "tree_size": tree.size,
            "root_hash": hash_text(tree.root()),
            "cases_size": len(tree.heads),
            "cases_root": hash_text(tree.cases_root()),
            "signed_at": (now or datetime.now(UTC)).isoformat(),
            "signed_by": signer.agency,
        }
    )
    headers = {
        "Nats-Msg-Id": f"checkpoint:{settings.stream}:{cut.last_seq}",
        # Two checkpointers at once: the second is refused rather than checkpoint the same range
        # twice.
        "Nats-Expected-Last-Subject-Sequence": str(last.seq if last is not None else 0),
    }
    raced = CheckpointRaced(
        f"another checkpointer checkpointed {settings.stream} after checkpoint "
        f"{last.seq if last is not None else 0} first: {first}..{cut.last_seq} not "
        f"checkpointed here"
    )
    try:
        ack = await _publish(js, settings, doc, headers, raced, first, cut.last_seq)
    except BaseException:
        tree.clear()  # what it grew by is in no checkpoint: the next round rebuilds it
        raise
    return Checkpoint.from_doc(int(ack.seq), doc)


async def _publish(
    js: Any,
    settings: Settings,
    doc: dict[str, Any],
    headers: dict[str, str],
    raced: CheckpointRaced,
    first: int,
    last_seq: int,
) -> Any:
    with bus_errors(f"publishing a checkpoint of {settings.stream} {first}..{last_seq}"):
        try:
            ack = await js.publish(
                checkpoints_subject(settings.stream),
                json.dumps(doc, separators=(",", ":")).encode(),
                stream=checkpoints_stream(settings),
                headers=headers,
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise raced from None
            raise
    if ack.duplicate:
        # A replicated stream checks the message id before the expected sequence: the
        # other checkpointer's checkpoint of the same cut is what is stored, not this one.
        raise raced
    return ack


async def _grow(
    reader: StreamReader,
    tree: LogTree,
    stream: str,
    first: int,
    last: int,
    progress: Callable[[int, int], None] | None,
    step: Callable[[StoredEvent, str], None] | None = None,
) -> None:
    """Add the stream's messages ``first..last`` to ``tree``; CheckpointError at a gap."""
    if last < first:
        return
    span = StreamCut(stream, first, last, last - first + 1)
    async for stored in reader.events(span):
        try:
            hashed = tree.add(stored)
        except LogGap as exc:
            raise CheckpointError(f"{exc}: not checkpointed") from None
        if step is not None:
            step(stored, hashed)
        if progress is not None:
            progress(stored.seq, last)
    if tree.size != last:
        raise CheckpointError(f"the stream ends at {tree.size}, not {last}: not checkpointed")


Mode = Literal["strict", "partial", "none"]


def kept_problem(kept: Checkpoint, stream: str, registry: Registry) -> str | None:
    """Why a checkpoint an auditor kept (``--since``) cannot anchor a consistency proof, or
    None: it must be the sealer's, of this stream, signed by a key of ``registry``, and
    commit to a Merkle tree."""
    if kept.stream != stream or kept.signed_by != SEALER:
        return f"the checkpoint kept ({kept}) is not the {SEALER}'s of stream {stream}"
    try:
        Verifier(registry).verify_document(kept.doc, signer=SEALER, at=kept.signed_at)
    except SignatureError as exc:
        return f"the checkpoint kept ({kept}): signature: {exc}"
    if kept.tree_size is None or kept.root_hash is None:
        return f"the checkpoint kept ({kept}) commits to no Merkle tree: keep a newer one"
    return None


class CheckpointChecker:
    """Checks checkpoints against the log read in stream order.

    ``digests``: ``strict`` (a whole log: every checkpoint's range is recomputed, a range the log
    does not hold in full fails), ``partial`` (a partial archive: only the checkpoints whose
    range the log holds in full are recomputed, the others are counted as not checkable),
    ``none`` (one case's read: signatures and ranges only). ``where`` names the log.
    """

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint],
        registry: Registry,
        *,
        stream: str,
        digests: Mode,
        where: str = "the stream",
        since: Checkpoint | None = None,
    ) -> None:
        self.checkpoints = sorted(checkpoints, key=lambda s: s.first_seq)
        self.verifier = Verifier(registry)
        self.stream = stream
        self.digests = digests
        self.where = where
        self.recomputed = 0
        self.not_checkable = 0
        self.since = since
        self.since_note: str | None = None
        # A whole log grows the tree its checkpoints commit to, as the checkpointer did;
        # every leaf kept only to prove consistency with a checkpoint kept from before.
        self.tree = LogTree(keep_leaves=since is not None) if digests == "strict" else None
        self.trees_checked = 0
        self._tree_broken = False
        self.newest = max(
            (c for c in self.checkpoints if c.has_tree), key=lambda c: c.last_seq, default=None
        )
        """The newest checkpoint with a tree: what exports prove against, and ``--since``
        proves consistency up to."""
        self._index = 0
        self._digest = ""
        self._seen = 0
        self._next_seq: int | None = None
        self._whole = True

    def check_checkpoints(self, *, complete: bool) -> tuple[str, str] | None:
        """Signers, signatures, and each checkpoint's range following its predecessor's:
        the first problem, as ``(code, message)`` (``checkpoint-signer`` or ``checkpoint``).
        ``complete``: these are all the checkpoints there are, so the first starts the log."""
        previous: Checkpoint | None = None
        for checkpoint in self.checkpoints:
            if checkpoint.stream != self.stream:
                return (
                    "checkpoint",
                    f"{checkpoint} is of stream {checkpoint.stream}, not {self.stream}",
                )
            if checkpoint.signed_by != SEALER:
                # Whoever holds an agency's key could otherwise drop events and checkpoint
                # the rest afresh.
                return "checkpoint-signer", (
                    f"{checkpoint} is signed by {checkpoint.signed_by}, not by the {SEALER}: "
                    "no agency's key makes a checkpoint"
                )
            try:
                self.verifier.verify_document(
                    checkpoint.doc, signer=checkpoint.signed_by, at=checkpoint.signed_at
                )
            except SignatureError as exc:
                return (
                    "checkpoint",
                    f"{checkpoint}, checkpointed by {checkpoint.signed_by}: signature: {exc}",
                )
            if (
                checkpoint.last_seq < checkpoint.first_seq
                or checkpoint.count > checkpoint.last_seq - checkpoint.first_seq + 1
            ):
                return (
                    "checkpoint",
                    f"{checkpoint} holds an impossible range or count ({checkpoint.count})",
                )
            if previous is None:
                if complete and (
                    checkpoint.first_seq != 1 or checkpoint.prev_digest != ZERO_DIGEST
                ):
                    return (
                        "checkpoint",
                        f"{checkpoint} is the first checkpoint but does not start the log at seq 1",
                    )
            elif (
                checkpoint.first_seq != previous.last_seq + 1
                or checkpoint.prev_digest != previous.digest
            ):
                return (
                    "checkpoint",
                    f"{checkpoint} does not follow {previous}: the checkpoints are not "
                    "contiguous (a checkpoint removed, or forged)",
                )
            previous = checkpoint
        return None

    @property
    def covered_to(self) -> int:
        """The last stream sequence a checkpoint covers (0: none)."""
        return max((c.last_seq for c in self.checkpoints), default=0)

    def feed(self, stored: StoredEvent, hashed: str | None = None) -> list[str]:
        """Take the next message read (every one: a checkpoint's digest covers messages,
        events or not; ``hashed``: its :func:`message_hash`, if known); what is wrong with
        the checkpoints it closes."""
        if self.digests == "none":
            return []
        problems: list[str] = []
        while (
            self._index < len(self.checkpoints)
            and stored.seq > self.checkpoints[self._index].last_seq
        ):
            if problem := self._close():
                problems.append(problem)
        hashed = hashed or message_hash(stored.body)
        if self.tree is not None and not self._tree_broken:
            try:
                self.tree.add(stored, hashed)
            except LogGap:
                self._tree_broken = True  # the sequence check names the gap
        if self._index < len(self.checkpoints):
            checkpoint = self.checkpoints[self._index]
            if stored.seq >= checkpoint.first_seq:
                if self._seen == 0:
                    self._digest = checkpoint.prev_digest
                    self._next_seq = checkpoint.first_seq
                if stored.seq != self._next_seq:
                    self._whole = False
                self._next_seq = stored.seq + 1
                self._digest = _chain(self._digest, hashed)
                self._seen += 1
        return problems

    def _close(self) -> str | None:
        checkpoint = self.checkpoints[self._index]
        seen, digest, whole = self._seen, self._digest, self._whole
        self._index += 1
        self._seen, self._digest, self._next_seq, self._whole = 0, "", None, True
        if self.digests == "partial" and not (whole and seen == checkpoint.count and seen):
            self.not_checkable += 1
            return None
        if seen == 0:
            digest = checkpoint.prev_digest
        if seen != checkpoint.count:
            return (
                f"{checkpoint} counts {checkpoint.count} messages, {self.where} holds "
                f"{seen} in that range: "
                "events were removed or inserted"
            )
        if digest != checkpoint.digest:
            return (
                f"{checkpoint}: the digest of {self.where}'s messages in that range does not match "
                "the checkpoint: an event there was altered, removed, inserted or reordered"
            )
        self.recomputed += 1
        return self._tree_problem(checkpoint)

    def _tree_problem(self, checkpoint: Checkpoint) -> str | None:
        """A whole log's tree, now as far as ``checkpoint`` reaches, against what it
        commits to: the root of every checkpoint, the case heads of the newest."""
        tree = self.tree
        if tree is None or self._tree_broken or not checkpoint.has_tree:
            return None
        if checkpoint.tree_size != tree.size or checkpoint.root_hash != tree.root():
            return (
                f"{checkpoint} commits to a Merkle tree of {checkpoint.tree_size} messages "
                f"that {self.where}'s {tree.size} messages up to seq {checkpoint.last_seq} do "
                "not give: the log before it was altered, or the checkpoint forged"
            )
        if checkpoint is self.newest and (
            checkpoint.cases_size != len(tree.heads) or checkpoint.cases_root != tree.cases_root()
        ):
            return (
                f"{checkpoint} commits to the heads of {checkpoint.cases_size} cases that "
                f"{self.where}'s {len(tree.heads)} cases do not give"
            )
        self.trees_checked += 1
        return None

    def since_problem(self, registry: Registry) -> str | None:
        """Against the checkpoint an auditor kept (``since``), after :meth:`end`: that the
        newest checkpoint's tree extends it, by a consistency proof (RFC 9162 §2.1.4) made
        from the log read and checked against the two signed roots alone. What is wrong, if
        anything (``consistency``)."""
        kept = self.since
        if kept is None:
            return None
        if unfit := kept_problem(kept, self.stream, registry):
            return unfit
        assert kept.tree_size is not None
        assert kept.root_hash is not None
        newest, tree = self.newest, self.tree
        if tree is None or tree.tree is None:
            return f"--since needs the whole log, not {self.where}"
        if tree.size < kept.tree_size:
            return (
                f"{self.where} holds {tree.size} messages, but the checkpoint kept "
                f"({kept}) covers {kept.tree_size}: the events after seq {tree.size} were "
                "removed since"
            )
        if newest is None or newest.tree_size is None or newest.tree_size < kept.tree_size:
            return (
                f"the newest checkpoint here ({newest or 'none'}) covers less than the one "
                f"kept ({kept}): checkpoints, or the events after them, were removed since"
            )
        assert newest.root_hash is not None
        m, n = kept.tree_size, newest.tree_size
        proof = tree.tree.consistency_proof(m, n) if n <= tree.tree.size else []
        if not verify_consistency(m, n, kept.root_hash, newest.root_hash, proof):
            return (
                f"the log {newest} commits to ({n} messages) does not extend the one the "
                f"checkpoint kept commits to ({kept}, {m} messages, root "
                f"{hash_text(kept.root_hash)}): the log was rewritten at or before seq {m}"
            )
        self.since_note = (
            f"consistency: the log only grew since the checkpoint kept ({kept}, {m} "
            f"messages) up to {newest} ({n}): a proof of {len(proof)} hashes holds between "
            "their signed roots"
        )
        return None

    def end(self, last_seq: int | None, *, tail: bool = True) -> list[str]:
        """After the last event read (``last_seq``, None if none): the checkpoints still
        open, every problem with them."""
        problems: list[str] = []
        if tail and self.checkpoints:
            top = max(self.checkpoints, key=lambda s: s.last_seq)
            if top.last_seq > (last_seq or 0):
                problems.append(
                    f"{self.where} ends at {last_seq or 0} but checkpoint {top.seq} covers up to "
                    f"{top.last_seq}: the events after {last_seq or 0} were removed"
                )
        if self.digests == "none":
            return problems
        while self._index < len(self.checkpoints):
            if problem := self._close():
                problems.append(problem)
        return problems

    def note(self) -> str:
        if not self.checkpoints:
            return "checkpoints: none cover this log"
        span = f"stream seq {self.checkpoints[0].first_seq}..{self.checkpoints[-1].last_seq}"
        if self.digests == "none":
            return (
                f"checkpoints: {len(self.checkpoints)} ({span}): signatures and ranges "
                f"checked, digests "
                "not (one case's read)"
            )
        text = f"checkpoints: {len(self.checkpoints)} ({span}), {self.recomputed} recomputed"
        if self.trees_checked:
            text += f", {self.trees_checked} Merkle roots recomputed"
        if self.not_checkable:
            text += f", {self.not_checkable} not checkable here (range not wholly in this log)"
        return text
