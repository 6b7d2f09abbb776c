"""The export archive: a self-contained, offline-verifiable copy of (part of) the log.

An archive is a directory, or the same files in one ``.tar.gz`` (``.tgz``) under a single
top folder named after it::

    manifest.json   what was exported: stream, cut, filters, counts, SHA-256 of the others keys.json
    the public keys (registry entries) of every source agency and checkpointer events.jsonl    one
    line per event, in stream order: {"seq":12,"subject":"lintas.kemlu.kp2mi.case.opened.C...",
    "stored":"2025-03-01T08:00:00.123+00:00","event":{...}} checkpoints.jsonl     the checkpoints
    (:mod:`.checkpoints`) overlapping the exported sequences, one per line:
    {"seq":3,"checkpoint":{...the signed checkpoint...}}

    positions.txt   what the log held at each exported sequence: "<seq> <message hash>" per
    line, in the order of events.jsonl

``event`` is the message body spliced in byte for byte, exactly as the stream stored it
(a body that is not a one-line JSON object, which lintas never publishes, is kept as
``body_b64`` instead). ``stored`` is the stream's own timestamp, informational and not
signed. Each event is signed by its agency and chained to its case's previous event, the
checkpoints are signed by the sealer over ranges of the stream, and the manifest is signed
by the exporter with the sealer's key (the platform's): its filters, counts, the SHA-256 of
every other file and the last checkpoint cannot be changed without ``verify`` noticing, and
``positions.txt`` (under the manifest's signature) lets it name the very event moved. So the
archive can be checked without trusting whoever carried it, against a key registry kept
apart from it, as far as :mod:`lintas.audit.check` explains.

A line of ``events.jsonl`` is read up to :data:`LINE_LIMIT` bytes, never whole beyond it: an
archive cannot make its reader hold an unbounded line in memory.

An archive holds personal data exactly as the stream does (a child's identity in
``case.opened``): it is written readable by its owner only (0700 / 0600).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lintas.audit.checkpoints import Checkpoint, CheckpointError
from lintas.audit.events import StoredEvent, event_time
from lintas.audit.logtree import CaseHead, LogTree, hash_bytes, hash_text
from lintas.audit.stream import StreamCut
from lintas.contracts import PermanentError, message_hash
from lintas.infra.files import open_private, replacing
from lintas.infra.keys.signing import SEALER, Registry, Signer, SigningKeyError

__all__ = [
    "CHECKPOINTS_FILE",
    "EVENTS_FILE",
    "FORMAT",
    "KEYS_FILE",
    "LINE_LIMIT",
    "MANIFEST_FILE",
    "POSITIONS_FILE",
    "PROOFS_FILE",
    "ArchiveError",
    "ArchiveReader",
    "ArchiveWriter",
    "LineError",
    "Manifest",
    "NotExtended",
    "ProofSource",
    "encode_line",
    "export_archive",
    "load_keys",
    "parse_line",
]

FORMAT = "lintas-archive/3"
"""With ``proofs.jsonl``: Merkle proofs of a partial archive's events against a checkpoint."""
FORMAT_2 = "lintas-archive/2"
"""Signed manifests, no proofs: read as ever."""
UNSIGNED_FORMAT = "lintas-archive/1"
"""Archives made before manifests were signed: read, and their manifest named as unsigned."""
MANIFEST_FILE = "manifest.json"
KEYS_FILE = "keys.json"
EVENTS_FILE = "events.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
POSITIONS_FILE = "positions.txt"
PROOFS_FILE = "proofs.jsonl"
LINE_LIMIT = 1024 * 1024 + 4096
"""The longest line of ``events.jsonl`` read: a message as large as NATS carries by default
(1 MiB, sixteen times admission's limit) and its sequence, subject and time."""
_SMALL_FILE_LIMIT = 64 * 1024 * 1024
"""The manifest, keys and checkpoints are read whole: not beyond this."""
LEGACY_CHECKPOINTS_FILE = "seals.jsonl"
LEGACY_CHECKPOINTS_KEY = "seals"
"""What archives written before the word 'checkpoint' call the file and its lines' key."""
_EVENT_MARK = b',"event":'
_BODY_MARK = b',"body_b64":'
_TAR_SUFFIXES = (".tar.gz", ".tgz")


