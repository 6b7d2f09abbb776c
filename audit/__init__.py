"""lintas.audit: what auditors run against the event log, never against the live database.

* read the log from the JetStream stream (in stream order, streamed: through an ephemeral
  consumer, by batched direct gets, or by a case's subject filter) or from an exported
  archive (:mod:`.archive`);
* verify it (:mod:`.check`): every event decodes under its contract, is signed by its
  source agency with a registered key valid at its time, sits in its case's hash chain
  (``prevhash``), and no stream sequence is missing;
* export it as a self-contained archive (events as JSONL, a manifest, the public keys);
* replay it (:mod:`.replay`) into a fresh store through the record projection's own fold,
  publishing nothing, and digest a record (replayed or live) so that the two can be compared.

* checkpoint it (:mod:`.checkpoints`): signed checkpoints over ranges of the stream (count, last
  sequence, chained digest) that commit to the Merkle tree of the whole log and every case's
  head (:mod:`.merkle`, :mod:`.logtree`), kept in their own stream and checked by ``verify``;
  on a timer (:mod:`.checkpointer`) in ``lintas up`` and ``lintas checkpoint --every``.

The CLI (``lintas verify | export | replay | record digest | checkpoint``) is in
``cli/_audit.py``; docs/AUDIT.md is the auditor's guide.
"""

from __future__ import annotations

from lintas.audit.archive import (
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    Manifest,
    export_archive,
)
from lintas.audit.check import (
    NOT_EVENTS,
    PROBLEMS,
    CasePass,
    LogChecker,
    Problem,
    Verdict,
    verify_archive,
    verify_stream,
)
from lintas.audit.checkpointer import Checkpointer, RunningCheckpointer, start_checkpointer
from lintas.audit.checkpoints import (
    Checkpoint,
    CheckpointChecker,
    checkpoint_stream,
    read_checkpoints,
)
from lintas.audit.events import EventRef, StoredEvent, parse_instant
from lintas.audit.replay import (
    NotAFreshStore,
    PersonalSummary,
    RecordDigest,
    ReplayResult,
    ReplayWorkerDied,
    live_record_url,
    open_fresh_store,
    personal_summary,
    record_digest,
    replay,
)
from lintas.audit.stream import StreamCut, StreamReader

__all__ = [
    "NOT_EVENTS",
    "PROBLEMS",
    "ArchiveError",
    "ArchiveReader",
    "ArchiveWriter",
    "CasePass",
    "Checkpoint",
    "CheckpointChecker",
    "Checkpointer",
    "EventRef",
    "LogChecker",
    "Manifest",
    "NotAFreshStore",
    "PersonalSummary",
    "Problem",
    "RecordDigest",
    "ReplayResult",
    "ReplayWorkerDied",
    "RunningCheckpointer",
    "StoredEvent",
    "StreamCut",
    "StreamReader",
    "Verdict",
    "checkpoint_stream",
    "export_archive",
    "live_record_url",
    "open_fresh_store",
    "parse_instant",
    "personal_summary",
    "read_checkpoints",
    "record_digest",
    "replay",
    "start_checkpointer",
    "verify_archive",
    "verify_stream",
]
