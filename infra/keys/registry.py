"""What every registry of agencies' public keys does, whatever the key is for.

Two registries publish agencies' public keys: signing keys (Ed25519,
:mod:`lintas.infra.keys.signing`) and exchange keys (X25519, :mod:`lintas.infra.keys.exchange`).
They differ in what an entry holds and in how entries of one agency combine (a signing key
keeps its predecessors, for the events they signed; an exchange key replaces its
predecessor); the rest is written here once:

* a private key: written once into the data directory (PEM, 0600 from the start, never
  overwritten) and read back, checked to be of the kind expected;
* a registry document, ``{"agencies": {<agency id>: <its entries>}}``: read with every
  agency id checked and any malformed part reported as :class:`SigningKeyError` naming the
  document; written as sorted, indented JSON;
* a JetStream KV bucket holding one key per agency (its entries as JSON), the bucket made
  as :mod:`lintas.infra.nats.topology` declares it when first published to, and read message
  by message (:func:`bucket_values`) as an agency's permissions allow;
* an entry's agency, key id and public key (:class:`PublishedKey`), and key ids:
  ``<agency>:<prefix><first 16 hex digits of the SHA-256 of the raw public key>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import nats.js.errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from lintas.contracts import is_agency_id
from lintas.contracts.errors import PermanentError
from lintas.infra.errors import bus_errors
from lintas.infra.files import write_private
from lintas.infra.nats.topology import open_key_bucket

__all__ = [
    "ROLES",
    "SEALER",
    "PublishedKey",
    "SigningKeyError",
    "b64",
    "bucket_document",
    "bucket_values",
    "checked_agency",
    "checked_id",
    "key_id",
    "publish_document",
    "read_agencies",
    "read_document",
    "read_private_key",
    "unb64",
    "write_document",
    "write_private_key",
]


_Public = TypeVar("_Public")

SEALER: Final = "sealer"
"""The platform's signing role: its keys sign checkpoints and archive manifests, and nothing
else does. It is no agency (no envelope can name it as its source), so an agency's key
never makes a checkpoint and the sealer's key never makes an event."""

ROLES: Final = frozenset({SEALER})
"""Holders of registered keys that are roles, not agencies."""


class SigningKeyError(PermanentError):
    """A key that is missing, malformed, or would be overwritten; or a registry document
    that does not hold."""


def b64(raw: bytes) -> str:
    """base64url without padding: how keys and signatures are written."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(agency: str, raw_public: bytes, prefix: str = "") -> str:
    """``<agency>:<prefix><first 16 hex digits of the SHA-256 of the raw public key>``."""
    return f"{agency}:{prefix}{hashlib.sha256(raw_public).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class PublishedKey(Generic[_Public]):
    """One agency's public key, as a registry lists it."""

    agency: str
    keyid: str
    """Its :func:`key_id`, by which a signature or a wrapped key names it."""
    public_key: _Public


# -- private keys ------------------------------------------------------------------------


def write_private_key(path: Path, key: PrivateKeyTypes, *, exists: str) -> None:
    """``key`` as unencrypted PKCS#8 PEM into the new file ``path`` (0600 from the start:
    never readable by others, not even briefly). A key is never overwritten: if ``path``
    exists, :class:`SigningKeyError` with the message ``exists``."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_private(path, pem)
    except FileExistsError:
        raise SigningKeyError(exists) from None


def read_private_key(path: Path, *, missing: str) -> PrivateKeyTypes:
    """The private key in ``path``; :class:`SigningKeyError` with the message ``missing``
    when there is no file. Its kind is the caller's to check."""
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(missing) from None


# -- registry documents --------------------------------------------------------------------


def read_agencies(doc: Mapping[str, Any], where: str, take: Callable[[str, Any], None]) -> None:
    """``take(agency, entries)`` for each agency of the registry document ``doc`` in turn,
    once its id is checked; a part that is missing or of the wrong type or value, in
    ``doc`` or in what ``take`` reads, is :class:`SigningKeyError` naming ``where``."""
    try:
        for agency, entries in doc.get("agencies", {}).items():
            take(checked_agency(agency, where), entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningKeyError(f"{where} is malformed ({exc.__class__.__name__})") from None


def checked_agency(agency: str, where: str | None = None) -> str:
    """``agency``, if it is an agency id or a role of :data:`ROLES` (whose key ``where``
    holds, if given)."""
    if not (is_agency_id(agency) or agency in ROLES):
        prefix = f"{where}: " if where else ""
        raise SigningKeyError(f"{prefix}{agency!r} is not an agency id")
    return agency


def checked_id(stated: str, actual: str, where: str) -> str:
    """``stated``, the key id an entry of ``where`` gives, if it is ``actual``, its key's."""
    if stated != actual:
        raise SigningKeyError(f"{where}: key id {stated} does not match its key")
    return stated


def read_document(path: Path) -> dict[str, Any]:
    """The registry document in ``path``; one of no agencies if there is no file."""
    if not path.exists():
        return {"agencies": {}}
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_document(path: Path, doc: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


# -- the registry in JetStream KV ----------------------------------------------------------


async def publish_document(js: Any, bucket: str, doc: Mapping[str, Any]) -> int:
    """Put each agency's entries of the registry document ``doc`` into the KV ``bucket``
    (made as :mod:`~lintas.infra.nats.topology` configures it if missing), one key per
    agency; return how many agencies were put."""
    with bus_errors(f"writing the {bucket} bucket"):
        kv = await open_key_bucket(js, bucket)
        agencies = doc["agencies"]
        for agency, entries in agencies.items():
            await kv.put(agency, json.dumps(entries, sort_keys=True).encode())
    return len(agencies)


async def bucket_values(js: Any, bucket: str) -> dict[str, bytes]:
    """Each key's current value in the KV ``bucket`` (none for a deleted key); empty if
    there is no bucket.

    Read message by message on the bucket's stream (stream gets, next by subject) rather
    than through a KV watcher: a plain request per message is what an agency's permissions
    allow (a watcher would need to create consumers), across accounts too.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    latest: dict[str, bytes | None] = {}
    seq = 1
    with bus_errors(f"reading the {bucket} bucket"):
        while True:
            try:
                raw = await js.get_msg(stream, seq=seq, subject=f"{prefix}>", next=True)
            except nats.js.errors.NotFoundError:
                break  # no bucket, or no message after seq
            if raw.seq is None:
                break
            deleted = (raw.headers or {}).get("KV-Operation") in ("DEL", "PURGE")
            latest[(raw.subject or "").removeprefix(prefix)] = None if deleted else raw.data
            seq = raw.seq + 1
    return {key: value for key, value in latest.items() if value}


async def bucket_document(js: Any, bucket: str) -> dict[str, Any]:
    """The registry document the KV ``bucket`` holds (no agencies if there is no bucket)."""
    values = await bucket_values(js, bucket)
    return {"agencies": {agency: json.loads(value) for agency, value in values.items()}}
