"""lintas.audit: what auditors run against the event log, never against the live database.

* read the log from the JetStream stream (in stream order, streamed: direct gets by
  sequence, or by a case's subject filter) or from an exported archive (:mod:`.archive`);
* verify it (:mod:`.check`): every event decodes under its contract, is signed by its
  source agency with a registered key valid at its time, sits in its case's hash chain
  (``prevhash``), and no stream sequence is missing;
* export it as a self-contained archive (events as JSONL, a manifest, the public keys);
* replay it (:mod:`.replay`) into a fresh store through the record projection's own fold,
  publishing nothing, and digest a record (replayed or live) so that the two can be compared.

The CLI (``lintas verify | export | replay | record digest``) is in ``cli/_audit.py``;
docs/AUDIT.md is the auditor's guide. Seals (signed checkpoints) are not built yet.
"""

from .archive import ArchiveError, ArchiveReader, ArchiveWriter, Manifest, export_archive
from .check import Finding, LogChecker, Verdict, verify_archive, verify_stream
from .events import EventRef, StoredEvent, parse_instant
from .replay import (
    NotAFreshStore,
    RecordDigest,
    ReplayResult,
    live_record_url,
    open_fresh_store,
    record_digest,
    replay,
)
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
    "RecordDigest",
    "ReplayResult",
    "StoredEvent",
    "StreamCut",
    "StreamReader",
    "Verdict",
    "export_archive",
    "live_record_url",
    "open_fresh_store",
    "parse_instant",
    "record_digest",
    "replay",
    "verify_archive",
    "verify_stream",
]
