"""Verifying the log: every problem, named, or proof that all of it holds.

Per message, in stream order (a problem is recorded and the check carries on)::

    sequence   stream sequences strictly increase; for a whole log (the unfiltered stream,
               or an archive of all of it) they run from 1 with no gap (the stream denies
               delete and purge, so a gap is a removed event)
    event      the body decodes through the contracts registry (envelope, type, version,
               data), on the subject it was published on; a message that does not is *no
               event*: admission could never have written it and no consumer applied it
               (they quarantine it), so it is counted and listed, not verified, and it is
               not a problem by itself. It keeps its place in its case's chain, though: a
               publisher's head read returns it, so the case's next event carries its hash
               (or, from a publisher that skipped it, the previous event's: either holds)
    signature  signed by its ``source`` agency with a key of the registry valid at its time
    chain      ``prevhash`` is the hash (:func:`lintas.contracts.message_hash`: SHA-256 of
               the RFC 8785 form, signature included) of the case's previous message as
               stored; a case's first message has none

and at the end: nothing missing after the last message (the stream's cut, or the archive's
manifest: count, first and last sequence, SHA-256 of ``events.jsonl`` and ``keys.json``),
and, for the stream, no setting of the event log or its checkpoints that can drop events
(:func:`lintas.infra.nats.topology.dropping_settings`).

Every problem is a :class:`Problem` with a stable code (:data:`PROBLEMS`; the messages that
are no event have theirs, :data:`NOT_EVENTS`), listed in docs/AUDIT.md. Rules about a case's
events as a whole plug in as a :data:`CasePass`; :func:`verify_stream` and :func:`verify_archive`
run the authority policy (who may say what about which case: :mod:`.authority`) unless told
otherwise, each refusal a problem ``authority:<code>``.

A partial archive (exported ``--from`` a time) leaves out the events before its window, so
a case that began earlier cannot be checked from its first event: its first event in the
archive is taken as the chain's *anchor* (its ``prevhash`` is trusted, not checked), every
later event of the case is checked against it, and the verdict names how many cases were
anchored. A ``--case`` export, or one ``--to`` a time only, starts at the beginning and is
checked strictly.

Checkpoints (:mod:`.checkpoints`): every checkpoint given is checked for its signer (the
sealer only: ``checkpoint-signer``), its signature and for following its predecessor; over a
whole log each checkpoint's range is recomputed (count and chained digest) and the log must
reach the last checkpoint's last sequence, so removing the tail or whole cases is named; the
messages after the last checkpoint are counted as not yet covered. An archive's manifest is
signed by the sealer (``manifest-signature``) over its filters, counts, digests and last
checkpoint, and its ``positions.txt`` names the very message moved (``position``). An archive
verified by its own keys holds nothing against one re-signed throughout with keys it ships
itself: :attr:`Verdict.authenticated` is then False (``lintas verify`` exits 4); pass a
registry kept apart (``lintas keys export``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from lintas.audit.archive import (
    CHECKPOINTS_FILE,
    EVENTS_FILE,
    KEYS_FILE,
    LINE_LIMIT,
    MANIFEST_FILE,
    POSITIONS_FILE,
    PROOFS_FILE,
    ArchiveError,
    ArchiveReader,
    LineError,
    load_keys,
    parse_line,
)
from lintas.audit.authority import AUTHORITY_PROBLEMS, authority
from lintas.audit.checkpoints import (
    Checkpoint,
    CheckpointChecker,
    CheckpointError,
    kept_problem,
)
from lintas.audit.events import EventRef, StoredEvent, case_of_subject
from lintas.audit.logtree import CaseHead, hash_bytes, hash_text, head_leaf, message_leaf
from lintas.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from lintas.audit.stream import StreamCut
from lintas.contracts import (
    ContractError,
    Event,
    SignatureError,
    canonical_json,
    decode,
    message_hash,
    parse_message,
)
from lintas.contracts.admission import duplicate_member
from lintas.contracts.canonical import parsed_plain
from lintas.contracts.errors import EnvelopeError, UnknownEventType, UnknownVersion
from lintas.contracts.redaction import printable
from lintas.infra.keys.signing import SEALER, Registry, Verifier, fingerprint

__all__ = [
    "CASE_PASSES",
    "NOT_EVENTS",
    "PROBLEMS",
    "CasePass",
    "LogChecker",
    "Problem",
    "Verdict",
    "verify_archive",
    "verify_stream",
]

Progress = Callable[[int], None]

PROBLEMS: Final[Mapping[str, str]] = {
    "sequence-gap": "stream sequences are missing before this message: removed",
    "sequence-order": "a stream sequence not above the one before it: reordered or repeated",
    "signature": "not signed by its source agency with a registered key valid at its time",
    "chain-break": "prevhash is not the hash of the case's previous message",
    "chain-missing": "no prevhash, but the case has an earlier message",
    "chain-start": "the case's first message here carries a prevhash: its earlier ones are gone",
    "other-case": "an event of another case than the only one the archive's manifest lists",
    "outside-window": "an event time outside the archive manifest's window",
    "log-end": "stream sequences are missing after the last message: removed",
    "checkpoint": "a checkpoint's signature, range, count or digest does not hold",
    "checkpoint-signer": "a checkpoint signed by anyone but the sealer (an agency's key, say)",
    "duplicate-member": "a JSON object names one member twice: readers would disagree on it",
    "position": "not the message the log held at this sequence (moved, swapped or altered)",
    "manifest-signature": "the archive's manifest is not signed by the sealer, or altered",
    "archive-line": "a line of events.jsonl that is no message line",
    "archive-manifest": "the archive disagrees with its manifest (counts, sequences, digests)",
    "no-events": "the case asked for has no events",
    "stream-config": "the event log or its checkpoints stream can drop events",
    "consistency": "the log does not extend the checkpoint the auditor kept (--since): it "
    "lost events after it, or was rewritten before it",
    "inclusion": "an archive's event, or its case's head, is not in the log the checkpoint "
    "commits to (its Merkle proof fails)",
    **AUTHORITY_PROBLEMS,
}
"""Every problem ``verify`` reports, by its stable code (``lintas verify --json``)."""

NOT_EVENTS: Final[Mapping[str, str]] = {
    "not-json": "the body is not JSON",
    "not-an-envelope": "JSON, but no well-formed lintas envelope (or not for its subject)",
    "unknown-type": "an event type or version the contracts do not know",
    "breaks-contract": "a known type whose data breaks its contract",
    "undecodable": "a body the decoder cannot take at all (a hostile nesting depth, say)",
}
"""Why a message is no event, by its stable code: counted and listed, not a problem."""

CasePass = Callable[[Event, Any], tuple[Any, Iterable[tuple[str, str]]]]
"""A rule over one case's events (decoded and signed, in stream order), as a fold: given
the next event and the state it left the case in (None before the case's first), the new
state and ``(code, message)`` per problem with that event (its codes in :data:`PROBLEMS`).
The authority policy is one (:func:`lintas.audit.authority.authority`, :data:`CASE_PASSES`).
The checker holds one state per case and pass, and one hash per case: never the events."""

CASE_PASSES: Final[tuple[CasePass, ...]] = (authority,)
"""What :func:`verify_stream` and :func:`verify_archive` run over each case by default."""


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong (a code of :data:`PROBLEMS` or :data:`NOT_EVENTS`), and with which
    message when one can be named."""

    code: str
    message: str
    event: EventRef | None = None

    def __str__(self) -> str:
        return f"{self.event}: {self.message}" if self.event is not None else self.message

    def to_json(self) -> dict[str, Any]:
        ref = self.event or EventRef(None, None, None)
        return {
            "code": self.code,
            "seq": ref.seq,
            "event_id": ref.event_id,
            "case": ref.case_id,
            "message": self.message,
        }


@dataclass
class Verdict:
    source: str
    authenticated: bool = True
    """False: the keys came from the archive itself (no ``--keys``), so what holds proves
    nothing about who signed it."""
    uncovered: int = 0
    """Messages after the last checkpoint: no checkpoint vouches for them yet."""
    newest: Checkpoint | None = None
    """The newest checkpoint that commits to the log's Merkle tree (``--save-checkpoint``
    keeps it for the next ``--since``)."""
    last_checkpoint: Checkpoint | None = None
    """The checkpoint that reaches furthest into the log: what :attr:`uncovered` counts after."""
    events: int = 0
    cases: int = 0
    messages: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    anchored: int = 0
    anchored_cases: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    not_events: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def finding(self) -> Problem | None:
        """The first problem, if any."""
        return self.problems[0] if self.problems else None

    @property
    def status(self) -> str:
        if not self.ok:
            return "problems"
        return "verified" if self.authenticated else "unauthenticated"

    def to_json(self) -> dict[str, Any]:
        """``lintas verify --json``: a stable document (docs/AUDIT.md)."""
        return {
            "format": "lintas-verify/1",
            "source": self.source,
            "status": self.status,
            "authenticated": self.authenticated,
            "counts": {
                "messages": self.messages,
                "events": self.events,
                "cases": self.cases,
                "not_events": len(self.not_events),
                "problems": len(self.problems),
                "anchored_cases": self.anchored,
                "uncovered": self.uncovered,
            },
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoint": self._checkpoint_json(),
            "problems": [p.to_json() for p in self.problems],
            "not_events": [p.to_json() for p in self.not_events],
            "notes": list(self.notes),
        }

    def _checkpoint_json(self) -> dict[str, Any] | None:
        """The newest checkpoint read (its tree's fields null for one made before trees) and
        how many messages after it no checkpoint covers yet; None: no checkpoint."""
        checkpoint = self.last_checkpoint
        if checkpoint is None:
            return None

        def text(raw: bytes | None) -> str | None:
            return None if raw is None else "sha256:" + raw.hex()

        return {
            "seq": checkpoint.seq,
            "first_seq": checkpoint.first_seq,
            "last_seq": checkpoint.last_seq,
            "tree_size": checkpoint.tree_size,
            "root_hash": text(checkpoint.root_hash),
            "cases_size": checkpoint.cases_size,
            "cases_root": text(checkpoint.cases_root),
            "uncovered": self.uncovered,
        }


@dataclass(slots=True)
class _Head:
    seq: int
    hash: str


def _not_event_code(exc: Exception) -> str:
    if isinstance(exc, UnknownEventType | UnknownVersion):
        return "unknown-type"
    if isinstance(exc, EnvelopeError):
        return "not-an-envelope"
    return "breaks-contract" if isinstance(exc, ContractError) else "undecodable"


def _hash_and_duplicate(body: bytes, doc: Any) -> tuple[str, str | None]:
    """The message's hash (:func:`message_hash`) and a member name one of its objects
    names twice, if any.

    The canonical form the hash needs also rules duplicates out cheaply: for a document
    read with no fraction, it is never longer than the body, and exactly as long only when
    the body is compact and names no member twice (a second member adds bytes nothing can
    take away). Only a body that is not is parsed again, member by member."""
    if isinstance(doc, dict):
        try:
            canon = canonical_json(doc)
        except (TypeError, ValueError):
            return message_hash(body, doc), duplicate_member(body)
        own = "sha256:" + hashlib.sha256(canon).hexdigest()
        if parsed_plain(doc) and len(canon) == len(body):
            return own, None
        return own, duplicate_member(body)
    return message_hash(body, doc), None


class LogChecker:
    """Checks messages one at a time, in the order read, recording every problem; keeps one
    hash per case, not events (unless a :data:`CasePass` needs them).

    ``contiguous_from``: the sequence the log must start at, with no gap after (a whole
    log); None for a filtered read (sequences need only increase). ``anchors``: a case's
    first event may carry a ``prevhash`` (a partial archive), trusted as the anchor.
    ``case_id`` / ``window``: what an archive's manifest says it holds. ``focus``: check
    only this case's messages in full; the others for their sequence only.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        contiguous_from: int | None,
        anchors: bool = False,
        case_id: str | None = None,
        window: tuple[datetime | None, datetime | None] = (None, None),
        key_problems: Iterable[str] = (),
        focus: str | None = None,
        case_passes: Sequence[CasePass] = (),
    ) -> None:
        self.verifier = Verifier(registry)
        self.contiguous_from = contiguous_from
        self.anchors = anchors
        self.case_id = case_id
        self.window = window
        self.key_problems = list(key_problems)
        self.focus = focus
        self.case_passes = list(case_passes)
        self.problems: list[Problem] = []
        self.not_events: list[Problem] = []
        self.passed_over = 0
        self._heads: dict[str, _Head] = {}
        self._event_heads: dict[str, _Head] = {}
        self._cases: set[str] = set()
        self._case_states: dict[str, list[Any]] = {}
        self.last_hash: str | None = None
        """The hash of the last message checked in full."""
        self.previous_seq: int | None = None
        self.last: EventRef | None = None
        self.messages = 0
        self.events = 0
        self.first_seq: int | None = None
        self.anchored = 0
        self.anchored_cases: list[str] = []

    @property
    def cases(self) -> int:
        return len(self._cases)

    def report(self, code: str, message: str, event: EventRef | None = None) -> Problem:
        """Record a problem (one of :data:`PROBLEMS`)."""
        problem = Problem(code, message, event)
        self.problems.append(problem)
        return problem

    def check(self, stored: StoredEvent) -> list[Problem]:
        """Check the next message read; what is wrong with it (problems, or why it is no
        event), also recorded."""
        found = len(self.problems), len(self.not_events)
        ref = stored.ref()
        self._sequence(stored.seq, ref)
        self.messages += 1
        if self.focus is None or stored.subject.rsplit(".", 1)[-1] == self.focus:
            ref = self._message(stored, ref)
        else:
            self.passed_over += 1
        self.previous_seq = max(stored.seq, self.previous_seq or 0)
        self.first_seq = self.first_seq if self.first_seq is not None else stored.seq
        self.last = ref
        return self.problems[found[0] :] + self.not_events[found[1] :]

    def _sequence(self, seq: int, ref: EventRef) -> None:
        if self.previous_seq is not None and seq <= self.previous_seq:
            self.report(
                "sequence-order",
                f"stream sequence {seq} comes after {self.previous_seq}: messages out of order "
                "or repeated",
                ref,
            )
        elif self.contiguous_from is not None:
            expected = (
                self.previous_seq + 1 if self.previous_seq is not None else self.contiguous_from
            )
            if seq != expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                self.report(
                    "sequence-gap",
                    f"stream sequence {missing} missing before this event (removed or moved?)",
                    ref,
                )

    def _message(self, stored: StoredEvent, ref: EventRef) -> EventRef:
        doc = parse_message(stored.body)  # once: contract, signature and hash
        # The hash the case's next message must carry.
        own, twice = _hash_and_duplicate(stored.body, doc)
        self.last_hash = own
        if twice is not None:
            self.report(
                "duplicate-member",
                f"a JSON object in it names {twice!r} twice: one reader would take the first, "
                "another the last (admission refuses it: duplicate_member)",
                stored.ref(),
            )
        event: Event | None = None
        code, reason = "not-json", "not JSON"
        if doc is not None:
            try:
                event = decode(stored.body, subject=stored.subject, parsed=doc)
            except Exception as exc:  # a hostile body, or a broken contract: never fatal
                code, reason = _not_event_code(exc), f"{exc.__class__.__name__}: {exc}"
        if event is None:
            self.not_events.append(Problem(code, reason, ref))
            if (case_id := case_of_subject(stored.subject)) is not None:
                self._heads[case_id] = _Head(stored.seq, own)  # still the case's head
            return ref
        ref = EventRef(stored.seq, event.id, event.case_id)
        self.events += 1
        self._cases.add(event.case_id)
        if self.case_id is not None and event.case_id != self.case_id:
            self.report(
                "other-case",
                f"is not of case {self.case_id}, the only case the manifest lists",
                ref,
            )
        low, high = self.window
        if (low is not None and event.time < low) or (high is not None and event.time > high):
            self.report(
                "outside-window",
                f"its time {event.time.isoformat()} lies outside the manifest's window",
                ref,
            )
        try:
            self.verifier.verify(stored.body, event.envelope, parsed=doc)
        except SignatureError as exc:
            cause = f" ({KEYS_FILE}: {'; '.join(self.key_problems)})" if self.key_problems else ""
            self.report("signature", f"signature: {exc}{cause}", ref)
        else:
            if self.case_passes:
                self._judge(event, ref)
        self._chain(stored, event.case_id, event.envelope.prevhash, own, ref)
        return ref

    def _judge(self, event: Event, ref: EventRef) -> None:
        states = self._case_states.setdefault(event.case_id, [None] * len(self.case_passes))
        for index, rule in enumerate(self.case_passes):
            states[index], found = rule(event, states[index])
            for code, message in found:
                self.report(code, message, ref)

    def _chain(
        self, stored: StoredEvent, case_id: str, prevhash: str | None, own: str, ref: EventRef
    ) -> None:
        # Two heads per case: its last message, and its last event. A publisher's head read
        # returns the last message, no event or not; a chain over the events alone skips
        # the rest. Either link holds: nothing of the case's *events* is missing.
        head, event_head = self._heads.get(case_id), self._event_heads.get(case_id)
        links = {h.hash for h in (head, event_head) if h is not None}
        if head is None:
            if prevhash is not None:
                if not self.anchors:
                    self.report(
                        "chain-start",
                        "is the first event of its case in the log but carries a prevhash: "
                        "the events before it are missing",
                        ref,
                    )
                else:
                    self.anchored += 1
                    if len(self.anchored_cases) < 10:
                        self.anchored_cases.append(case_id)
        elif prevhash is None:
            if event_head is not None:
                self.report(
                    "chain-missing",
                    f"carries no prevhash, but its case has an earlier event (stream seq "
                    f"{event_head.seq}): not chained",
                    ref,
                )
        elif prevhash not in links:
            self.report(
                "chain-break",
                f"prevhash does not match the case's previous event in the log (stream seq "
                f"{(event_head or head).seq}): an event of this case was removed, inserted, "
                "altered or reordered before it",
                ref,
            )
        # Checked on from here: one removal is one problem, not one per later event.
        self._heads[case_id] = self._event_heads[case_id] = _Head(stored.seq, own)

    def end_of(self, last_seq: int) -> Problem | None:
        """For a whole log: nothing may be missing after the last message read."""
        if self.contiguous_from is None or (self.previous_seq or 0) >= last_seq:
            return None
        after = self.previous_seq or self.contiguous_from - 1
        return self.report(
            "log-end",
            f"the log ends here, but stream sequences {after + 1}..{last_seq} should follow "
            "(removed?)",
            self.last,
        )

    def finish(self) -> None:
        """Once the log is read: the cases' states let go."""
        self._case_states.clear()

    def verdict(self, source: str) -> Verdict:
        return Verdict(
            source=source,
            events=self.events,
            cases=self.cases,
            messages=self.messages,
            first_seq=self.first_seq,
            last_seq=self.previous_seq,
            anchored=self.anchored,
            anchored_cases=list(self.anchored_cases),
            problems=list(self.problems),
            not_events=list(self.not_events),
        )


# -- the stream ---------------------------------------------------------------------------------


async def verify_stream(
    events: AsyncIterator[StoredEvent],
    cut: StreamCut,
    registry: Registry,
    *,
    case_id: str | None = None,
    progress: Progress | None = None,
    checkpoints: Sequence[Checkpoint] | None = None,
    dropping: Mapping[str, Sequence[str]] | None = None,
    case_passes: Sequence[CasePass] = CASE_PASSES,
    since: Checkpoint | None = None,
) -> Verdict:
    """Verify the stream up to ``cut`` (one case through its subject filter, if given),
    and the ``checkpoints`` of it (all of them, read before the cut) when given.

    ``dropping``: :func:`lintas.infra.nats.topology.dropping_streams`, what in the kept
    streams' configuration can drop events, each a problem. ``since``: a checkpoint the
    auditor kept from an earlier verify; the log must only have grown since (a consistency
    proof to the newest checkpoint; the whole stream, not one case)."""
    if since is not None and case_id is not None:
        raise ValueError("a consistency proof (--since) needs the whole log, not one case")
    checker = LogChecker(registry, contiguous_from=None if case_id else 1, case_passes=case_passes)
    for name, settings in (dropping or {}).items():
        for setting in settings:
            checker.report("stream-config", f"stream {name} can lose events: {setting}")
    checkpointed = CheckpointChecker(
        checkpoints or (),
        registry,
        stream=cut.stream,
        digests="none" if case_id else "strict",
        since=since,
    )
    if found := checkpointed.check_checkpoints(complete=True):
        checker.report(*found)
    read = uncovered = 0
    covered = checkpointed.covered_to
    async for stored in events:
        checker.last_hash = None
        checker.check(stored)
        uncovered += stored.seq > covered
        for problem in checkpointed.feed(stored, checker.last_hash):
            checker.report("checkpoint", problem, checker.last)
        read += 1
        if progress is not None:
            progress(read)
    for problem in checkpointed.end(cut.last_seq if case_id else checker.previous_seq):
        checker.report("checkpoint", problem, None if case_id else checker.last)
    if inconsistent := checkpointed.since_problem(registry):
        checker.report("consistency", inconsistent)
    # Even when the stream holds nothing now: emptied by a limit, its last sequence stays.
    checker.end_of(cut.last_seq)
    if case_id is not None and checker.events == 0:
        checker.report("no-events", f"case {case_id} has no events in stream {cut.stream}")
    checker.finish()
    what = f"case {case_id} in stream {cut.stream}" if case_id else f"stream {cut.stream}"
    verdict = checker.verdict(f"{what} up to seq {cut.last_seq}")
    if checkpoints is not None:
        verdict.notes.append(checkpointed.note())
        verdict.uncovered = _uncovered(verdict, covered, uncovered)
    _tree_notes(verdict, checkpointed)
    return verdict


def _tree_notes(verdict: Verdict, checkpointed: CheckpointChecker) -> None:
    if checkpointed.since_note is not None:
        verdict.notes.append(checkpointed.since_note)
    verdict.newest = checkpointed.newest
    verdict.last_checkpoint = max(checkpointed.checkpoints, key=lambda c: c.last_seq, default=None)


def _uncovered(verdict: Verdict, covered: int, uncovered: int) -> int:
    """``uncovered`` messages read after the last checkpoint (``covered``): named in a note."""
    if uncovered:
        verdict.notes.append(
            f"not yet covered by a checkpoint: {_plural(uncovered, 'message')} after stream seq "
            f"{covered} (up to {verdict.last_seq}); no checkpoint vouches for them yet, so "
            "their removal with the manifest's would not show"
        )
    return uncovered


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


# -- an archive ---------------------------------------------------------------------------------


def _archive_end(
    reader: ArchiveReader, checker: LogChecker, checkpoints: Sequence[Checkpoint]
) -> None:
    manifest = reader.manifest
    last = checker.last

    def differs(message: str, event: EventRef | None = None) -> None:
        checker.report("archive-manifest", message, event)

    if checker.messages != manifest.count or checker.previous_seq != manifest.last_seq:
        if checker.messages < manifest.count:
            differs(
                f"the archive ends here, but its manifest lists {manifest.count} events up "
                f"to stream seq {manifest.last_seq}: {manifest.count - checker.messages} "
                "missing after this event",
                last,
            )
        else:
            differs(
                f"the archive holds {checker.messages} events up to stream seq "
                f"{checker.previous_seq}, but its manifest lists {manifest.count} up to "
                f"{manifest.last_seq}",
                last,
            )
    if checker.first_seq != manifest.first_seq:
        differs(
            f"the archive starts at stream seq {checker.first_seq}, its manifest says "
            f"{manifest.first_seq}"
        )
    if manifest.whole_log and (manifest.last_seq or 0) != manifest.cut_last_seq:
        differs(
            f"the manifest says the whole log up to seq {manifest.cut_last_seq} was exported, "
            f"but its events end at seq {manifest.last_seq}",
            last,
        )
    if reader.events_sha256 != manifest.events_sha256:
        differs(
            f"{EVENTS_FILE} does not match the SHA-256 in the manifest: its bytes were "
            "changed (in a way no event's content shows, e.g. a stored time or whitespace)"
        )
    if checker.key_problems:
        differs(f"{KEYS_FILE} was altered: {'; '.join(checker.key_problems)}")
    if reader.checkpoints_sha256 != manifest.checkpoints_sha256:
        differs(f"{CHECKPOINTS_FILE} does not match the SHA-256 in the manifest")
    if manifest.last_checkpoint is not None:
        kept = [c for c in checkpoints if c.seq == manifest.last_checkpoint["seq"]]
        if not kept or kept[0].digest != manifest.last_checkpoint["digest"]:
            differs(
                f"the manifest's last checkpoint ({manifest.last_checkpoint['seq']}) is not in "
                f"{CHECKPOINTS_FILE}: checkpoints were removed or replaced"
            )
    elif manifest.signed and checkpoints:
        differs(f"the manifest lists no checkpoint, but {CHECKPOINTS_FILE} holds some")


def _manifest_signature(reader: ArchiveReader, registry: Registry) -> str | None:
    """What is wrong with the manifest's signature (by the sealer, over the manifest as
    read), if anything."""
    manifest = reader.manifest
    if not manifest.signed or manifest.doc is None:
        return (
            f"{MANIFEST_FILE} is not signed: its filters, counts and digests are only the "
            "word of whoever carried the archive"
        )
    signer = manifest.doc.get("signed_by")
    if signer != SEALER:
        return f"{MANIFEST_FILE} is signed by {signer!r}, not by the {SEALER}"
    try:
        at = datetime.fromisoformat(str(manifest.doc.get("signed_at")))
        Verifier(registry).verify_document(manifest.doc, signer=SEALER, at=at)
    except ValueError:
        return f"{MANIFEST_FILE}: signed_at is not a time"
    except SignatureError as exc:
        return f"{MANIFEST_FILE}, signed by the {SEALER}: {exc} (its filters or counts altered?)"
    return None


class _Positions:
    """``positions.txt`` read side by side with the events: each line's message must be the
    one the exporter read at that sequence, so a message moved is named where it lies.

    The file is first read once through for its SHA-256 (it is small, and lies before the
    events in a tarball): only a file the signed manifest names is a reference; one that is
    not is a problem by itself, and nothing is judged by it."""

    def __init__(self, reader: ArchiveReader, checker: LogChecker) -> None:
        self.checker = checker
        manifest = reader.manifest
        self.present = manifest.positions_sha256 is not None and reader.has(POSITIONS_FILE)
        if self.present:
            for _ in reader.positions():
                pass
            if reader.positions_sha256 != manifest.positions_sha256:
                checker.report(
                    "archive-manifest",
                    f"{POSITIONS_FILE} does not match the SHA-256 in the manifest",
                )
                self.present = False
        self._lines = reader.positions() if self.present else iter(())

    def _hold(self, message: str, ref: EventRef | None) -> None:
        self.checker.report("position", message, ref)

    def feed(self, stored: StoredEvent | None, own: str | None, ref: EventRef | None) -> None:
        if not self.present:
            return
        expected = next(self._lines, None)
        if stored is None:
            return
        if expected is None:
            self._hold(f"{POSITIONS_FILE} names no message at this line", ref)
        elif expected[0] != stored.seq:
            self._hold(
                f"{POSITIONS_FILE} puts stream seq {expected[0]} here: lines were moved", ref
            )
        elif expected[1] != (own or message_hash(stored.body)):
            self._hold(
                f"the log held another message at stream seq {stored.seq} ({expected[1]}): "
                "this one was moved here, swapped or altered",
                ref,
            )

    def end(self) -> None:
        if self.present and next(self._lines, None) is not None:
            self._hold(f"{POSITIONS_FILE} names more messages than {EVENTS_FILE} holds", None)
        for _ in self._lines:  # to its end, closing its handle
            pass


class _Proofs:
    """A partial archive's Merkle proofs (``proofs.jsonl``, ``lintas-archive/3``) against the
    checkpoint its manifest names: every event that checkpoint covers is in the log's tree
    at its sequence, and for one case's archive, the case's last message up to it is the
    head the checkpoint commits to, so no event of the case was dropped (its hash chain
    holds the rest)."""

    def __init__(
        self, reader: ArchiveReader, checker: LogChecker, checkpoints: Sequence[Checkpoint]
    ) -> None:
        self.checker = checker
        self.checker_stream = reader.manifest.stream
        self.spec = reader.manifest.proofs
        self.case = reader.manifest.case_id
        self.paths: dict[int, list[bytes]] = {}
        self.proved = 0
        self.head_proved = False
        self.last_of_case: tuple[int, str] | None = None
        self.checkpoint: Checkpoint | None = None
        self.since_note: str | None = None
        if self.spec is None:
            return
        named = self.spec["checkpoint"]
        found = [c for c in checkpoints if c.seq == named["seq"] and c.has_tree]
        if (
            not found
            or found[0].tree_size != named["tree_size"]
            or found[0].root_hash != hash_bytes(named["root_hash"])
        ):
            checker.report(
                "inclusion",
                f"the manifest's proofs are against checkpoint {named['seq']}, which "
                f"{CHECKPOINTS_FILE} does not hold as the manifest says",
            )
            self.spec = None
            return
        self.checkpoint = found[0]
        try:
            self.paths = reader.proofs()
        except (ArchiveError, LineError) as exc:
            checker.report("archive-manifest", str(exc))
            self.spec = None
            return
        if reader.proofs_sha256 != self.spec["sha256"]:
            checker.report(
                "archive-manifest", f"{PROOFS_FILE} does not match the SHA-256 in the manifest"
            )
            self.spec = None

    def feed(self, stored: StoredEvent, hashed: str | None, ref: EventRef | None) -> None:
        checkpoint = self.checkpoint
        if self.spec is None or checkpoint is None or checkpoint.tree_size is None:
            return
        if stored.seq > checkpoint.tree_size:
            return  # after the checkpoint: counted as not yet covered
        hashed = hashed or message_hash(stored.body)
        path = self.paths.get(stored.seq)
        assert checkpoint.root_hash is not None
        if path is None or not verify_inclusion(
            message_leaf(hashed), stored.seq - 1, checkpoint.tree_size, path, checkpoint.root_hash
        ):
            self.checker.report(
                "inclusion",
                f"not the message the log held at stream seq {stored.seq} by the Merkle tree "
                f"{checkpoint} commits to: altered, moved, or of another log",
                ref,
            )
        else:
            self.proved += 1
        if self.case is not None and case_of_subject(stored.subject) == self.case:
            self.last_of_case = (stored.seq, hashed)

    def end(self) -> None:
        checkpoint = self.checkpoint
        if self.spec is None or checkpoint is None or self.case is None:
            return
        head = self.spec.get("case_head")
        have = self.last_of_case
        if head is None:
            if have is not None:
                self.checker.report(
                    "inclusion",
                    f"the manifest proves no head of case {self.case} though {checkpoint} "
                    f"covers its events up to stream seq {have[0]}",
                )
            return
        entry = CaseHead(self.case, int(head["seq"]), str(head["hash"]))
        path = [bytes.fromhex(p) for p in head["path"]]
        assert checkpoint.cases_root is not None
        if (
            head["case"] != self.case
            or head["cases_size"] != checkpoint.cases_size
            or not verify_inclusion(
                head_leaf(entry), head["index"], head["cases_size"], path, checkpoint.cases_root
            )
        ):
            self.checker.report(
                "inclusion",
                f"case {self.case}'s head in the manifest is not one {checkpoint} commits to",
            )
        elif (alone := self._alone(head, checkpoint.cases_root)) is not None:
            self.checker.report(
                "inclusion",
                f"{checkpoint} may commit to another head of case {self.case}: {alone}",
            )
        elif have != (entry.seq, entry.hash):
            last = f"stream seq {have[0]}" if have is not None else "none"
            self.checker.report(
                "inclusion",
                f"{checkpoint} commits to case {self.case}'s last message up to it at stream "
                f"seq {entry.seq}, but the archive's last of the case up to there is {last}: "
                "events of the case were dropped",
            )
        else:
            self.head_proved = True

    def consistency_problem(self, kept: Checkpoint, registry: Registry) -> str | None:
        """Against the checkpoint an auditor kept, after :meth:`end`: that the proof
        checkpoint's tree extends it, by the consistency proof the manifest carries, checked
        against the two signed roots alone. What is wrong, if anything (``consistency``)."""
        checkpoint, spec = self.checkpoint, self.spec
        if unfit := kept_problem(kept, self.checker_stream, registry):
            return unfit
        if spec is None or checkpoint is None or checkpoint.root_hash is None:
            return (
                f"the archive's consistency proof is against no checkpoint it holds as its "
                f"manifest says: nothing shows the log extends the checkpoint kept ({kept})"
            )
        assert kept.tree_size is not None
        assert kept.root_hash is not None
        assert checkpoint.tree_size is not None
        m, n = kept.tree_size, checkpoint.tree_size
        path = [bytes.fromhex(p) for p in spec["consistency"]["path"]]
        if not verify_consistency(m, n, kept.root_hash, checkpoint.root_hash, path):
            return (
                f"the log {checkpoint} commits to ({n} messages) is not shown to extend the one "
                f"the checkpoint kept commits to ({kept}, {m} messages, root "
                f"{hash_text(kept.root_hash)}): the archive's consistency proof fails, so the "
                f"log was rewritten at or before seq {m}, lost events after it, or the proof "
                "was altered"
            )
        self.since_note = (
            f"consistency: the log only grew since the checkpoint kept ({kept}, {m} messages) "
            f"up to {checkpoint} ({n}): the archive's proof of {len(path)} hashes holds "
            "between their signed roots"
        )
        return None

    def _alone(self, head: dict[str, Any], root: bytes) -> str | None:
        """Why the heads tree might hold a second entry of the case, or None: the entries
        at ``index - 1`` and ``index + 1`` (each proved, or the tree's edge) must name cases
        strictly before and after it in byte order. A proof shows one entry, not its
        neighbours; these show that a sorted tree has no other head of the case (a stale
        one, which a one-case archive could end at)."""
        assert self.case is not None
        index, size, case = head["index"], head["cases_size"], self.case.encode()
        for side, at, beyond in (("before", index - 1, False), ("after", index + 1, True)):
            proved = head.get(side)
            if not 0 <= at < size:
                if proved is not None:
                    return f"the manifest proves an entry {side} the edge of the heads tree"
                continue
            if proved is None:
                return (
                    f"the manifest proves no entry {side} its head (index {at}); an archive "
                    "exported before the heads' neighbours were carried: export it again"
                )
            other = str(proved["entry"]).encode()
            other_case = other.split(b" ", 1)[0]
            path = [bytes.fromhex(p) for p in proved["path"]]
            if not verify_inclusion(leaf_hash(other), at, size, path, root):
                return f"the entry {side} its head is not at index {at} of the heads tree"
            if (other_case > case) if beyond else (other_case < case):
                continue
            return (
                f"the entry {side} its head (index {at}) is of case "
                f"{printable(other_case[:80].decode(errors='replace'))}, not strictly "
                f"{side} it: the heads tree is not sorted around the case, and another of its "
                "heads could hide events after the archive's last"
            )
        return None

    def note(self) -> str | None:
        checkpoint = self.checkpoint
        if self.spec is None or checkpoint is None:
            return None
        text = (
            f"Merkle proofs: {_plural(self.proved, 'message')} proved in the log's tree of "
            f"{checkpoint.tree_size} messages, as {checkpoint} commits to it"
        )
        if self.case is not None and self.head_proved:
            return (
                f"{text}; case {self.case}: exactly what the log held for it up to stream seq "
                f"{checkpoint.last_seq}, its last message the head the checkpoint commits to "
                "(one case's log, not a complete log)"
            )
        return f"{text} (a partial log: what else the log held is not shown here)"


def _carried_consistency(reader: ArchiveReader, kept: Checkpoint) -> None:
    """A partial archive checked ``--since``: it must carry a consistency proof from the
    very checkpoint kept (``lintas export --since``), else nothing can be verified of it:
    ArchiveError."""
    manifest = reader.manifest
    carried = (manifest.proofs or {}).get("consistency")
    if carried is None:
        raise ArchiveError(
            f"a consistency proof (--since) needs the whole log, or a partial archive that "
            f"carries one: {reader.path} holds only {manifest.filters_text()} and no "
            "consistency proof (`lintas export --since KEPT.json` makes one)"
        )
    start = carried["from"]
    if kept.root_hash is None:
        return  # no tree to prove from: the consistency check names it
    if (start["tree_size"], hash_bytes(str(start["root_hash"]))) != (
        kept.tree_size,
        kept.root_hash,
    ):
        raise ArchiveError(
            f"{reader.path} proves consistency from a tree of {start['tree_size']} messages "
            f"(checkpoint {start['seq']}), not from the checkpoint kept ({kept}, "
            f"{kept.tree_size} messages): export it again --since the checkpoint kept"
        )


def verify_archive(
    reader: ArchiveReader,
    *,
    registry: Registry | None = None,
    trusted: Registry | None = None,
    focus: str | None = None,
    progress: Progress | None = None,
    case_passes: Sequence[CasePass] = CASE_PASSES,
    since: Checkpoint | None = None,
) -> Verdict:
    """Verify an archive offline, with its own keys unless ``registry`` is given.
    ``since``: a checkpoint kept from before, which a whole-log archive must extend.

    ``focus``: check one case's events in full, and the rest of the archive (sequence,
    manifest, digests) as always.

    ``trusted`` (this data dir's registry) only says which of the archive's keys it vouches
    for: a note, since the archive's own keys are trusted on the archive's word.
    """
    manifest = reader.manifest
    keys_raw = reader.read(KEYS_FILE)
    own, key_problems = load_keys(keys_raw)
    if "sha256:" + hashlib.sha256(keys_raw).hexdigest() != manifest.keys_sha256:
        key_problems.insert(0, "it does not match the SHA-256 in the manifest")
    notes: list[str] = []
    authenticated = registry is not None
    if registry is None:
        registry = own
        vouched = [e for e in own.entries() if trusted is not None and trusted.get(e.keyid)]
        notes.append(
            f"authenticity NOT established: the keys are the archive's own {KEYS_FILE} "
            f"({len(own.entries())} keys, {len(vouched)} of them also in this data dir's "
            "registry), and an archive re-signed throughout with keys of its own holds by "
            "them: pass --keys the platform's registry (`lintas keys export`), checked "
            "against its published fingerprint"
        )
    else:
        given = len(registry.entries())
        notes.append(
            f"keys: the registry given ({given} keys, fingerprint {fingerprint(registry)}), "
            "not the archive's"
        )
    checker = LogChecker(
        registry,
        contiguous_from=1 if manifest.whole_log else None,
        anchors=manifest.anchored,
        case_id=manifest.case_id,
        window=(manifest.time_from, manifest.time_to),
        key_problems=key_problems,
        focus=focus,
        case_passes=case_passes,
    )
    if problem := _manifest_signature(reader, registry):
        checker.report("manifest-signature", problem)
    try:
        checkpoint_list = reader.checkpoints()
    except CheckpointError as exc:
        checkpoint_list = []
        checker.report("checkpoint", f"{CHECKPOINTS_FILE}: {exc}")
    carried = since is not None and not manifest.whole_log
    if since is not None and carried:
        _carried_consistency(reader, since)
    checkpointed = CheckpointChecker(
        checkpoint_list,
        registry,
        stream=manifest.stream,
        digests="strict" if manifest.whole_log else "partial",
        where="the archive",
        since=None if carried else since,
    )
    if found := checkpointed.check_checkpoints(complete=manifest.whole_log):
        code, problem = found
        checker.report(code, f"{CHECKPOINTS_FILE}: {problem}")
    positions = _Positions(reader, checker)
    proofs = _Proofs(reader, checker, checkpoint_list)
    covered, uncovered = checkpointed.covered_to, 0
    for number, line in reader.events():
        try:
            if line is None:
                raise LineError(f"is longer than {LINE_LIMIT} bytes: not read")
            stored = parse_line(line)
        except LineError as exc:
            checker.report("archive-line", f"{EVENTS_FILE} line {number} {exc}", checker.last)
            positions.feed(None, None, None)
            continue
        checker.last_hash = None
        checker.check(stored)
        uncovered += stored.seq > covered
        positions.feed(stored, checker.last_hash, checker.last)
        proofs.feed(stored, checker.last_hash, checker.last)
        for problem in checkpointed.feed(stored, checker.last_hash):
            checker.report("checkpoint", problem, checker.last)
        if progress is not None:
            progress(number)
    for problem in checkpointed.end(checker.previous_seq, tail=manifest.whole_log):
        checker.report("checkpoint", problem, checker.last)
    if inconsistent := checkpointed.since_problem(registry):
        checker.report("consistency", inconsistent)
    proofs.end()
    if carried:
        assert since is not None
        if inconsistent := proofs.consistency_problem(since, registry):
            checker.report("consistency", inconsistent)
    positions.end()
    _archive_end(reader, checker, checkpoint_list)
    if focus is not None and checker.messages == checker.passed_over:
        checker.report("no-events", f"the archive holds no events of case {focus}")
    checker.finish()
    verdict = checker.verdict(f"archive {reader.path} (filters: {manifest.filters_text()})")
    if focus is not None:
        notes.append(
            f"case {focus} only: the archive's {checker.passed_over} other messages were "
            "checked for sequence and digest, not read"
        )
    notes.append(checkpointed.note())
    if proved := proofs.note():
        notes.append(proved)
    if proofs.since_note is not None:
        notes.append(proofs.since_note)
    verdict.notes = notes
    verdict.authenticated = authenticated
    verdict.uncovered = _uncovered(verdict, covered, uncovered)
    _tree_notes(verdict, checkpointed)
    return verdict
