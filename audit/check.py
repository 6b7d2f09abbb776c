"""Verifying the log: the first bad event, named, or proof that all of it holds.

Per event, in stream order (the first failure stops the check and is reported)::

    sequence   stream sequences strictly increase; for a whole log (the unfiltered stream,
               or an archive of all of it) they run from 1 with no gap (the stream denies
               delete and purge, so a gap is a removed event)
    schema     the body decodes through the contracts registry (envelope, type, version,
               data), on the subject it was published on
    signature  signed by its ``source`` agency with a key of the registry valid at its time
    chain      ``prevhash`` is the hash (:func:`lintas.contracts.message_hash`: SHA-256 of
               the RFC 8785 form, signature included) of the case's previous message as
               stored; a case's first event has none

and at the end: nothing missing after the last event (the stream's cut, or the archive's
manifest: count, first and last sequence, SHA-256 of ``events.jsonl`` and ``keys.json``).

A partial archive (exported ``--from`` a time) leaves out the events before its window, so
a case that began earlier cannot be checked from its first event: its first event in the
archive is taken as the chain's *anchor* (its ``prevhash`` is trusted, not checked), every
later event of the case is checked against it, and the verdict names how many cases were
anchored. A ``--case`` export, or one ``--to`` a time only, starts at the beginning and is
checked strictly.

Checkpoints (:mod:`.checkpoints`): every checkpoint given is checked for its signature and for
following its predecessor; over a whole log each checkpoint's range is recomputed (count and chained
digest) and the log must reach the last checkpoint's last sequence, so removing the tail (with a
rewritten manifest) or whole cases is named. What no check can catch: the checkpoints and the events
after the last one both removed from an archive (compare with the checkpoints stream), or a whole
archive re-signed with keys the archive itself supplies: pass ``--keys`` a registry obtained
independently."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lintas.audit.archive import (
    CHECKPOINTS_FILE,
    EVENTS_FILE,
    KEYS_FILE,
    ArchiveReader,
    LineError,
    load_keys,
    parse_line,
)
from lintas.audit.checkpoints import Checkpoint, CheckpointChecker, CheckpointError
from lintas.audit.events import EventRef, StoredEvent
from lintas.audit.stream import StreamCut
from lintas.contracts import (
    ContractError,
    SignatureError,
    decode,
    message_hash,
    parse_message,
)
from lintas.infra.keys.signing import Registry, Verifier

__all__ = ["Finding", "LogChecker", "Verdict", "verify_archive", "verify_stream"]

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Finding:
    """What is wrong, and with which event when one can be named."""

    what: str
    event: EventRef | None = None

    def __str__(self) -> str:
        return f"{self.event}: {self.what}" if self.event is not None else self.what


@dataclass
class Verdict:
    source: str
    events: int = 0
    cases: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    anchored: int = 0
    anchored_cases: list[str] = field(default_factory=list)
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None


@dataclass(slots=True)
class _Head:
    seq: int
    hash: str


class LogChecker:
    """Checks events one at a time, in the order read; keeps one hash per case, not events.

    ``contiguous_from``: the sequence the log must start at, with no gap after (a whole
    log); None for a filtered read (sequences need only increase). ``anchors``: a case's
    first event may carry a ``prevhash`` (a partial archive), trusted as the anchor.
    ``case_id`` / ``window``: what an archive's manifest says it holds. ``focus``: check
    only this case's events in full; the others for their sequence only.
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
    ) -> None:
        self.verifier = Verifier(registry)
        self.contiguous_from = contiguous_from
        self.anchors = anchors
        self.case_id = case_id
        self.window = window
        self.key_problems = list(key_problems)
        self.focus = focus
        self.passed_over = 0
        self._heads: dict[str, _Head] = {}
        self.previous_seq: int | None = None
        self.last: EventRef | None = None
        self.events = 0
        self.first_seq: int | None = None
        self.anchored = 0
        self.anchored_cases: list[str] = []

    @property
    def cases(self) -> int:
        return len(self._heads)

    def check(self, stored: StoredEvent) -> Finding | None:
        ref = stored.ref()
        problem = self._sequence(stored.seq)
        if problem is None:
            if self.focus is None or stored.subject.rsplit(".", 1)[-1] == self.focus:
                problem, ref = self._event(stored, ref)
            else:
                self.passed_over += 1
        if problem is not None:
            return Finding(problem, ref)
        self.previous_seq = stored.seq
        self.first_seq = self.first_seq if self.first_seq is not None else stored.seq
        self.last = ref
        self.events += 1
        return None

    def _sequence(self, seq: int) -> str | None:
        if self.previous_seq is not None and seq <= self.previous_seq:
            return (
                f"stream sequence {seq} comes after {self.previous_seq}: events out of order "
                "or repeated"
            )
        if self.contiguous_from is not None:
            expected = (
                self.previous_seq + 1 if self.previous_seq is not None else self.contiguous_from
            )
            if seq != expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                return f"stream sequence {missing} missing before this event (removed or moved?)"
        return None

    def _event(self, stored: StoredEvent, ref: EventRef) -> tuple[str | None, EventRef]:
        doc = parse_message(stored.body)  # once: contract, signature and hash
        try:
            event = decode(stored.body, subject=stored.subject, parsed=doc)
        except ContractError as exc:
            return f"breaks its contract: {exc}", ref
        except Exception as exc:  # a hostile body: its fault, named
            return f"cannot be decoded ({exc.__class__.__name__})", ref
        ref = EventRef(stored.seq, event.id, event.case_id)
        if self.case_id is not None and event.case_id != self.case_id:
            return f"is not of case {self.case_id}, the only case the manifest lists", ref
        low, high = self.window
        if (low is not None and event.time < low) or (high is not None and event.time > high):
            return f"its time {event.time.isoformat()} lies outside the manifest's window", ref
        try:
            self.verifier.verify(stored.body, event.envelope, parsed=doc)
        except SignatureError as exc:
            cause = f" ({KEYS_FILE}: {'; '.join(self.key_problems)})" if self.key_problems else ""
            return f"signature: {exc}{cause}", ref
        own = message_hash(stored.body, doc)  # the hash the case's next message must carry
        return self._chain(stored, event.case_id, event.envelope.prevhash, own), ref

    def _chain(
        self, stored: StoredEvent, case_id: str, prevhash: str | None, own: str
    ) -> str | None:
        head = self._heads.get(case_id)
        if head is None:
            if prevhash is not None:
                if not self.anchors:
                    return (
                        "is the first event of its case in the log but carries a prevhash: "
                        "the events before it are missing"
                    )
                self.anchored += 1
                if len(self.anchored_cases) < 10:
                    self.anchored_cases.append(case_id)
        elif prevhash is None:
            return (
                f"carries no prevhash, but its case has an earlier event (stream seq "
                f"{head.seq}): not chained"
            )
        elif prevhash != head.hash:
            return (
                f"prevhash does not match the case's previous event in the log (stream seq "
                f"{head.seq}): an event of this case was removed, inserted, altered or "
                "reordered before it"
            )
        self._heads[case_id] = _Head(stored.seq, own)
        return None

    def verdict(self, source: str) -> Verdict:
        return Verdict(
            source=source,
            events=self.events,
            cases=self.cases,
            first_seq=self.first_seq,
            last_seq=self.previous_seq,
            anchored=self.anchored,
            anchored_cases=list(self.anchored_cases),
        )

    def end_of(self, last_seq: int) -> Finding | None:
        """For a whole log: nothing may be missing after the last event read."""
        if self.contiguous_from is None or (self.previous_seq or 0) >= last_seq:
            return None
        after = self.previous_seq or self.contiguous_from - 1
        return Finding(
            f"the log ends here, but stream sequences {after + 1}..{last_seq} should follow "
            "(removed?)",
            self.last,
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
) -> Verdict:
    """Verify the stream up to ``cut`` (one case through its subject filter, if given),
    and the ``checkpoints`` of it (all of them, read before the cut) when given."""
    checker = LogChecker(registry, contiguous_from=None if case_id else 1)
    checkpointed = CheckpointChecker(
        checkpoints or (), registry, stream=cut.stream, digests="none" if case_id else "strict"
    )
    finding: Finding | None = None
    if problem := checkpointed.check_checkpoints(complete=True):
        finding = Finding(problem)
    read = 0
    async for stored in events if finding is None else _nothing():
        finding = checker.check(stored)
        if finding is None and (problem := checkpointed.feed(stored)):
            finding = Finding(problem, checker.last)
        read += 1
        if progress is not None:
            progress(read)
        if finding is not None:
            break
    if finding is None and (
        problem := checkpointed.end(cut.last_seq if case_id else checker.previous_seq)
    ):
        finding = Finding(problem, None if case_id else checker.last)
    if finding is None and not cut.empty:
        finding = checker.end_of(cut.last_seq)
    if finding is None and case_id is not None and checker.events == 0:
        finding = Finding(f"case {case_id} has no events in stream {cut.stream}")
    what = f"case {case_id} in stream {cut.stream}" if case_id else f"stream {cut.stream}"
    verdict = checker.verdict(f"{what} up to seq {cut.last_seq}")
    verdict.finding = finding
    if checkpoints is not None:
        verdict.notes.append(checkpointed.note())
    return verdict


