"""A recipient opens only a wrap it can verify (lintas.infra.privacy.custody.open_wrap)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lintas.contracts import new_case_id
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier, key_id
from lintas.infra.privacy.custody import WrapUnverified, make_wrap, open_wrap
from lintas.infra.privacy.sealing import SealBroken, new_data_key, wrap_key

CASE = new_case_id()
KP2MI = X25519PrivateKey.generate()
SIGNING = {a: Ed25519PrivateKey.generate() for a in ("kemlu", "dukcapil", "my-jkm")}
VERIFIER = Verifier(
    Registry(
        KeyEntry(a, key_id(a, k.public_key()), k.public_key(), datetime(2000, 1, 1, tzinfo=UTC))
        for a, k in SIGNING.items()
    )
)
KEY = new_data_key()


def _wrap(maker: str = "kemlu", grant: str = "seq:2", case_id: str = CASE) -> dict[str, Any]:
    return make_wrap(
        Signer(maker, SIGNING[maker]),
        KEY,
        KP2MI.public_key(),
        kid="kp2mi:x",
        case_id=case_id,
        gen=1,
        recipient="kp2mi",
        grant=grant,
    )


async def _open(doc: Any) -> bytes:
    return await open_wrap(doc, KP2MI, VERIFIER, case_id=CASE, gen=1, recipient="kp2mi")


async def test_a_signed_wrap_opens() -> None:
    assert await _open(_wrap()) == KEY


@pytest.mark.parametrize(
    "change",
    [
        {"grant": "seq:3"},  # another grant than the one signed
        {"maker": "dukcapil"},  # another maker's name on kemlu's signature
        {"signature": None},
        {"keyid": "kemlu:0000000000000000"},
        {"at": "1999-01-01T00:00:00+00:00"},  # before the key was in force
    ],
)
async def test_a_wrap_altered_after_signing_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(WrapUnverified):
        await _open(_wrap() | change)


async def test_a_wrap_for_another_case_by_an_agency_abroad_or_unsigned_is_refused() -> None:
    for doc in (
        _wrap(case_id=new_case_id()),
        _wrap(maker="my-jkm"),
        _wrap(grant="made"),  # only a recipient's own wrap is its maker's
        wrap_key(KEY, KP2MI.public_key(), case_id=CASE, gen=1, agency="kp2mi", grant="", maker=""),
        None,
    ):
        with pytest.raises(WrapUnverified):
            await _open(doc)


async def test_a_wrap_signed_but_bound_otherwise_does_not_open() -> None:
    """The signature holds (re-signed by its maker), but the AAD binds the grant it was
    made for: a wrap re-labelled with another grant does not open."""
    doc = _wrap() | {"grant": "seq:9"}
    resigned = Signer("kemlu", SIGNING["kemlu"]).sign_document(doc)
    with pytest.raises(SealBroken):
        await _open(resigned)
