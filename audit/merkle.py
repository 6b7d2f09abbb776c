"""Merkle trees of the log, as Certificate Transparency builds them (RFC 9162 §2.1).

Pure and stdlib-only, so that anyone can check a proof with this file and nothing else::

    leaf hash   SHA-256(0x00 || leaf data)
    node hash   SHA-256(0x01 || left || right)
    MTH({})     SHA-256()            MTH({d0}) = leaf hash of d0
    MTH(D[n])   node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n

:func:`inclusion_proof` / :func:`verify_inclusion` are §2.1.3 (PATH and its verification),
:func:`consistency_proof` / :func:`verify_consistency` §2.1.4 (PROOF and its verification).
:class:`Frontier` keeps the O(log n) roots of the perfect subtrees a growing tree is made of
(a compact range from 0), so that a checkpointer appends one leaf at a time and never holds
the log; :class:`Tree` holds every leaf hash (32 bytes each, and as many again for the
levels above) to answer proofs for any size up to its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "ProofError",
    "Tree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof asked for sizes or an index the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """Every leaf hash, and the perfect subtrees above them, level by level: MTH and proofs
    for any size up to :attr:`size`, each in O(log² n) hashes at most."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Add a leaf *hash* (:func:`leaf_hash` of the data)."""
        level, node, index = 0, leaf, len(self._levels[0])
        while True:
            self._levels[level].append(node)
            if index % 2 == 0:
                return
            node = node_hash(self._levels[level][index - 1], node)
            index //= 2
            level += 1
            if level == len(self._levels):
                self._levels.append([])

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        height = n.bit_length() - 1
        if n == 1 << height and start % n == 0:  # a perfect, aligned subtree: stored
            return self._levels[height][start >> height]
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"no tree of size {size}: this one holds {self.size} leaves")
        return self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 §2.1.3.1)."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ProofError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, start, start + k), self._mth(start + k, end)]
        return [*self._path(m - k, start + k, end), self._mth(start, start + k)]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[second]) (RFC 9162 §2.1.4.1): empty when ``first`` is 0 or
        ``second``."""
        second = self.size if second is None else second
        if not 0 <= first <= second <= self.size:
            raise ProofError(f"no consistency proof from size {first} to {second}")
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._mth(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._mth(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._mth(start, start + k)]


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of these leaf hashes."""
    return Frontier.of(leaves).root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    return Tree(leaves).inclusion_proof(index)


def consistency_proof(leaves: Sequence[bytes], first: int) -> list[bytes]:
    return Tree(leaves).consistency_proof(first)


class Frontier:
    """The roots of the perfect subtrees a tree of :attr:`size` leaves is made of, largest
    (leftmost) first: one per bit set in the size, so O(log n). Appending a leaf costs
    O(1) hashes on average, the root O(log n)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ProofError(f"a frontier of size {size} holds {size.bit_count()} hashes")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def of(cls, leaves: Iterable[bytes]) -> Frontier:
        frontier = cls()
        for leaf in leaves:
            frontier.append(leaf)
        return frontier

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        """Add a leaf *hash*: the subtrees it completes are merged, as binary carries."""
        node, size = leaf, self.size
        while size & 1:
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` of the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree of ``first`` leaves with root ``first_root`` to be a
    prefix of the tree of ``second`` leaves with root ``second_root`` (RFC 9162 §2.1.4.2):
    the log only grew between them."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: its root is a node of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
