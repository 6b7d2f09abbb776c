"""Field encryption: sealing a case's personal fields, and wrapping its data key per agency.

Pure functions (no I/O) over the ``cryptography`` package:

* a case's *data key* is 256 random bits; each personal field is sealed with it under
  AES-256-GCM, a fresh 96-bit nonce per value, bound (associated data) to the case, the
  event type and the field (:func:`lintas.contracts.sealed.aad`), so a ciphertext cannot be
  moved to another case or field unnoticed;
* the data key is *wrapped* for one agency with that agency's X25519 public key: an
  ephemeral X25519 key pair, HKDF-SHA256 over the shared secret (info binds both public
  keys), and AES-256-GCM over the data key, bound (associated data) to the case, the key's
  generation, the agency it is for, the grant that justified it and the agency that made
  it. Only the holder of the agency's X25519 private key can unwrap it; who made it, and
  for which grant, the maker's signature over the stored wrap says
  (:mod:`lintas.infra.privacy.custody`).

Errors::

    SealBroken (PermanentError)   a ciphertext or wrapped key that does not open with the
                                  key given: altered, or meant for someone else
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from lintas.contracts import EventData, PermanentError, Sealed, canonical_json
from lintas.contracts.sealed import ALGORITHM, ALLOW_CLEAR, aad

__all__ = [
    "WRAP_ALGORITHM",
    "SealBroken",
    "new_data_key",
    "open_field",
    "open_value",
    "raw_public",
    "seal_data",
    "seal_value",
    "unwrap_key",
    "wrap_key",
]

WRAP_ALGORITHM: Final = "X25519-HKDF-SHA256-A256GCM"
_WRAP_INFO: Final = b"lintas case data key wrap v1"
_NONCE_BYTES: Final = 12


class SealBroken(PermanentError):
    """A sealed value or wrapped key that does not open with the key given."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


# -- fields -----------------------------------------------------------------------------------


def seal_value(
    key: bytes, gen: int, value: Any, *, case_id: str, event_type: str, field: str
) -> Sealed:
    """``value`` (JSON-able) sealed with the data key ``key`` of generation ``gen``."""
    iv = os.urandom(_NONCE_BYTES)
    ct = AESGCM(key).encrypt(iv, canonical_json(value), aad(case_id, event_type, field))
    return Sealed(alg=ALGORITHM, gen=gen, iv=_b64(iv), ct=_b64(ct))


def seal_data(data: EventData, key: bytes, gen: int, *, case_id: str) -> EventData:
    """``data`` with every sealed field that holds plaintext sealed; the rest unchanged."""
    clear = data.clear_fields()
    if not clear:
        return data
    doc = data.model_dump(mode="json", exclude_none=True)
    for name in clear:
        doc[name] = seal_value(
            key, gen, doc[name], case_id=case_id, event_type=data.TYPE, field=name
        ).model_dump()
    return type(data).model_validate(doc)


def open_value(key: bytes, sealed: Sealed, *, case_id: str, event_type: str, field: str) -> Any:
    """The JSON value ``sealed`` holds; :class:`SealBroken` if it does not open with ``key``."""
    try:
        plaintext = AESGCM(key).decrypt(
            _unb64(sealed.iv), _unb64(sealed.ct), aad(case_id, event_type, field)
        )
        return json.loads(plaintext)
    except (InvalidTag, ValueError):
        raise SealBroken(
            f"{event_type} field {field!r} of case {case_id} does not open with data key "
            f"generation {sealed.gen}: altered, or sealed for another case or field"
        ) from None


def open_field(
    data: EventData, name: str, keys: Mapping[int, bytes], *, case_id: str
) -> Any | None:
    """The plaintext of the sealed field ``name`` of ``data`` (validated as its contract
    says), or None when ``keys`` lacks the generation it was sealed with.

    A field that holds plaintext already (an event of an older version, stored before
    sealing) is returned as it is. Raises :class:`SealBroken` if the ciphertext does not
    open with the key it names.
    """
    value = getattr(data, name)
    if not isinstance(value, Sealed):
        return value
    key = keys.get(value.gen)
    if key is None:
        return None
    doc = data.model_dump(mode="json", exclude_none=True)
    doc[name] = open_value(key, value, case_id=case_id, event_type=data.TYPE, field=name)
    try:
        opened = type(data).model_validate(doc, context={ALLOW_CLEAR: True})
    except ValidationError:
        raise SealBroken(
            f"{data.TYPE} field {name!r} of case {case_id} opens to something its contract "
            "does not allow"
        ) from None
    return getattr(opened, name)


# -- data keys ----------------------------------------------------------------------------


def _wrap_aad(case_id: str, gen: int, agency: str, grant: str, maker: str) -> bytes:
    # v2: v1 bound case, generation and recipient only (no grant, no maker).
    return f"lintas-wrap:v2:{case_id}:{gen}:{agency}:{grant}:{maker}".encode()


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_WRAP_INFO + ephemeral + recipient
    )
    return hkdf.derive(shared)


def wrap_key(
    data_key: bytes,
    recipient: X25519PublicKey,
    *,
    case_id: str,
    gen: int,
    agency: str,
    grant: str,
    maker: str,
) -> dict[str, str]:
    """The data key, readable only with ``agency``'s X25519 private key, bound to the
    ``grant`` that justified it and the agency (``maker``) that made it."""
    ephemeral = X25519PrivateKey.generate()
    epk = raw_public(ephemeral.public_key())
    kek = _kek(ephemeral.exchange(recipient), epk, raw_public(recipient))
    iv = os.urandom(_NONCE_BYTES)
    ct = AESGCM(kek).encrypt(iv, data_key, _wrap_aad(case_id, gen, agency, grant, maker))
    return {"alg": WRAP_ALGORITHM, "epk": _b64(epk), "iv": _b64(iv), "ct": _b64(ct)}


def unwrap_key(
    wrapped: Mapping[str, Any],
    private: X25519PrivateKey,
    *,
    case_id: str,
    gen: int,
    agency: str,
    grant: str,
    maker: str,
) -> bytes:
    """The data key from ``wrapped``; :class:`SealBroken` if it is not for this key."""
    try:
        if wrapped.get("alg") != WRAP_ALGORITHM:
            raise ValueError("unknown algorithm")
        epk = _unb64(str(wrapped["epk"]))
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        kek = _kek(shared, epk, raw_public(private.public_key()))
        return AESGCM(kek).decrypt(
            _unb64(str(wrapped["iv"])),
            _unb64(str(wrapped["ct"])),
            _wrap_aad(case_id, gen, agency, grant, maker),
        )
    except (InvalidTag, KeyError, TypeError, ValueError):
        raise SealBroken(
            f"the data key of case {case_id} (generation {gen}) wrapped for {agency} does not "
            "open with this private key"
        ) from None
