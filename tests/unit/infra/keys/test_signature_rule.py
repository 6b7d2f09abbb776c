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

from lintas.contracts import BROADCAST, SignatureError, build_data, encode, make_event, new_case_id
from lintas.infra.keys.registry import b64
from lintas.infra.keys.signing import (
    KeyEntry,
    Registry,
    Signer,
    SigningKeyError,
    Verifier,
    _raw_public,
    _signed,
)

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
    assert _signed(public, b64(signature), message)
    signed = bytearray(signature + message)
    if flip >= len(signed) * 8:
        flip %= len(signed) * 8
    signed[flip // 8] ^= 1 << flip % 8
    altered_signature, altered_message = bytes(signed[:64]), bytes(signed[64:])
    assert not _signed(public, b64(altered_signature), altered_message)
    assert not _openssl(public, altered_signature, altered_message)


def test_the_same_signature_with_s_plus_l_does_not_hold() -> None:
    key = KEYS[0]
    message = b'{"type":"case.opened"}'
    signature = key.sign(message)
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not _signed(_raw_public(key.public_key()), b64(malleated), message)
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
    # The list is the library's: under each of these keys the forgery above holds.
    assert ed25519_zebra.ed_verify(_encoding(1, 0) + bytes(32), b"any message", public)
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
                    "public_key": b64(public),
                    "valid_from": SINCE.isoformat(),
                }
            ]
        }
    }
    with pytest.raises(SigningKeyError, match=r"^keys\.json: key .* is of small order"):
        Registry.from_json(doc, "keys.json")


def test_genuine_keys_are_registered() -> None:
    entries = [
        KeyEntry("kemlu", f"kemlu:{i}", key.public_key(), SINCE) for i, key in enumerate(KEYS)
    ]
    assert len(Registry(entries).entries()) == len(KEYS)


def _scalar(seed: bytes) -> int:
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return int.from_bytes(digest, "little")


def test_the_rule_is_zip_215_a_holders_signature_with_r_of_small_order_holds() -> None:
    """Pinned because live consumers, verify and replay must all check by one rule: with
    the identity as R (r = 0, so S = k * a), the cofactored equation holds; libsodium
    refuses such an R. Only the holder of ``a`` can make it."""
    key = KEYS[1]
    public = _raw_public(key.public_key())
    seed = key.private_bytes_raw()
    message = b'{"type":"case.opened"}'
    r = _encoding(1, 0)
    k = int.from_bytes(hashlib.sha512(r + public + message).digest(), "little") % L
    signature = r + (k * _scalar(seed) % L).to_bytes(32, "little")
    assert _signed(public, b64(signature), message)
    assert not _signed(public, b64(signature), message + b" ")


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _other_texts(text: str) -> list[str]:
    """Other texts of the same 64 bytes (the lenient decoder reads the first four so),
    and texts of other lengths."""
    texts = [
        text + "==",  # padded
        text.replace("-", "+").replace("_", "/"),  # the standard alphabet
        text[:-1] + _B64URL[_B64URL.index(text[-1]) ^ 1],  # an unused bit of the last
        text[:10] + "$$$$" + text[10:],  # stray characters, which the decoder skips
        text[:-1],  # 63 bytes
        text + "AAA",  # 66 bytes
        "",
        "!!@@##",
    ]
    return [t for t in texts if t != text]  # the alphabet's, when it has no '-' or '_'


def test_a_signature_holds_in_its_one_text_form_only() -> None:
    key = KEYS[2]
    public = _raw_public(key.public_key())
    # A message whose signature's text has '-' or '_' (most do), for the alphabet's form.
    message = next(m for i in range(100) if {"-", "_"} & set(b64(key.sign(m := b"message %d" % i))))
    text = b64(key.sign(message))
    assert _signed(public, text, message)
    others = _other_texts(text)
    assert len(others) == 8
    for other in others:
        assert not _signed(public, other, message), other


def test_verifier_refuses_a_signature_in_another_text_form() -> None:
    """Through the Verifier's two entry points, events and documents."""
    signer = Signer("kemlu", KEYS[3])
    verifier = Verifier(Registry([KeyEntry("kemlu", signer.keyid, KEYS[3].public_key(), SINCE)]))
    event = make_event(
        build_data("case.closed", {"reason": "reintegrated"}),
        source="kemlu",
        target=BROADCAST,
        case_id=new_case_id(),
    )
    envelope = signer.sign(event.envelope)
    verifier.verify(encode(envelope), envelope)
    document = signer.sign_document({"kind": "checkpoint", "count": 3})
    verifier.verify_document(document, signer="kemlu", at=SINCE)
    assert envelope.signature is not None
    for other in _other_texts(envelope.signature):
        altered = envelope.model_copy(update={"signature": other})
        with pytest.raises(SignatureError):
            verifier.verify(encode(altered), altered)
    for other in _other_texts(document["signature"]):
        with pytest.raises(SignatureError, match="does not match"):
            verifier.verify_document({**document, "signature": other}, signer="kemlu", at=SINCE)