async def _nothing() -> AsyncIterator[StoredEvent]:
    return
    yield


# -- an archive ---------------------------------------------------------------------------------


def _archive_end(reader: ArchiveReader, checker: LogChecker) -> Finding | None:
    manifest = reader.manifest
    last = checker.last
    if checker.events != manifest.count or checker.previous_seq != manifest.last_seq:
        if checker.events < manifest.count:
            return Finding(
                f"the archive ends here, but its manifest lists {manifest.count} events up to "
                f"stream seq {manifest.last_seq}: {manifest.count - checker.events} missing "
                "after this event",
                last,
            )
        return Finding(
            f"the archive holds {checker.events} events up to stream seq {checker.previous_seq},"
            f" but its manifest lists {manifest.count} up to {manifest.last_seq}",
            last,
        )
    if checker.first_seq != manifest.first_seq:
        return Finding(
            f"the archive starts at stream seq {checker.first_seq}, its manifest says "
            f"{manifest.first_seq}"
        )
    if manifest.whole_log and (manifest.last_seq or 0) != manifest.cut_last_seq:
        return Finding(
            f"the manifest says the whole log up to seq {manifest.cut_last_seq} was exported, "
            f"but its events end at seq {manifest.last_seq}",
            last,
        )
    if reader.events_sha256 != manifest.events_sha256:
        return Finding(
            f"{EVENTS_FILE} does not match the SHA-256 in the manifest: its bytes were "
            "changed (in a way no event's content shows, e.g. a stored time or whitespace)"
        )
    if checker.key_problems:
        return Finding(f"{KEYS_FILE} was altered: {'; '.join(checker.key_problems)}")
    if reader.checkpoints_sha256 != manifest.checkpoints_sha256:
        return Finding(f"{CHECKPOINTS_FILE} does not match the SHA-256 in the manifest")
    return None