class ArchiveError(PermanentError):
    """Not an archive, or one whose manifest cannot be read."""


class NotExtended(ArchiveError):
    """The log does not extend the checkpoint kept: no consistency proof can be made."""


class LineError(ValueError):
    """A line of ``events.jsonl`` that is not an event line."""


def sha256_text(digest: Any) -> str:
    return "sha256:" + str(digest.hexdigest())


def is_tarball(path: Path) -> bool:
    return path.name.endswith(_TAR_SUFFIXES)


# -- the manifest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    stream: str
    created_at: str
    cut_first_seq: int
    cut_last_seq: int
    count: int
    first_seq: int | None
    last_seq: int | None
    events_sha256: str
    keys_sha256: str
    agencies: tuple[str, ...] = ()
    case_id: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    checkpoints_count: int = 0
    checkpoints_sha256: str | None = None
    """None: an archive written before checkpoints (no ``checkpoints.jsonl``)."""
    last_checkpoint: dict[str, Any] | None = None
    """The last checkpoint the export carries (``seq``, ``last_seq``, ``digest``), or None."""
    positions_sha256: str | None = None
    """None: an archive written before ``positions.txt``."""
    proofs: dict[str, Any] | None = None
    """A partial archive's proofs (``lintas-archive/3``): ``file``, ``sha256``, the
    ``checkpoint`` (its ``seq``, ``tree_size``, ``root_hash``) they prove against, and for
    one case's archive its ``case_head`` (``case``, ``seq``, ``hash``, ``index``,
    ``cases_size``, ``path``, and the entries either side in the heads tree, ``before`` and
    ``after``: ``entry`` and ``path``, or None at the tree's edge); exported ``--since`` a
    kept checkpoint, its ``consistency`` (``from``: the kept checkpoint's ``seq``,
    ``tree_size``, ``root_hash``; ``path``: the proof to ``checkpoint``'s tree); None: no
    proofs (a whole log, no checkpoint with a tree yet, or an older archive)."""
    doc: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The manifest as read, signature included (None for one being written)."""

    @property
    def whole_log(self) -> bool:
        """Every event of the stream up to the cut: sequences must run 1.. without a gap."""
        return self.case_id is None and self.time_from is None and self.time_to is None

    @property
    def anchored(self) -> bool:
        """Events before the window are left out: a case may begin before the archive."""
        return self.time_from is not None

    def filters_text(self) -> str:
        parts = []
        if self.case_id:
            parts.append(f"case {self.case_id}")
        if self.time_from:
            parts.append(f"event time from {self.time_from.isoformat()}")
        if self.time_to:
            parts.append(f"event time to {self.time_to.isoformat()}")
        return ", ".join(parts) or "none (the whole log)"

    @property
    def signed(self) -> bool:
        return self.doc is not None and "signature" in self.doc

    def to_json(self) -> dict[str, Any]:
        """The manifest to sign (``signed_by``: the sealer, ``signed_at``: its creation)."""
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "stream": self.stream,
            "cut": {"first_seq": self.cut_first_seq, "last_seq": self.cut_last_seq},
            "filters": {
                "case": self.case_id,
                "from": self.time_from.isoformat() if self.time_from else None,
                "to": self.time_to.isoformat() if self.time_to else None,
                "time": "event time (the envelope's signed `time`), both ends inclusive",
            },
            "events": {
                "file": EVENTS_FILE,
                "count": self.count,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "sha256": self.events_sha256,
            },
            "keys": {
                "file": KEYS_FILE,
                "sha256": self.keys_sha256,
                "agencies": list(self.agencies),
            },
            **(
                {"checkpoints": self._checkpoints_json()}
                if self.checkpoints_sha256 is not None
                else {}
            ),
            **(
                {"positions": {"file": POSITIONS_FILE, "sha256": self.positions_sha256}}
                if self.positions_sha256 is not None
                else {}
            ),
            **({"proofs": self.proofs} if self.proofs is not None else {}),
            "signed_by": SEALER,
            "signed_at": self.created_at,
            "chains": "anchored at the first event of each case in the window"
            if self.anchored
            else "complete: every case from its first event",
        }

    def _checkpoints_json(self) -> dict[str, Any]:
        return {
            "file": CHECKPOINTS_FILE,
            "count": self.checkpoints_count,
            "sha256": self.checkpoints_sha256,
            "last": self.last_checkpoint,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        try:
            if doc["format"] not in (FORMAT, FORMAT_2, UNSIGNED_FORMAT):
                raise ArchiveError(f"manifest format {doc['format']!r}, expected {FORMAT!r}")
            filters, events, keys = doc["filters"], doc["events"], doc["keys"]
            # Archives written before checkpoints were called so name them "seals".
            checkpoints = doc.get("checkpoints") or doc.get(LEGACY_CHECKPOINTS_KEY)
            return cls(
                stream=str(doc["stream"]),
                created_at=str(doc["created_at"]),
                cut_first_seq=int(doc["cut"]["first_seq"]),
                cut_last_seq=int(doc["cut"]["last_seq"]),
                count=int(events["count"]),
                first_seq=None if events["first_seq"] is None else int(events["first_seq"]),
                last_seq=None if events["last_seq"] is None else int(events["last_seq"]),
                events_sha256=str(events["sha256"]),
                keys_sha256=str(keys["sha256"]),
                agencies=tuple(str(a) for a in keys["agencies"]),
                case_id=filters["case"],
                time_from=_instant(filters["from"]),
                time_to=_instant(filters["to"]),
                checkpoints_count=int(checkpoints["count"]) if checkpoints else 0,
                checkpoints_sha256=str(checkpoints["sha256"]) if checkpoints else None,
                last_checkpoint=_last_checkpoint(checkpoints),
                positions_sha256=(
                    str(doc["positions"]["sha256"]) if doc.get("positions") else None
                ),
                proofs=_proofs(doc.get("proofs")),
                doc=doc,
            )
        except ArchiveError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{MANIFEST_FILE} is malformed ({exc.__class__.__name__})") from None


def _proofs(proofs: Any) -> dict[str, Any] | None:
    if proofs is None:
        return None
    checkpoint, head = proofs["checkpoint"], proofs.get("case_head")
    if not (isinstance(checkpoint["seq"], int) and isinstance(checkpoint["tree_size"], int)):
        raise TypeError
    hash_bytes(str(checkpoint["root_hash"]))
    if head is not None:
        hash_bytes(str(head["hash"]))
        if not all(isinstance(head[k], int) for k in ("seq", "index", "cases_size")):
            raise TypeError
        neighbours = [n for n in (head.get("before"), head.get("after")) if n is not None]
        for proved in (head, *neighbours):
            [hash_bytes(f"sha256:{p}") for p in proved["path"]]
        if not all(isinstance(n["entry"], str) for n in neighbours):
            raise TypeError
    if (consistency := proofs.get("consistency")) is not None:
        start = consistency["from"]
        if not (isinstance(start["seq"], int) and isinstance(start["tree_size"], int)):
            raise TypeError
        hash_bytes(str(start["root_hash"]))
        [hash_bytes(f"sha256:{p}") for p in consistency["path"]]
    return dict(proofs)


def _last_checkpoint(checkpoints: Any) -> dict[str, Any] | None:
    last = checkpoints.get("last") if checkpoints else None
    if last is None:
        return None
    return {
        "seq": int(last["seq"]),
        "last_seq": int(last["last_seq"]),
        "digest": str(last["digest"]),
    }


def _instant(text: Any) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(str(text))
    if value.tzinfo is None:
        raise ValueError("a filter time without a zone")
    return value


# -- event lines ------------------------------------------------------------------------------


def _spliceable(body: bytes) -> bool:
    if b"\n" in body or b"\r" in body:
        return False
    try:
        body.decode("utf-8")
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


def encode_line(stored: StoredEvent) -> bytes:
    head: dict[str, Any] = {"seq": stored.seq, "subject": stored.subject}
    if stored.stored is not None:
        head["stored"] = stored.stored.isoformat()
    prefix = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1].encode()
    if _spliceable(stored.body):
        return prefix + _EVENT_MARK + stored.body + b"}\n"
    encoded = json.dumps(base64.b64encode(stored.body).decode()).encode()
    return prefix + _BODY_MARK + encoded + b"}\n"


def parse_line(line: bytes) -> StoredEvent:
    """The event of one line, its body byte for byte as it was stored.

    The marker cannot occur inside a JSON string of the head (a quote there is escaped),
    so its first occurrence ends the head.
    """
    line = line.rstrip(b"\r\n")
    head, mark, rest = line.partition(_EVENT_MARK)
    if mark and rest.endswith(b"}"):
        body = rest[:-1]
    else:
        head, mark, rest = line.partition(_BODY_MARK)
        if not (mark and rest.endswith(b"}")):
            raise LineError("is not an archive event line (no event member)")
        try:
            body = base64.b64decode(json.loads(rest[:-1]), validate=True)
        except (ValueError, TypeError):
            raise LineError("body_b64 is not base64") from None
    try:
        meta = json.loads(head + b"}")
        seq, subject = meta["seq"], meta["subject"]
        if not (isinstance(seq, int) and isinstance(subject, str)):
            raise TypeError
        stored = meta.get("stored")
        at = datetime.fromisoformat(stored) if isinstance(stored, str) else None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise LineError("its seq / subject / stored members are malformed") from None
    return StoredEvent(seq=seq, subject=subject, body=body, stored=at)


# -- keys -------------------------------------------------------------------------------------


def load_keys(raw: bytes) -> tuple[Registry, list[str]]:
    """The registry in ``keys.json``, entry by entry: an entry that does not hold (a key
    whose id is not its own, say) is left out and named, so that the events signed with
    it are the ones that fail, by name."""
    registry = Registry()
    problems: list[str] = []
    try:
        doc = json.loads(raw)
        agencies = doc["agencies"]
        items = [(agency, item) for agency, keys in agencies.items() for item in keys]
    except (ValueError, KeyError, TypeError, AttributeError):
        return registry, [f"{KEYS_FILE} is malformed"]
    for agency, item in items:
        try:
            for entry in Registry.from_json({"agencies": {agency: [item]}}, KEYS_FILE).entries():
                registry.add(entry)
        except SigningKeyError as exc:
            problems.append(str(exc))
    return registry, problems


# -- writing ----------------------------------------------------------------------------------


@dataclass
class _Written:
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    agencies: set[str] = field(default_factory=set)


def _in_window(
    doc: dict[str, Any] | None, time_from: datetime | None, time_to: datetime | None
) -> bool:
    if time_from is None and time_to is None:
        return True
    at = event_time(doc)
    if at is None:
        return True  # a time that cannot be read is kept: verify will say what is wrong
    return (time_from is None or at >= time_from) and (time_to is None or at <= time_to)


def _tar(staging: Path, out: Path) -> None:
    top = out.name.removesuffix(".tar.gz").removesuffix(".tgz") or "archive"
    with replacing(out) as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        # positions.txt before events.jsonl: a reader streams both, side by side, without
        # decompressing the events twice to reach it.
        names = (MANIFEST_FILE, KEYS_FILE, CHECKPOINTS_FILE, POSITIONS_FILE, PROOFS_FILE)
        for name in (*names, EVENTS_FILE):
            if (staging / name).exists():
                tar.add(staging / name, arcname=f"{top}/{name}", recursive=False)


@dataclass(frozen=True, slots=True)
class ProofSource:
    """The log's tree (every leaf) as far as ``checkpoint`` reaches, and its case heads:
    what a partial archive's proofs are made from."""

    checkpoint: Checkpoint
    tree: LogTree
    since: Checkpoint | None = None
    """A checkpoint an auditor kept (``export --since``): the archive also carries the
    consistency proof from its tree to ``checkpoint``'s."""


