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

* seal it (:mod:`.seals`): signed checkpoints over ranges of the stream (count, last
  sequence, chained digest), kept in their own stream and checked by ``verify``.

The CLI (``lintas verify | export | replay | record digest | seal``) is in
``cli/_audit.py``; docs/AUDIT.md is the auditor's guide.
"""

from .archive import ArchiveError, ArchiveReader, ArchiveWriter, Manifest, export_archive
from .check import Finding, LogChecker, Verdict, verify_archive, verify_stream
from .events import EventRef, StoredEvent, parse_instant
from .replay import (
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
from .seals import Seal, SealChecker, read_seals, seal_stream
from .stream import StreamCut, StreamReader

__all__ = [
    "ArchiveError",
    "ArchiveReader",
    "ArchiveWriter",
    "EventRef",
    "Finding",
    "LogChecker",
    "Manifest",
    "NotAFreshStore",
    "PersonalSummary",
    "RecordDigest",
    "ReplayResult",
    "ReplayWorkerDied",
    "Seal",
    "SealChecker",
    "StoredEvent",
    "StreamCut",
    "StreamReader",
    "Verdict",
    "export_archive",
    "live_record_url",
    "open_fresh_store",
    "parse_instant",
    "personal_summary",
    "read_seals",
    "record_digest",
    "replay",
    "seal_stream",
    "verify_archive",
    "verify_stream",
]