def verify_archive(
    reader: ArchiveReader,
    *,
    registry: Registry | None = None,
    trusted: Registry | None = None,
    focus: str | None = None,
    progress: Progress | None = None,
) -> Verdict:
    """Verify an archive offline, with its own keys unless ``registry`` is given.

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
    if registry is None:
        registry = own
        vouched = [e for e in own.entries() if trusted is not None and trusted.get(e.keyid)]
        notes.append(
            f"keys: {len(own.entries())} from the archive's {KEYS_FILE}, {len(vouched)} of them "
            "also in this data dir's registry"
            + (
                "; the others are trusted on the archive's word (--keys REGISTRY checks "
                "against a registry you trust)"
                if len(vouched) < len(own.entries())
                else ""
            )
        )
    else:
        given = len(registry.entries())
        notes.append(f"keys: the registry given ({given} keys), not the archive's")
    checkpoint_problem: str | None = None
    try:
        checkpoint_list = reader.checkpoints()
    except CheckpointError as exc:
        checkpoint_list, checkpoint_problem = [], f"{CHECKPOINTS_FILE}: {exc}"
    checkpointed = CheckpointChecker(
        checkpoint_list,
        registry,
        stream=manifest.stream,
        digests="strict" if manifest.whole_log else "partial",
        where="the archive",
    )
    checker = LogChecker(
        registry,
        contiguous_from=1 if manifest.whole_log else None,
        anchors=manifest.anchored,
        case_id=manifest.case_id,
        window=(manifest.time_from, manifest.time_to),
        key_problems=key_problems,
        focus=focus,
    )
    finding: Finding | None = Finding(checkpoint_problem) if checkpoint_problem else None
    if finding is None and (problem := checkpointed.check_checkpoints(complete=manifest.whole_log)):
        finding = Finding(f"{CHECKPOINTS_FILE}: {problem}")
    for number, line in reader.events() if finding is None else iter(()):
        try:
            stored = parse_line(line)
        except LineError as exc:
            finding = Finding(f"{EVENTS_FILE} line {number} {exc}", checker.last)
            break
        finding = checker.check(stored)
        if finding is None and (problem := checkpointed.feed(stored)):
            finding = Finding(problem, checker.last)
        if progress is not None:
            progress(number)
        if finding is not None:
            break
    if finding is None and (
        problem := checkpointed.end(checker.previous_seq, tail=manifest.whole_log)
    ):
        finding = Finding(problem, checker.last)
    if finding is None:
        finding = _archive_end(reader, checker)
    if finding is None and focus is not None and checker.events == checker.passed_over:
        finding = Finding(f"the archive holds no events of case {focus}")
    verdict = checker.verdict(f"archive {reader.path} (filters: {manifest.filters_text()})")
    verdict.finding = finding
    if focus is not None:
        verdict.events -= checker.passed_over
        notes.append(
            f"case {focus} only: the archive's {checker.passed_over} other events were checked "
            "for sequence and digest, not read"
        )
    notes.append(checkpointed.note())
    verdict.notes = notes
    return verdict
