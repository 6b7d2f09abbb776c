"""Agencies' Ed25519 signing keys and the public-key registry.

Each agency signs what it publishes with its own private key, which never leaves its data
directory (``<data_dir>/keys/<agency>.key``, mode 0600, never in the repository). The
registry lists, per agency, each key id with its public key and validity dates; a
consumer accepts an event only if it is signed by a key registered for the event's
``source``, valid at the event's ``time``, over the event's canonical form (RFC 8785,
see :mod:`lintas.contracts.canonical`).

Registries are JSON files: the one shipped as ``infra/registry/keys.json`` (agencies'
published keys) and the data directory's own (``<data_dir>/keys/registry.json``: keys made
here by ``lintas keys init``); a consumer reads both, and the ``LINTAS_KEYS`` bucket
(:func:`trusted_registry`), which the platform keeps from its first start
(:func:`register_keys`). Written out whole (``lintas keys export``), a registry is the trust
anchor an auditor keeps, known by its :func:`fingerprint`. Besides agencies, one role holds
keys: the sealer (:data:`SEALER`), whose keys alone sign checkpoints and archive manifests
(:func:`ensure_sealer_key`). Key ids are
``<agency>:<first 16 hex digits of the SHA-256 of the raw public key>``. Files, documents and
the bucket are handled as for every key registry (:mod:`lintas.infra.keys.registry`); what is
particular here is an entry's validity dates and the refusal of weak or conflicting keys.

A long-running :class:`Verifier` given a ``refresh`` reads its registry again when it
meets a key id it does not hold (:class:`UnknownKey`), at most once per
``refresh_interval_s`` (1 s): a key published while it runs counts without a restart. A
key id met within the interval after a read is not refused at once: the check waits for
the next read allowed (at most ``wait_s``, 1 s), which the checks waiting with it share
(:meth:`Verifier.learn_since`); a key id that does not name its event's source reads
nothing.

Raises :class:`~lintas.contracts.SignatureError` (the event is not signed as its source
must), its :class:`UnknownKey` (a key id the registry does not hold), and
:class:`SigningKeyError` (a key or a registry file that does not hold). The whole tree:
:mod:`lintas.contracts.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ed25519_zebra
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lintas.contracts import (
    Envelope,
    SignatureError,
    canonical_json,
    parse_message,
)
from lintas.contracts.canonical import plain
from lintas.infra import canonical as fastjcs
from lintas.infra.errors import bus_errors
from lintas.infra.keys.registry import (
    SEALER,
    PublishedKey,
    SigningKeyError,
    b64,
    bucket_document,
    bucket_values,
    checked_agency,
    checked_id,
    publish_document,
    read_agencies,
    read_document,
    read_private_key,
    unb64,
    write_document,
    write_private_key,
)
from lintas.infra.keys.registry import (
    key_id as published_key_id,
)
from lintas.infra.nats.topology import KEYS_BUCKET, open_key_bucket
from lintas.infra.settings import Settings

__all__ = [
    "KEYS_BUCKET",
    "SEALER",
    "SHIPPED_REGISTRY",
    "KeyEntry",
    "Registry",
    "Signer",
    "SigningKeyError",
    "UnknownKey",
    "Verifier",
    "bucket_values",
    "ensure_agency_key",
    "ensure_sealer_key",
    "ensure_signing_key",
    "fingerprint",
    "init_agency_key",
    "load_registry",
    "local_registry_path",
    "private_key_path",
    "publish_registry",
    "read_registry_file",
    "register_keys",
    "registry_bytes",
    "registry_from_kv",
    "spoken",
    "trusted_registry",
]

SHIPPED_REGISTRY = Path(__file__).resolve().parent.parent / "registry" / "keys.json"


_log = structlog.get_logger("lintas.keys")


class UnknownKey(SignatureError):
    """Signed with a key id the registry does not hold (yet, perhaps)."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# The y coordinates of the curve's points of small order (0, 1, -1 and the two of order
