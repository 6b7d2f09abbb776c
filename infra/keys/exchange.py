"""Agencies' X25519 key pairs: how a case's data key reaches exactly the agencies it may.

Each agency has one X25519 key pair besides its Ed25519 signing key. The private key stays
in the agency's data directory (``<data_dir>/keys/<agency>.x25519.key``, mode 0600, never in
the repository); the public key is what other agencies wrap a case's data key with, so it is
published: in the data directory's ``keys/exchange.json`` and in the JetStream KV bucket
``LINTAS_EXCHANGE_KEYS`` (``lintas keys publish``). Key ids are
``<agency>:x25519:<first 16 hex digits of the SHA-256 of the raw public key>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.js.errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nats.js.api import KeyValueConfig

from lintas.contracts import is_agency_id
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import SigningKeyError, _b64, _unb64, bucket_values
from lintas.infra.privacy.sealing import raw_public
from lintas.infra.settings import Settings

__all__ = [
    "EXCHANGE_BUCKET",
    "ExchangeKey",
    "Recipients",
    "ensure_exchange_key",
    "exchange_key_id",
    "exchange_key_path",
    "init_exchange_key",
    "load_exchange_key",
    "load_recipients",
    "publish_recipients",
    "recipients_from_kv",
    "recipients_path",
    "trusted_recipients",
]

EXCHANGE_BUCKET = "LINTAS_EXCHANGE_KEYS"


def exchange_key_path(settings: Settings, agency: str) -> Path:
    return settings.data_dir / "keys" / f"{agency}.x25519.key"


def recipients_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "exchange.json"


def exchange_key_id(agency: str, public: X25519PublicKey) -> str:
    return f"{agency}:x25519:{hashlib.sha256(raw_public(public)).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class ExchangeKey:
    """One agency's X25519 public key, as others wrap data keys for it."""

    agency: str
    kid: str
    public_key: X25519PublicKey

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "public_key": _b64(raw_public(self.public_key))}


class Recipients:
    """The X25519 public key of each agency this process may wrap data keys for."""

    def __init__(self, keys: Iterable[ExchangeKey] = ()) -> None:
        self._by_agency: dict[str, ExchangeKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: ExchangeKey) -> None:
        """A later key of the same agency (a rotation) replaces the earlier one."""
        self._by_agency[key.agency] = key

    def get(self, agency: str) -> ExchangeKey | None:
        return self._by_agency.get(agency)

    def agencies(self) -> list[str]:
        return sorted(self._by_agency)

    def to_json(self) -> dict[str, Any]:
        return {"agencies": {a: self._by_agency[a].to_json() for a in self.agencies()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "exchange keys") -> Recipients:
        recipients = cls()
        try:
            for agency, item in doc.get("agencies", {}).items():
                if not is_agency_id(agency):
                    raise SigningKeyError(f"{where}: {agency!r} is not an agency id")
                public = X25519PublicKey.from_public_bytes(_unb64(item["public_key"]))
                if item["kid"] != exchange_key_id(agency, public):
                    raise SigningKeyError(f"{where}: key id {item['kid']} does not match its key")
                recipients.add(ExchangeKey(agency, item["kid"], public))
        except (KeyError, TypeError, ValueError) as exc:
            raise SigningKeyError(f"{where} is malformed ({exc.__class__.__name__})") from None
        return recipients


def load_recipients(settings: Settings) -> Recipients:
    path = recipients_path(settings)
    if not path.exists():
        return Recipients()
    return Recipients.from_json(json.loads(path.read_text()), str(path))


def init_exchange_key(settings: Settings, agency: str) -> ExchangeKey:
    """Make ``agency``'s X25519 key pair: the private key into the data directory (0600),
    the public key into ``keys/exchange.json``. Refuses to overwrite a private key."""
    if not is_agency_id(agency):
        raise SigningKeyError(f"{agency!r} is not an agency id")
    path = exchange_key_path(settings, agency)
    if path.exists():
        raise SigningKeyError(f"{path} exists: {agency} already has an exchange key")
    private = X25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    key = ExchangeKey(agency, exchange_key_id(agency, private.public_key()), private.public_key())
    recipients = load_recipients(settings)
    recipients.add(key)
    recipients_path(settings).write_text(
        json.dumps(recipients.to_json(), indent=2, sort_keys=True) + "\n"
    )
    return key


def load_exchange_key(settings: Settings, agency: str) -> X25519PrivateKey:
    path = exchange_key_path(settings, agency)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(
            f"{agency} has no exchange key at {path}: run `lintas keys init {agency}`"
        ) from None
    if not isinstance(key, X25519PrivateKey):
        raise SigningKeyError(f"{path} is not an X25519 private key")
    return key


async def publish_recipients(js: Any, recipients: Recipients) -> int:
    """Put each agency's X25519 public key into ``LINTAS_EXCHANGE_KEYS``; return how many."""
    with bus_errors(f"writing the {EXCHANGE_BUCKET} bucket"):
        try:
            kv = await js.key_value(EXCHANGE_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=EXCHANGE_BUCKET,
                    history=4,
                    description="agencies' X25519 public keys, to wrap case data keys for",
                )
            )
        doc = recipients.to_json()["agencies"]
        for agency, entry in doc.items():
            await kv.put(agency, json.dumps(entry, sort_keys=True).encode())
    return len(doc)


async def recipients_from_kv(js: Any) -> Recipients:
    """The X25519 public keys in ``LINTAS_EXCHANGE_KEYS``; empty if there is no bucket
    (read as :func:`lintas.infra.keys.signing.bucket_values` reads: what permissions allow)."""
    values = await bucket_values(js, EXCHANGE_BUCKET)
    doc = {"agencies": {a: json.loads(value) for a, value in values.items()}}
    return Recipients.from_json(doc, f"the {EXCHANGE_BUCKET} bucket")


async def trusted_recipients(settings: Settings, js: Any) -> Recipients:
    """The data directory's exchange keys, then the bucket's (the bucket's win)."""
    recipients = load_recipients(settings)
    for agency in (found := await recipients_from_kv(js)).agencies():
        key = found.get(agency)
        assert key is not None
        recipients.add(key)
    return recipients


def ensure_exchange_key(settings: Settings, agency: str) -> None:
    """``init_exchange_key`` unless the agency has one here already (the demo's own)."""
    if not exchange_key_path(settings, agency).exists():
        init_exchange_key(settings, agency)