def _write_proofs(
    staging: Path, seqs: Sequence[int], source: ProofSource, case_id: str | None
) -> dict[str, Any]:
    """``proofs.jsonl`` (``{"seq":..,"path":[hex,..]}`` per event the checkpoint covers, in
    the order of ``events.jsonl``) and what the manifest says of it."""
    checkpoint, tree = source.checkpoint, source.tree
    assert tree.tree is not None
    assert tree.size == checkpoint.tree_size
    digest = hashlib.sha256()
    with open_private(staging / PROOFS_FILE) as sink:
        for seq in seqs:
            if seq > tree.size:
                break
            path = [p.hex() for p in tree.tree.inclusion_proof(seq - 1)]
            line = (json.dumps({"seq": seq, "path": path}, separators=(",", ":")) + "\n").encode()
            sink.write(line)
            digest.update(line)
    head = None
    if case_id is not None and case_id in tree.heads:
        heads = tree.case_heads()
        index = next(i for i, h in enumerate(heads) if h.case_id == case_id)
        cases = tree.cases_tree()
        found: CaseHead = heads[index]

        def neighbour(at: int) -> dict[str, Any] | None:
            # The entries either side, proved too: sorted strictly around the case, they
            # show the tree holds no second head of it (a stale one, say).
            if not 0 <= at < len(heads):
                return None
            return {
                "entry": heads[at].data().decode(),
                "path": [p.hex() for p in cases.inclusion_proof(at)],
            }

        head = {
            "case": case_id,
            "seq": found.seq,
            "hash": found.hash,
            "index": index,
            "cases_size": len(heads),
            "path": [p.hex() for p in cases.inclusion_proof(index)],
            "before": neighbour(index - 1),
            "after": neighbour(index + 1),
        }
    return {
        "file": PROOFS_FILE,
        "sha256": sha256_text(digest),
        "checkpoint": {
            "seq": checkpoint.seq,
            "tree_size": checkpoint.tree_size,
            "root_hash": hash_text(tree.root()),
        },
        "case_head": head,
        **({"consistency": _consistency(source)} if source.since is not None else {}),
    }