# 8), as libsodium lists them. A public key there verifies signatures anyone can make under
# ZIP 215's cofactored equation, whatever its sign bit and however its y is encoded (y or
# y + p).
_P = 2**255 - 19
_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    }
)


def _small_order(public: bytes) -> bool:
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    return y % _P in _SMALL_ORDER_Y


def key_id(agency: str, public: Ed25519PublicKey) -> str:
    return published_key_id(agency, _raw_public(public))


@dataclass(frozen=True, slots=True)
class KeyEntry(PublishedKey[Ed25519PublicKey]):
    """A signing key, and when it may sign: from ``valid_from`` until ``valid_until``."""

    valid_from: datetime
    valid_until: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def to_json(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "public_key": b64(_raw_public(self.public_key)),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }


class Registry:
    """Public keys by key id; which agency each belongs to."""

    def __init__(self, entries: Iterable[KeyEntry] = ()) -> None:
        self._by_id: dict[str, KeyEntry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: KeyEntry) -> None:
        if _small_order(_raw_public(entry.public_key)):
            raise SigningKeyError(f"key {entry.keyid} is of small order: anyone could sign with it")
        known = self._by_id.get(entry.keyid)
        if known is not None and _raw_public(known.public_key) != _raw_public(entry.public_key):
            raise SigningKeyError(f"key id {entry.keyid} is registered with two different keys")
        self._by_id[entry.keyid] = entry

    def get(self, keyid: str) -> KeyEntry | None:
        return self._by_id.get(keyid)

    def __reduce__(self) -> tuple[Any, ...]:
        # Public keys are OpenSSL objects, which do not pickle: a registry crosses to a
        # worker process (replay's shards) as its JSON form.
        return (Registry.from_json, (self.to_json(),))

    def entries(self) -> list[KeyEntry]:
        return sorted(self._by_id.values(), key=lambda e: (e.agency, e.valid_from, e.keyid))

    def to_json(self) -> dict[str, Any]:
        agencies: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries():
            agencies.setdefault(entry.agency, []).append(entry.to_json())
        return {"agencies": agencies}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "registry") -> Registry:
        registry = cls()

        def take(agency: str, items: Any) -> None:
            for item in items:
                public = Ed25519PublicKey.from_public_bytes(unb64(item["public_key"]))
                entry = KeyEntry(
                    agency=agency,
                    keyid=checked_id(item["keyid"], key_id(agency, public), where),
                    public_key=public,
                    valid_from=datetime.fromisoformat(item["valid_from"]),
                    valid_until=(
                        datetime.fromisoformat(item["valid_until"])
                        if item.get("valid_until")
                        else None
                    ),
                )
                try:
                    registry.add(entry)
                except SigningKeyError as exc:
                    raise SigningKeyError(f"{where}: {exc}") from None

        read_agencies(doc, where, take)
        return registry


def local_registry_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "registry.json"


def private_key_path(settings: Settings, agency: str) -> Path:
    return settings.data_dir / "keys" / f"{agency}.key"


def _read(path: Path) -> Registry:
    return Registry.from_json(read_document(path), str(path))


def load_registry(settings: Settings) -> Registry:
    """The shipped registry and this data directory's, merged."""
    registry = Registry()
    for path in (SHIPPED_REGISTRY, local_registry_path(settings)):
        for entry in _read(path).entries():
            registry.add(entry)
    return registry


def init_agency_key(settings: Settings, agency: str, *, now: datetime | None = None) -> KeyEntry:
    """Make ``agency``'s key pair: the private key into the data directory (0600), the
    public key into the local registry. Refuses to overwrite an existing private key."""
    checked_agency(agency)
    path = private_key_path(settings, agency)
    private = Ed25519PrivateKey.generate()
    write_private_key(
        path,
        private,
        exists=f"{path} exists: {agency} already has a key (rotate, do not overwrite)",
    )
    entry = KeyEntry(
        agency=agency,
        keyid=key_id(agency, private.public_key()),
        public_key=private.public_key(),
        valid_from=(now or datetime.now(UTC)).replace(microsecond=0),
    )
    registry = _read(local_registry_path(settings))
    registry.add(entry)
    write_document(local_registry_path(settings), registry.to_json())
    return entry


