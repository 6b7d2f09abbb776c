"""The Ed25519 rule events and documents are checked by (ZIP 215, through ed25519-zebra),
against OpenSSL's (cryptography's) verdict, and the registry's refusal of keys of small
order, under which that rule would let anyone sign."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import ed25519_zebra
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.infra.keys import KeyEntry, Registry, SigningKeyError, _b64, _raw_public, _signed

# The group's order: S and S + L are the same scalar, and only the first is canonical.
L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19
EIGHT_TORSION_Y = (
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
)
SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def _encoding(y: int, sign: int) -> bytes:
    return (y | sign << 255).to_bytes(32, "little")


def _openssl(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


KEYS = [Ed25519PrivateKey.generate() for _ in range(4)]


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    message=st.binary(max_size=2048),
    flip=st.integers(min_value=0, max_value=8 * (64 + 2048) - 1),
)
def test_a_signature_holds_as_made_and_not_with_any_bit_flipped(
    key: Ed25519PrivateKey, message: bytes, flip: int
) -> None:
    public, signature = _raw_public(key.public_key()), key.sign(message)
    assert _signed(public, signature, message)
    signed = bytearray(signature + message)
    if flip >= len(signed) * 8:
        flip %= len(signed) * 8
    signed[flip // 8] ^= 1 << flip % 8
    altered_signature, altered_message = bytes(signed[:64]), bytes(signed[64:])
    assert not _signed(public, altered_signature, altered_message)
    assert not _openssl(public, altered_signature, altered_message)


def test_the_same_signature_with_s_plus_l_does_not_hold() -> None:
    key = KEYS[0]
    message = b'{"type":"case.opened"}'
    signature = key.sign(message)
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not _signed(_raw_public(key.public_key()), malleated, message)
    assert not _openssl(_raw_public(key.public_key()), malleated, message)


def test_under_a_key_of_small_order_anyone_can_sign() -> None:
    """Why the registry refuses such keys: with the identity as the key, the identity as R
    and S = 0 hold for every message under the cofactored equation."""
    identity = _encoding(1, 0)
    forged = identity + bytes(32)
    for message in (b"", b"case.closed", b"anything at all"):
        assert ed25519_zebra.ed_verify(forged, message, identity)


SMALL_ORDER = [
    pytest.param(_encoding(y, sign), id=f"y={name},sign={sign}")
    for name, y in [
        ("0", 0),
        ("1", 1),
        ("p-1", P - 1),
        ("8-torsion-a", EIGHT_TORSION_Y[0]),
        ("8-torsion-b", EIGHT_TORSION_Y[1]),
        ("p", P),  # 0 and 1, encoded y + p
        ("p+1", P + 1),
    ]
    for sign in (0, 1)
]


@pytest.mark.parametrize("public", SMALL_ORDER)
def test_the_registry_refuses_keys_of_small_order(public: bytes) -> None:
    try:
        key = Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        pytest.skip("not even loadable as a key")
    with pytest.raises(SigningKeyError, match="small order"):
        Registry([KeyEntry("kemlu", "kemlu:weak", key, SINCE)])
    doc = {
        "agencies": {
            "kemlu": [
                {
                    "keyid": f"kemlu:{hashlib.sha256(public).hexdigest()[:16]}",
                    "public_key": _b64(public),
                    "valid_from": SINCE.isoformat(),
                }
            ]
        }
    }
    with pytest.raises(SigningKeyError, match="small order"):
        Registry.from_json(doc)


def test_genuine_keys_are_registered() -> None:
    entries = [
        KeyEntry("kemlu", f"kemlu:{i}", key.public_key(), SINCE) for i, key in enumerate(KEYS)
    ]
    assert len(Registry(entries).entries()) == len(KEYS)
