"""Agencies' X25519 key pairs: how a case's data key reaches exactly the agencies it may.

Each agency has one X25519 key pair besides its Ed25519 signing key. The private key stays
in the agency's data directory (``<data_dir>/keys/<agency>.x25519.key``, mode 0600, never in
the repository); the public key is what other agencies wrap a case's data key with, so it is
published: in the data directory's ``keys/exchange.json`` and in the JetStream KV bucket
``LINTAS_EXCHANGE_KEYS`` (``lintas keys publish``). Key ids are
``<agency>:x25519:<first 16 hex digits of the SHA-256 of the raw public key>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lintas.infra.keys import registry
from lintas.infra.keys.registry import SigningKeyError
from lintas.infra.nats.topology import EXCHANGE_BUCKET
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


def exchange_key_path(settings: Settings, agency: str) -> Path:
    return settings.data_dir / "keys" / f"{agency}.x25519.key"


def recipients_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "exchange.json"


def exchange_key_id(agency: str, public: X25519PublicKey) -> str:
    return registry.key_id(agency, raw_public(public), "x25519:")


@dataclass(frozen=True, slots=True)
class ExchangeKey(registry.PublishedKey[X25519PublicKey]):
    """One agency's X25519 public key, as others wrap data keys for it."""

    @property
    def kid(self) -> str:
        """The key id (``kid``, as wrapped keys and ``keys/exchange.json`` name it)."""
        return self.keyid

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "public_key": registry.b64(raw_public(self.public_key))}


class Recipients:
    """The X25519 public key of each agency this process may wrap data keys for."""

    def __init__(self, keys: Iterable[ExchangeKey] = ()) -> None:
        self._by_agency = {key.agency: key for key in keys}  # as add() would: the last wins

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

        def take(agency: str, item: Any) -> None:
            public = X25519PublicKey.from_public_bytes(registry.unb64(item["public_key"]))
            kid = registry.checked_id(item["kid"], exchange_key_id(agency, public), where)
            recipients.add(ExchangeKey(agency, kid, public))

        registry.read_agencies(doc, where, take)
        return recipients


def load_recipients(settings: Settings) -> Recipients:
    path = recipients_path(settings)
    return Recipients.from_json(registry.read_document(path), str(path))


def init_exchange_key(settings: Settings, agency: str) -> ExchangeKey:
    """Make ``agency``'s X25519 key pair: the private key into the data directory (0600),
    the public key into ``keys/exchange.json``. Refuses to overwrite a private key."""
    registry.checked_agency(agency)
    path = exchange_key_path(settings, agency)
    private = X25519PrivateKey.generate()
    exists = f"{path} exists: {agency} already has an exchange key"
    registry.write_private_key(path, private, exists=exists)
    key = ExchangeKey(agency, exchange_key_id(agency, private.public_key()), private.public_key())
    recipients = load_recipients(settings)
    recipients.add(key)
    registry.write_document(recipients_path(settings), recipients.to_json())
    return key


def load_exchange_key(settings: Settings, agency: str) -> X25519PrivateKey:
    path = exchange_key_path(settings, agency)
    missing = f"{agency} has no exchange key at {path}: run `lintas keys init {agency}`"
    key = registry.read_private_key(path, missing=missing)
    if not isinstance(key, X25519PrivateKey):
        raise SigningKeyError(f"{path} is not an X25519 private key")
    return key


async def publish_recipients(js: Any, recipients: Recipients) -> int:
    """Put each agency's X25519 public key into ``LINTAS_EXCHANGE_KEYS``; return how many."""
    return await registry.publish_document(js, EXCHANGE_BUCKET, recipients.to_json())


async def recipients_from_kv(js: Any) -> Recipients:
    """The X25519 public keys in ``LINTAS_EXCHANGE_KEYS``; empty if there is no bucket
    (read as :func:`lintas.infra.keys.registry.bucket_values` reads: what permissions allow)."""
    doc = await registry.bucket_document(js, EXCHANGE_BUCKET)
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