def ensure_agency_key(settings: Settings, agency: str) -> None:
    """``init_agency_key`` unless the agency has a key here already (the demo's own)."""
    if not private_key_path(settings, agency).exists():
        init_agency_key(settings, agency, now=datetime(2000, 1, 1, tzinfo=UTC))


def ensure_signing_key(settings: Settings, holder: str) -> tuple[Signer, KeyEntry | None]:
    """``holder``'s signer (a platform service's: the watchdog, admission, the sealer), its
    key made here on first use, valid from now; the entry made, if this call made it.
    Another process of the data directory making it at the same moment is no error."""
    made = None
    if not private_key_path(settings, holder).exists():
        with contextlib.suppress(SigningKeyError):  # the other process made it first
            made = init_agency_key(settings, holder)
    return Signer.load(settings, holder), made


def ensure_sealer_key(settings: Settings) -> tuple[Signer, KeyEntry | None]:
    """The sealer's signer (:data:`SEALER`: checkpoints and archive manifests), as
    :func:`ensure_signing_key` makes it."""
    return ensure_signing_key(settings, SEALER)


class Signer:
    """Signs the envelopes one agency publishes."""

    def __init__(self, agency: str, private_key: Ed25519PrivateKey) -> None:
        self.agency = agency
        self._key = private_key
        self.keyid = key_id(agency, private_key.public_key())

    @classmethod
    def load(cls, settings: Settings, agency: str) -> Signer:
        path = private_key_path(settings, agency)
        missing = f"{agency} has no signing key at {path}: run `lintas keys init {agency}`"
        key = read_private_key(path, missing=missing)
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path} is not an Ed25519 private key")
        return cls(agency, key)

    def sign(self, envelope: Envelope) -> Envelope:
        if envelope.source != self.agency:
            raise SignatureError(f"{self.agency}'s key cannot sign for {envelope.source}")
        keyed = envelope.model_copy(update={"keyid": self.keyid, "signature": None})
        # What a verifier reads back: the JSON of the body, not the model's values.
        doc = parse_message(keyed.model_dump_json(exclude_none=True).encode())
        signature = b64(self._key.sign(fastjcs.signing_input(doc)))
        return keyed.model_copy(update={"signature": signature})

    def sign_document(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON document other than an envelope (a checkpoint), signed as an envelope is: its
        ``keyid`` set, the signature over its RFC 8785 form without ``signature``."""
        keyed = {k: v for k, v in doc.items() if k != "signature"}
        keyed["keyid"] = self.keyid
        # A plain document, as a parsed one, takes the C/orjson path (a receipt per event).
        signed = self._key.sign(fastjcs.canonical_json(plain(keyed)))
        return {**keyed, "signature": b64(signed)}


_MISMATCH = (
    "{type} from {source}: the signature does not match the event (altered, or signed by "
    "someone else)"
)


def _holds(public: bytes, signature: str, doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    try:
        message = fastjcs.signing_input(doc)
    except (ValueError, TypeError):
        return False
    return _signed(public, signature, message)


def _signed(public: bytes, signature: str, message: bytes) -> bool:
    """Whether ``signature`` (base64url without padding, as signed envelopes and documents
    carry it) is ``public``'s Ed25519 signature of ``message``, by the rules of ZIP 215
    (ed25519-zebra).

    Checking is most of what an audit of the log does, and ed25519-zebra checks in about
    0.8x libsodium's time here (0.5x OpenSSL's). Every RFC 8032 signature holds under
    ZIP 215, and a forgery still needs the private key: what it accepts beyond libsodium
    (non-canonical encodings of R, an R of small order or with a torsion part, the
    cofactored equation) only the key's holder can make. A public key of small order
    would let anyone sign; :meth:`Registry.add` refuses those."""
    try:
        raw = unb64(signature)
    except (ValueError, TypeError):
        return False
    # One text per signature: the lenient decoder also takes padding, '+' and '/', unused
    # bits set and stray characters, and a message's hash covers the text, so anyone
    # could otherwise give a signed event another hash without touching what was signed.
    return b64(raw) == signature and bool(ed25519_zebra.ed_verify(raw, message, public))


class Verifier:
    """Checks that an event was signed by its source agency, with a key valid then.

    ``refresh`` (for a process that runs for long): reads the registry to trust afresh,
    as :func:`trusted_registry` does; :meth:`check` and :meth:`check_document` then learn a
    key published since this verifier was built (:meth:`learn_since`). The registry is read
    at most once per ``refresh_interval_s``; a check that meets a key id it lacks within
    that interval after a read waits for the next read allowed, if that is at most
    ``wait_s`` away, rather than refusing at once."""

    def __init__(
        self,
        registry: Registry,
        *,
        refresh: Callable[[], Awaitable[Registry]] | None = None,
        refresh_interval_s: float = 1.0,
        wait_s: float = 1.0,
    ) -> None:
        self.registry = registry
        self._refresh = refresh
        self._interval = refresh_interval_s
        self._wait = wait_s
        self._refreshed_at: float | None = None
        """When the last read began (:func:`time.monotonic`), whether it held or not."""
        self._read_at: float | None = None
        """When the last read that held began."""
        self._lock = asyncio.Lock()
        self.generation = 0
        """Counts the refreshes that brought keys this verifier lacked: what was decided
        for want of a key may be decided again."""

    @property
    def refreshes(self) -> bool:
        return self._refresh is not None

    async def learn(self) -> bool:
        """Read the registry afresh, unless that was done less than ``refresh_interval_s``
        ago (a sender of made-up key ids must not have every event read it); whether it
        was read. A refresh that fails leaves the registry as it was: what it would have
        let through stays quarantined, for ``lintas dlq retry``."""
        if self._refresh is None:
            return False
        async with self._lock:
            if self._refreshed_at is not None and self._due() > 0:
                return False
            return await self._read()

    async def learn_since(self, asked: float) -> bool:
        """Make sure the registry held was read after ``asked`` (the :func:`time.monotonic`
        at which the caller met a key id it lacks): whether it was. A read another caller
        began since serves; else one is made now if the interval allows, or when it next
        allows, if that is at most ``wait_s`` away. That is for a key its holder has just
        published and uses at once (an agency's first event, or its first case key, right
        after its start and within the interval after another caller's read), where a
        refusal would be final. Callers waiting together share the read; the registry is
        still read at most once per interval, however many made-up key ids come. A read
        begun since that failed is not made again (False)."""
        if self._refresh is None:
            return False
        while True:
            async with self._lock:
                if self._read_at is not None and self._read_at >= asked:
                    return True
                if self._refreshed_at is not None and self._refreshed_at >= asked:
                    return False  # read since, and it failed
                due = 0.0 if self._refreshed_at is None else self._due()
                if due <= 0:
                    return await self._read()
                if due > self._wait:
                    return False
            # A rate limit, not a wait for an event: the registry is read at most once a
            # period. Not under the lock: learn() answers at once meanwhile.
            await asyncio.sleep(due)

    def _due(self) -> float:
        """How long until the interval allows the next read (<= 0: now)."""
        assert self._refreshed_at is not None
        return self._refreshed_at + self._interval - time.monotonic()

    async def _read(self) -> bool:
        """One read of the registry, under the lock; whether it held."""
        assert self._refresh is not None
        began = self._refreshed_at = time.monotonic()
        try:
            registry = await self._refresh()
        except Exception as exc:  # best effort, whatever the bus or the bucket holds
            _log.warning("keys.refresh_failed", error=exc.__class__.__name__, exc_info=True)
            return False
        known = {e.keyid for e in self.registry.entries()}
        learned = sum(1 for e in registry.entries() if e.keyid not in known)
        self.registry = registry
        self._read_at = began
        if learned:
            self.generation += 1
            _log.info("keys.refreshed", learned=learned)
        return True

    async def _learn_for(self, keyid: str | None, holder: str, asked: float | None) -> None:
        """After :class:`UnknownKey` for ``keyid``: :meth:`learn_since` ``asked`` (or now),
        if a read could bring it as ``holder``'s (a registered key id names its holder: any
        other is refused without a read)."""
        since = time.monotonic() if asked is None else asked
        if self.refreshes and keyid is not None and keyid.startswith(f"{holder}:"):
            await self.learn_since(since)

    async def check(
        self, raw: bytes, envelope: Envelope, *, parsed: Any = None, asked: float | None = None
    ) -> None:
        """:meth:`verify`, learning the registry afresh first if the key is unknown
        (:meth:`learn_since`). ``asked``: from when a read serves (:func:`time.monotonic`;
        by default the moment the key is found unknown). A walk of the log passes the moment
        it began: every key id it meets was registered by then, so one read begun since
        serves them all, and events written around admission with made-up key ids hold it
        up once, not once each."""
        try:
            self.verify(raw, envelope, parsed=parsed)
        except UnknownKey:
            if not self.refreshes:
                raise
            await self._learn_for(envelope.keyid, envelope.source, asked)
            self.verify(raw, envelope, parsed=parsed)  # or another caller's read brought it

    async def check_document(
        self, doc: Mapping[str, Any], *, signer: str, at: datetime, asked: float | None = None
    ) -> None:
        """:meth:`verify_document`, learning the registry afresh first if the key is
        unknown, as :meth:`check` does."""
        try:
            self.verify_document(doc, signer=signer, at=at)
        except UnknownKey:
            if not self.refreshes:
                raise
            keyid = doc.get("keyid")
            await self._learn_for(keyid if isinstance(keyid, str) else None, signer, asked)
            self.verify_document(doc, signer=signer, at=at)

    def verify(self, raw: bytes, envelope: Envelope, *, parsed: Any = None) -> None:
        """``raw`` is the message body as received; ``envelope`` its decoded form;
        ``parsed`` :func:`~lintas.contracts.parse_message` of ``raw`` if the caller has it."""
        entry = self._entry(envelope)
        doc = parsed if parsed is not None else parse_message(raw)
        if not _holds(_raw_public(entry.public_key), envelope.signature or "", doc):
            raise SignatureError(_MISMATCH.format(type=envelope.type, source=envelope.source))

    def _entry(self, envelope: Envelope) -> KeyEntry:
        """The registry's key that must have signed ``envelope``."""
        if envelope.signature is None or envelope.keyid is None:
            raise SignatureError(f"{envelope.type} from {envelope.source} is not signed")
        entry = self.registry.get(envelope.keyid)
        if entry is None:
            raise UnknownKey(f"key {envelope.keyid} is not in the registry")
        if entry.agency != envelope.source:
            raise SignatureError(
                f"{envelope.type} claims to come from {envelope.source} but is signed with "
                f"{entry.agency}'s key {entry.keyid}"
            )
        if not entry.valid_at(envelope.time):
            raise SignatureError(f"key {entry.keyid} was not valid at {envelope.time.isoformat()}")
        return entry

    def verify_document(self, doc: Mapping[str, Any], *, signer: str, at: datetime) -> None:
        """A document signed with :meth:`Signer.sign_document` by ``signer``'s key valid
        ``at``; :class:`SignatureError` saying what does not hold."""
        keyid, signature = doc.get("keyid"), doc.get("signature")
        if not isinstance(keyid, str) or not isinstance(signature, str):
            raise SignatureError("not signed")
        entry = self.registry.get(keyid)
        if entry is None:
            raise UnknownKey(f"key {keyid} is not in the registry")
        if entry.agency != signer:
            raise SignatureError(f"says it is {signer}'s but is signed with {entry.agency}'s key")
        if not entry.valid_at(at):
            raise SignatureError(f"key {entry.keyid} was not valid at {at.isoformat()}")
        try:
            message = fastjcs.signing_input(doc)
        except (ValueError, TypeError):
            message = None
        if message is None or not _signed(_raw_public(entry.public_key), signature, message):
            raise SignatureError(
                "the signature does not match (altered, or signed by someone else)"
            )