def _consistency(source: ProofSource) -> dict[str, Any]:
    """The consistency proof (RFC 9162 §2.1.4) from the kept checkpoint's tree to the proof
    checkpoint's, and which tree it starts from."""
    kept, tree = source.since, source.tree.tree
    assert kept is not None
    assert tree is not None
    if (
        kept.tree_size is None
        or kept.root_hash is None
        or kept.tree_size > tree.size
        or tree.root(kept.tree_size) != kept.root_hash
    ):
        raise NotExtended(
            f"the log up to {source.checkpoint} does not extend the checkpoint kept ({kept}): "
            "no consistency proof from it (`lintas verify --since` says what is wrong)"
        )
    return {
        "from": {
            "seq": kept.seq,
            "tree_size": kept.tree_size,
            "root_hash": hash_text(kept.root_hash),
        },
        "path": [p.hex() for p in tree.consistency_proof(kept.tree_size)],
    }


class ArchiveWriter:
    """Writes a new archive at ``out`` (refusing to overwrite): events in, manifest out.

    Everything is written into a hidden sibling first and moved into place by
    :meth:`finish`, so a failed export leaves no half archive behind.
    """

    def __init__(
        self,
        out: Path,
        *,
        time_from: datetime | None = None,
        time_to: datetime | None = None,
    ) -> None:
        if out.exists():
            raise ArchiveError(f"{out} exists: an archive is never overwritten")
        self.out = out
        self.time_from = time_from
        self.time_to = time_to
        self.read = 0
        self._written = _Written()
        self._digest = hashlib.sha256()
        out.parent.mkdir(parents=True, exist_ok=True)
        self._staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
        self._staging.mkdir(mode=0o700)
        self._sink: IO[bytes] | None = open_private(self._staging / EVENTS_FILE)
        self._positions: IO[bytes] | None = open_private(self._staging / POSITIONS_FILE)
        self._positions_digest = hashlib.sha256()
        self._seqs: list[int] = []

    def add(self, stored: StoredEvent) -> bool:
        """Write the event if it lies in the event-time window; say whether it did."""
        assert self._sink is not None, "finished"
        self.read += 1
        doc = stored.document()
        if not _in_window(doc, self.time_from, self.time_to):
            return False
        line = encode_line(stored)
        self._sink.write(line)
        self._digest.update(line)
        position = f"{stored.seq} {message_hash(stored.body)}\n".encode()
        assert self._positions is not None
        self._positions.write(position)
        self._positions_digest.update(position)
        self._seqs.append(stored.seq)
        written = self._written
        written.count += 1
        written.first_seq = written.first_seq or stored.seq
        written.last_seq = stored.seq
        if doc is not None and isinstance(doc.get("source"), str):
            written.agencies.add(doc["source"])
        return True

    def finish(
        self,
        *,
        cut: StreamCut,
        registry: Registry,
        case_id: str | None,
        checkpoints: Sequence[Checkpoint] = (),
        signer: Signer | None = None,
        proofs: ProofSource | None = None,
    ) -> Manifest:
        """Write the checkpoints overlapping the events written, the keys of the agencies present
        (sources, the sealer) and the manifest, signed by ``signer`` (the sealer's: an
        unsigned manifest, without one, is one ``verify`` names); move the archive in.
        ``proofs``: a partial archive's events proved against its checkpoint's tree."""
        assert self._sink is not None, "finished"
        assert self._positions is not None, "finished"
        if signer is not None and signer.agency != SEALER:
            raise ValueError(f"a manifest is signed by the {SEALER}, not by {signer.agency}")
        self._sink.close()
        self._positions.close()
        self._sink = self._positions = None
        written, staging = self._written, self._staging
        whole = case_id is None and self.time_from is None and self.time_to is None
        kept = [
            s
            for s in checkpoints
            if whole
            or (
                written.first_seq is not None
                and written.last_seq is not None
                and s.first_seq <= written.last_seq
                and s.last_seq >= written.first_seq
            )
            or (proofs is not None and not whole and s.seq == proofs.checkpoint.seq)
        ]
        proofs_json = None
        if proofs is not None and not whole:
            proofs_json = _write_proofs(staging, self._seqs, proofs, case_id)
        checkpoints_raw = b"".join(
            (json.dumps({"seq": s.seq, "checkpoint": s.doc}, separators=(",", ":")) + "\n").encode()
            for s in kept
        )
        with open_private(staging / CHECKPOINTS_FILE) as sink:
            sink.write(checkpoints_raw)
        signers = written.agencies | {s.signed_by for s in kept} | {SEALER}
        keys = Registry(e for e in registry.entries() if e.agency in signers)
        keys_raw = (json.dumps(keys.to_json(), indent=2, sort_keys=True) + "\n").encode()
        with open_private(staging / KEYS_FILE) as sink:
            sink.write(keys_raw)
        manifest = Manifest(
            stream=cut.stream,
            created_at=datetime.now(UTC).isoformat(),
            cut_first_seq=cut.first_seq,
            cut_last_seq=cut.last_seq,
            count=written.count,
            first_seq=written.first_seq,
            last_seq=written.last_seq,
            events_sha256=sha256_text(self._digest),
            keys_sha256=sha256_text(hashlib.sha256(keys_raw)),
            agencies=tuple(sorted(written.agencies)),
            case_id=case_id,
            time_from=self.time_from,
            time_to=self.time_to,
            checkpoints_count=len(kept),
            checkpoints_sha256=sha256_text(hashlib.sha256(checkpoints_raw)),
            last_checkpoint=(
                {"seq": kept[-1].seq, "last_seq": kept[-1].last_seq, "digest": kept[-1].digest}
                if kept
                else None
            ),
            positions_sha256=sha256_text(self._positions_digest),
            proofs=proofs_json,
        )
        doc = manifest.to_json()
        if signer is not None:
            doc = signer.sign_document(doc)
        with open_private(staging / MANIFEST_FILE) as sink:
            sink.write((json.dumps(doc, indent=2) + "\n").encode())
        if is_tarball(self.out):
            _tar(staging, self.out)
            shutil.rmtree(staging)
        else:
            staging.rename(self.out)
        return manifest

    def abort(self) -> None:
        for sink in (self._sink, self._positions):
            if sink is not None:
                sink.close()
        self._sink = self._positions = None
        if self._staging.exists():
            shutil.rmtree(self._staging)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        if exc_type is not None:
            self.abort()


