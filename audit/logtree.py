"""What a checkpoint commits to: the Merkle tree of the whole log and every case's head.

The log's tree (:mod:`.merkle`, RFC 9162) has one leaf per message of the stream, in stream
order, leaf ``i`` the message at stream sequence ``i + 1`` (the stream denies delete and
purge, so sequences run from 1 without a gap; a gap stops the tree)::

    leaf(message) = SHA-256(0x00 || message_hash(message) as 32 bytes)

The *case heads* are a second tree, over one entry per case in ascending byte order of case
id, each entry the case's last message up to the checkpoint (its stream sequence and
:func:`~lintas.contracts.message_hash`, the hash the case's next ``prevhash`` names)::

    head leaf = SHA-256(0x00 || "<case id> <seq> sha256:<hex>")

so one case's head has an inclusion proof too, and with it a one-case export proves that
nothing of that case after its last exported event was left out (and the case's hash chain
that nothing before it was).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lintas.audit.events import StoredEvent, case_of_subject
from lintas.audit.merkle import Frontier, Tree, leaf_hash
from lintas.contracts import message_hash

__all__ = [
    "CaseHead",
    "LogGap",
    "LogTree",
    "hash_bytes",
    "hash_text",
    "head_leaf",
    "message_leaf",
]


class LogGap(ValueError):
    """A message whose sequence does not follow the tree's last: the log has a hole."""


def hash_bytes(text: str) -> bytes:
    """``sha256:<hex>`` as its 32 bytes; ValueError for anything else."""
    prefix, _, hexed = text.partition(":")
    raw = bytes.fromhex(hexed) if prefix == "sha256" else b""
    if len(raw) != 32:
        raise ValueError(f"{text[:80]!r} is no sha256:<64 hex digits>")
    return raw


def hash_text(raw: bytes) -> str:
    return "sha256:" + raw.hex()


def message_leaf(hashed: str) -> bytes:
    """The leaf hash of the message whose :func:`message_hash` is ``hashed``."""
    return leaf_hash(hash_bytes(hashed))


@dataclass(frozen=True, slots=True)
class CaseHead:
    case_id: str
    seq: int
    hash: str

    def data(self) -> bytes:
        return f"{self.case_id} {self.seq} {self.hash}".encode()


def head_leaf(head: CaseHead) -> bytes:
    return leaf_hash(head.data())


@dataclass
class LogTree:
    """The log's tree and its cases' heads, grown one message at a time.

    ``keep_leaves``: hold every leaf (a :class:`~.merkle.Tree`, 64 bytes a message) to
    answer proofs; without it only the O(log n) frontier. The heads take one entry per
    case, never a message."""

    keep_leaves: bool = False
    frontier: Frontier = field(default_factory=Frontier)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    tree: Tree | None = None

    def __post_init__(self) -> None:
        if self.keep_leaves and self.tree is None:
            self.tree = Tree()

    @property
    def size(self) -> int:
        return self.frontier.size

    def clear(self) -> None:
        self.frontier = Frontier()
        self.heads = {}
        self.tree = Tree() if self.keep_leaves else None

    def add(self, stored: StoredEvent, hashed: str | None = None) -> str:
        """Append the next message (``hashed``: its :func:`message_hash`, if known); its
        hash. :class:`LogGap` if its sequence does not follow."""
        if stored.seq != self.frontier.size + 1:
            raise LogGap(
                f"stream seq {stored.seq} follows {self.frontier.size}: the log's tree "
                "needs every sequence from 1"
            )
        hashed = hashed or message_hash(stored.body)
        leaf = message_leaf(hashed)
        self.frontier.append(leaf)
        if self.tree is not None:
            self.tree.append(leaf)
        if (case_id := case_of_subject(stored.subject)) is not None:
            self.heads[case_id] = (stored.seq, hashed)
        return hashed

    def root(self) -> bytes:
        return self.frontier.root()

    def case_heads(self) -> list[CaseHead]:
        return [CaseHead(c, *self.heads[c]) for c in sorted(self.heads)]

    def cases_tree(self) -> Tree:
        return Tree(head_leaf(h) for h in self.case_heads())

    def cases_root(self) -> bytes:
        return Frontier.of(head_leaf(h) for h in self.case_heads()).root()