# -- the registry in JetStream KV ----------------------------------------------------------


async def publish_registry(js: Any, registry: Registry) -> int:
    """Put each agency's public keys into the ``LINTAS_KEYS`` bucket (one key per agency,
    with history: a rotation leaves the previous list behind); return the agencies put."""
    return await publish_document(js, KEYS_BUCKET, registry.to_json())


async def registry_from_kv(js: Any) -> Registry:
    """The public keys in the ``LINTAS_KEYS`` bucket; empty if there is no bucket."""
    doc = await bucket_document(js, KEYS_BUCKET)
    return Registry.from_json(doc, f"the {KEYS_BUCKET} bucket")


async def register_keys(settings: Settings, js: Any) -> Registry:
    """The platform's registry, kept in the ``LINTAS_KEYS`` bucket from the first start: the
    bucket made if missing, this data directory's keys added to what it holds (an agency's
    list put again only when it gains a key), and the whole returned."""
    with bus_errors(f"writing the {KEYS_BUCKET} bucket"):
        await open_key_bucket(js, KEYS_BUCKET, settings.stream_replicas)
    held = await registry_from_kv(js)
    merged = Registry(held.entries())
    for entry in load_registry(settings).entries():
        merged.add(entry)
    grown = {e.agency for e in merged.entries() if held.get(e.keyid) is None}
    if grown:
        doc = merged.to_json()
        await publish_document(
            js, KEYS_BUCKET, {"agencies": {a: doc["agencies"][a] for a in sorted(grown)}}
        )
    return merged


