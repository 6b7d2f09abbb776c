"""The Merkle tree of the log against Certificate Transparency's reference vectors (RFC 6962 /
9162, as transparency-dev/merkle and Trillian publish them) and, over random sizes, against
the RFC's own recursive definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    Tree,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAVES = [leaf_hash(d) for d in DATA]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H = bytes.fromhex
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def test_roots_match_the_reference_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    tree = Tree(LEAVES)
    for size in range(len(LEAVES) + 1):
        assert tree.root(size).hex() == ROOTS[size]
        assert root_of(LEAVES[:size]).hex() == ROOTS[size]
        assert Frontier.of(LEAVES[:size]).root().hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, proof: list[str]) -> None:
    tree = Tree(LEAVES)
    assert [p.hex() for p in tree.inclusion_proof(index, size)] == proof
    root = H(ROOTS[size])
    assert verify_inclusion(LEAVES[index], index, size, [H(p) for p in proof], root)
    assert not verify_inclusion(LEAVES[index], index + 1, size, [H(p) for p in proof], root)
    assert not verify_inclusion(LEAVES[index], index, size + 1, [H(p) for p in proof], root)
    assert not verify_inclusion(LEAVES[index ^ 1], index, size, [H(p) for p in proof], root)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(first: int, second: int, proof: list[str]) -> None:
    tree = Tree(LEAVES)
    assert [p.hex() for p in tree.consistency_proof(first, second)] == proof
    path = [H(p) for p in proof]
    one, two = H(ROOTS[first]), H(ROOTS[second])
    assert verify_consistency(first, second, one, two, path)
    assert not verify_consistency(first, second, two, one, path)
    assert not verify_consistency(first - 1, second, one, two, path)
    assert not verify_consistency(first, second, one, two, path[:-1])
    assert not verify_consistency(first, second, one, two, [*path, path[0]])


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162's definition, as written."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_every_proof_of_a_random_tree_verifies_and_a_changed_one_does_not(
    n: int, data: st.DataObject
) -> None:
    leaves = _leaves(n)
    tree = Tree(leaves)
    frontier = Frontier.of(leaves)
    assert tree.root() == frontier.root() == _mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = tree.inclusion_proof(index)
    assert verify_inclusion(leaves[index], index, n, path, tree.root())
    other = leaf_hash(b"not in the log")
    assert not verify_inclusion(other, index, n, path, tree.root())
    if path:
        bent = [*path]
        bent[0] = node_hash(bent[0], bent[0])
        assert not verify_inclusion(leaves[index], index, n, bent, tree.root())
    first = data.draw(st.integers(min_value=1, max_value=n))
    proof = tree.consistency_proof(first)
    assert verify_consistency(first, n, _mth(leaves[:first]), tree.root(), proof)
    # A log rewritten before ``first``: its old root is no prefix of the new tree.
    rewritten = Tree([*leaves[: first - 1], other, *leaves[first:]])
    assert not verify_consistency(
        first, n, _mth(leaves[:first]), rewritten.root(), rewritten.consistency_proof(first)
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=2, max_value=200), st.data())
def test_a_log_that_lost_events_is_no_extension_of_the_kept_tree(
    n: int, data: st.DataObject
) -> None:
    leaves = _leaves(n)
    kept = data.draw(st.integers(min_value=2, max_value=n))
    cut = data.draw(st.integers(min_value=1, max_value=kept - 1))
    shorter = Tree(leaves[:cut])
    with pytest.raises(ProofError):
        shorter.consistency_proof(kept)
    # Nor does any proof of the longer, honest tree carry over to the shorter one.
    proof = Tree(leaves).consistency_proof(kept)
    assert not verify_consistency(kept, cut, _mth(leaves[:kept]), shorter.root(), proof)


def test_a_frontier_holds_one_hash_per_bit_of_its_size() -> None:
    leaves = _leaves(1000)
    frontier = Frontier.of(leaves)
    assert len(frontier.hashes) == bin(1000).count("1")
    again = Frontier(frontier.size, frontier.hashes)
    again.append(leaf_hash(b"next"))
    assert again.root() == _mth([*leaves, leaf_hash(b"next")])
    with pytest.raises(ProofError):
        Frontier(3, frontier.hashes[:1])