async def export_archive(
    events: AsyncIterator[StoredEvent],
    out: Path,
    *,
    cut: StreamCut,
    registry: Registry,
    case_id: str | None = None,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    signer: Signer | None = None,
    proofs: ProofSource | None = None,
) -> Manifest:
    """Write ``events`` (already filtered by case, if any) within the event-time window
    (both ends inclusive) to a new archive at ``out``, its manifest signed by ``signer``
    (the sealer's), a partial one with Merkle proofs from ``proofs``. Returns its manifest."""
    with ArchiveWriter(out, time_from=time_from, time_to=time_to) as writer:
        async for stored in events:
            writer.add(stored)
            if progress is not None:
                progress(writer.read)
        return writer.finish(
            cut=cut,
            registry=registry,
            case_id=case_id,
            checkpoints=checkpoints,
            signer=signer,
            proofs=proofs,
        )


# -- reading ----------------------------------------------------------------------------------


class ArchiveReader:
    """An archive (directory or tarball), read without extracting anything to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if is_tarball(path) and path.is_file():
            try:
                self._tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 - held until close
                self._index(self._tar)
            except (tarfile.TarError, OSError, EOFError) as exc:
                self.close()
                raise ArchiveError(f"{path} is not a readable .tar.gz ({exc})") from None
        elif not path.is_dir():
            raise ArchiveError(f"{path} is neither an archive directory nor a .tar.gz")
        try:
            self.manifest = Manifest.from_json(json.loads(self.read(MANIFEST_FILE)))
        except ValueError:
            self.close()
            raise ArchiveError(f"{MANIFEST_FILE} is not JSON") from None
        except ArchiveError:
            self.close()
            raise
        self.events_sha256: str | None = None
        """Of ``events.jsonl`` as read, once :meth:`events` has read it to the end."""
        self.checkpoints_sha256: str | None = None
        """Of ``checkpoints.jsonl`` as read by :meth:`checkpoints` (None: there is none)."""
        self.positions_sha256: str | None = None
        """Of ``positions.txt``, once :meth:`positions` has read it to the end."""
        self.proofs_sha256: str | None = None
        """Of ``proofs.jsonl`` as read by :meth:`proofs`."""

    def has(self, name: str) -> bool:
        if self._tar is None:
            return (self.path / name).is_file()
        return name in self._members

    def _index(self, tar: tarfile.TarFile) -> None:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) > 2:
                continue
            name = parts[-1]
            if name in self._members:
                raise ArchiveError(f"{self.path} holds {name} twice")
            self._members[name] = member

    def _open(self, name: str) -> IO[bytes]:
        if self._tar is None:
            try:
                return (self.path / name).open("rb")
            except FileNotFoundError:
                raise ArchiveError(f"{self.path} has no {name}") from None
        member = self._members.get(name)
        handle = self._tar.extractfile(member) if member is not None else None
        if handle is None:
            raise ArchiveError(f"{self.path} has no {name}")
        return handle

    def read(self, name: str) -> bytes:
        """A small file (the manifest, keys, checkpoints) whole: :class:`ArchiveError` if it
        is larger than any honest one, before it is held in memory."""
        chunks, size = [], 0
        with self._open(name) as handle:
            # In pieces: a read of the limit at once would take the limit's memory up front.
            while chunk := handle.read(1 << 16):
                size += len(chunk)
                if size > _SMALL_FILE_LIMIT:
                    raise ArchiveError(
                        f"{self.path}: {name} is larger than {_SMALL_FILE_LIMIT} bytes"
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    def positions(self) -> Iterator[tuple[int, str] | None]:
        """``(seq, message hash)`` of each line of ``positions.txt`` in turn (None for a line
        that is not one), on a handle of its own, so that it is read side by side with
        :meth:`events`; its digest in :attr:`positions_sha256` once read to the end."""
        digest = hashlib.sha256()
        second = None
        if self._tar is None:
            handle: IO[bytes] = (self.path / POSITIONS_FILE).open("rb")
        else:
            # Its own decompression: one stream of a .tar.gz cannot serve two readers.
            second = tarfile.open(self.path, mode="r:gz")  # noqa: SIM115 - closed below
            member = next((m for m in second if Path(m.name).name == POSITIONS_FILE), None)
            found = second.extractfile(member) if member is not None else None
            if found is None:
                second.close()
                raise ArchiveError(f"{self.path} has no {POSITIONS_FILE}")
            handle = found
        try:
            while line := handle.readline(256):
                digest.update(line)
                seq, _, hashed = line.decode("ascii", "replace").strip().partition(" ")
                yield (int(seq), hashed) if seq.isdigit() and hashed else None
        finally:
            handle.close()
            if second is not None:
                second.close()
        self.positions_sha256 = sha256_text(digest)

    def proofs(self) -> dict[int, list[bytes]]:
        """The inclusion path of each event ``proofs.jsonl`` proves, by stream sequence;
        its SHA-256 in :attr:`proofs_sha256`. LineError for a line that is no proof."""
        raw = self.read(PROOFS_FILE)
        self.proofs_sha256 = sha256_text(hashlib.sha256(raw))
        paths: dict[int, list[bytes]] = {}
        for number, line in enumerate(raw.splitlines(), start=1):
            try:
                item = json.loads(line)
                seq = item["seq"]
                path = [bytes.fromhex(p) for p in item["path"]]
                if not isinstance(seq, int) or any(len(p) != 32 for p in path):
                    raise TypeError
            except (ValueError, KeyError, TypeError, RecursionError):
                raise LineError(f"{PROOFS_FILE} line {number} is not a proof line") from None
            paths[seq] = path
        return paths

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints in ``checkpoints.jsonl`` (none if the archive has no such file)."""
        key = "checkpoint"
        try:
            raw = self.read(CHECKPOINTS_FILE)
        except ArchiveError:
            try:
                raw, key = self.read(LEGACY_CHECKPOINTS_FILE), "seal"
            except ArchiveError:
                return []
        self.checkpoints_sha256 = sha256_text(hashlib.sha256(raw))
        checkpoints = []
        for number, line in enumerate(raw.splitlines(), start=1):
            try:
                item = json.loads(line)
                checkpoints.append(Checkpoint.from_doc(int(item["seq"]), item[key]))
            except (ValueError, KeyError, TypeError, RecursionError):
                raise CheckpointError(f"line {number} is not a checkpoint line") from None
        return checkpoints

    def events(self) -> Iterator[tuple[int, bytes | None]]:
        """``(line number, line)`` of ``events.jsonl``, streamed; its digest at the end. A
        line longer than :data:`LINE_LIMIT` is ``None``: read past in bounded pieces (for the
        digest), never held whole."""
        digest = hashlib.sha256()
        number = 0
        with self._open(EVENTS_FILE) as handle:
            while line := handle.readline(LINE_LIMIT + 1):
                number += 1
                digest.update(line)
                if len(line) <= LINE_LIMIT or line.endswith(b"\n"):
                    yield number, line
                    continue
                while (rest := handle.readline(LINE_LIMIT)) and not rest.endswith(b"\n"):
                    digest.update(rest)
                digest.update(rest)
                yield number, None
        self.events_sha256 = sha256_text(digest)

    def close(self) -> None:
        if self._tar is not None:
            with contextlib.suppress(OSError):
                self._tar.close()
            self._tar = None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