def registry_bytes(registry: Registry) -> bytes:
    """The registry's canonical form (RFC 8785): what its fingerprint is the SHA-256 of,
    whatever the spacing or order of the file it was read from."""
    return canonical_json(registry.to_json())


def fingerprint(registry: Registry) -> str:
    """``sha256:<hex>`` of :func:`registry_bytes`: what an auditor compares with the one the
    platform published."""
    return "sha256:" + hashlib.sha256(registry_bytes(registry)).hexdigest()


def spoken(digest: str) -> str:
    """A fingerprint in groups of four hex digits, eight to a line: to read out over the
    phone or compare by eye."""
    hexits = digest.removeprefix("sha256:")
    groups = [hexits[i : i + 4] for i in range(0, len(hexits), 4)]
    return "\n".join(" ".join(groups[i : i + 8]) for i in range(0, len(groups), 8))


def read_registry_file(path: Path) -> Registry:
    """A registry file given by hand (``--keys``): :class:`SigningKeyError` if it is not one."""
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        raise SigningKeyError(f"{path} is not JSON") from None
    if not isinstance(doc, dict):
        raise SigningKeyError(f"{path} is not a key registry")
    return Registry.from_json(doc, str(path))


async def trusted_registry(settings: Settings, js: Any) -> Registry:
    """What a consumer trusts: the shipped registry, the data dir's, and the KV bucket's."""
    registry = load_registry(settings)
    for entry in (await registry_from_kv(js)).entries():
        registry.add(entry)
    return registry
