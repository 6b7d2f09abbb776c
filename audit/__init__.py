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
  sequence, chained digest), kept in their own stream and checked by ``verify``; on a
  timer (:mod:`.sealer`) in ``lintas up`` and ``lintas seal --every``.

The CLI (``lintas verify | export | replay | record digest | seal``) is in
``cli/_audit.py``; docs/AUDIT.md is the auditor's guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lintas.audit.events import EventRef, StoredEvent, parse_instant

# Bound now: the function shares its module's name, so once anything imported the module
# (a replay worker does) a lazy lookup would find the module instead.
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
from lintas.infra.lazy import lazy_exports

if TYPE_CHECKING:
    from lintas.audit.archive import (
        ArchiveError,
        ArchiveReader,
        ArchiveWriter,
        Manifest,
        export_archive,
    )
    from lintas.audit.check import Finding, LogChecker, Verdict, verify_archive, verify_stream
    from lintas.audit.sealer import RunningSealer, Sealer, start_sealer
    from lintas.audit.seals import Seal, SealChecker, read_seals, seal_stream
    from lintas.audit.stream import StreamCut, StreamReader

# Imported on first use (lintas.infra.lazy): a replay worker needs only the replay's own
# modules, not the archive, the checker and the stream reader.
_HOMES = {
    "ArchiveError": "archive",
    "ArchiveReader": "archive",
    "ArchiveWriter": "archive",
    "Manifest": "archive",
    "export_archive": "archive",
    "Finding": "check",
    "LogChecker": "check",
    "Verdict": "check",
    "verify_archive": "check",
    "verify_stream": "check",
    "RunningSealer": "sealer",
    "Sealer": "sealer",
    "start_sealer": "sealer",
    "Seal": "seals",
    "SealChecker": "seals",
    "read_seals": "seals",
    "seal_stream": "seals",
    "StreamCut": "stream",
    "StreamReader": "stream",
}
if not TYPE_CHECKING:  # type checkers read the imports above, and flag a name not there
    __getattr__, __dir__ = lazy_exports(__name__, _HOMES)

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
    "RunningSealer",
    "Seal",
    "SealChecker",
    "Sealer",
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
    "start_sealer",
    "verify_archive",
    "verify_stream",
]
