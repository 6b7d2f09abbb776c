"""The case key store: each case's data key, wrapped for each agency that may read it.

A JetStream KV bucket, ``LINTAS_CASE_KEYS``, on a backing stream lintas declares itself
(``KV_LINTAS_CASE_KEYS``) so that entries can be *erased*: JetStream's message delete
overwrites the stored bytes, where a KV delete or purge only hides them (a deleted value
stays in the bucket's history, and a purged one in the stream's block files until they are
compacted). Keys, written once and never updated (an update would leave the old revision
on disk), each holding no more than a wrapped key or a marker::

    <case>.<gen>             who created the case's data key of generation <gen>, and when
    <case>.<gen>.<agency>    that data key wrapped for <agency> (see lintas.infra.privacy.sealing)
    <case>.erased            the case was erased: no data key may be made for it again

An agency reads its wrapped key, verifies its maker's signature and binding and, on the log
itself, the grant it names, and unwraps it with its X25519 private key
(:mod:`lintas.infra.privacy.custody`); the data key itself is
never stored, logged or traced, and lives in memory only while it is used. Withdrawing a
consent erases the wraps of the agencies it no longer covers; erasing a case
(``case.erased``) erases every entry of the case: its sealed fields are unreadable
everywhere from then on, which is what the log's immutability needs (crypto-shredding).

Who may do what on a bus with permissions (:mod:`lintas.infra.nats.access`): an agency has
no right on the store. Its :class:`CaseKeys` goes through the platform's custody service
(:class:`~lintas.infra.privacy.custody.Custody`, in the read service), which writes a
case's first key and each wrap once it has checked the log, and reads the agency the case
markers and its own wraps only. Erasing and revoking are the platform's too: the agency
asks the read service (:meth:`lintas.infra.reads.ServiceReads.erase_keys` /
``revoke_keys``), which does only what the log calls for (its owner's ``case.erased``, a
``consent.withdrawn``). Where nothing enforces permissions (the platform itself, a bus
without authorization) :class:`DirectStore` reads and writes the store as it is.

Errors::

    NotAKeyHolder (PermanentError)    this agency holds no wrap of the case's data key
    WrapUnverified (SealBroken)       its wrap is not one it can verify (custody module)
    NoKeyStore    (PermanentError)    the key store is not declared on this bus
    NoExchangeKey (PermanentError)    no X25519 public key is known for an agency to wrap for
    CaseErased    (PermanentError)    the case was erased: no new data key for it
    BusUnavailable (TransientError)   the bus is out of reach
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import nats.js.errors
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lintas.contracts import CaseErased, PermanentError
from lintas.contracts.subjects import kv_subject
from lintas.infra.errors import bus_errors
from lintas.infra.keys.exchange import (
    ExchangeKey,
    Recipients,
    exchange_key_id,
    load_exchange_key,
)
from lintas.infra.keys.signing import Signer, Verifier, load_registry
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.nats.topology import CASE_KEYS_BUCKET, case_keys_stream
from lintas.infra.privacy.custody import CaseLog, GrantCheck, grant_of, make_wrap, open_wrap
from lintas.infra.privacy.sealing import new_data_key
from lintas.infra.settings import Settings

__all__ = [
    "CaseKeyEntry",
    "CaseKeys",
    "NoExchangeKey",
    "NoKeyStore",
    "NotAKeyHolder",
    "case_keys_for",
    "cases_wrapped_for",
    "erase_case_keys",
    "list_case_keys",
    "revoke_case_keys",
]

CURRENT_GEN: Final = 1  # one data key per case; generations leave room for rotation
_ERASED: Final = "erased"


class NotAKeyHolder(PermanentError):
    """The agency holds no wrap of the case's data key, so it can neither read the case's
    sealed fields nor seal new ones for it."""


class NoKeyStore(PermanentError):
    """The case key store is not declared on this bus."""


class NoExchangeKey(PermanentError):
    """No X25519 public key is known for an agency: nothing can be wrapped for it."""


@dataclass(frozen=True, slots=True)
class CaseKeyEntry:
    """One entry of a case in the key store (never its value)."""

    key: str
    seq: int

    @property
    def case_id(self) -> str:
        return self.key.split(".")[0]

    @property
    def agency(self) -> str | None:
        parts = self.key.split(".")
        return parts[2] if len(parts) == 3 else None

    @property
    def gen(self) -> int | None:
        parts = self.key.split(".")
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


_WRONG_LAST_SEQUENCE: Final = 10071


async def _create(js: Any, bucket: str, key: str, value: bytes) -> bool:
    """Write ``key`` only if it holds nothing (False if it does): a KV create, made as a
    plain JetStream publish so that an agency needs no permission but to publish on the
    key's subject (a KV handle would read the bucket's stream info first)."""
    try:
        await js.publish(
            kv_subject(bucket, key), value, headers={"Nats-Expected-Last-Subject-Sequence": "0"}
        )
    except nats.js.errors.NoStreamResponseError:
        raise NoKeyStore(
            f"the case key store {bucket} is not declared on this bus (`lintas up` declares "
            "it, as lintas.infra.nats.topology.declare_platform does)"
        ) from None
    except nats.js.errors.APIError as exc:
        if exc.err_code == _WRONG_LAST_SEQUENCE:
            return False
        raise
    return True


async def list_case_keys(
    js: Any, case_id: str, bucket: str = CASE_KEYS_BUCKET
) -> list[CaseKeyEntry]:
    """Every entry the store holds for ``case_id``, in the order written."""
    return await _entries(js, bucket, f"{case_id}.>", f"listing the keys of case {case_id}")


async def cases_wrapped_for(
    js: Any, agency: str, bucket: str = CASE_KEYS_BUCKET
) -> list[CaseKeyEntry]:
    """Every case whose data key is wrapped for ``agency`` (what it can read, and what a
    leak of its X25519 private key exposes), in the order the wraps were written."""
    return await _entries(
        js, bucket, f"*.*.{agency}", f"listing the data keys wrapped for {agency}"
    )


async def _entries(js: Any, bucket: str, keys: str, what: str) -> list[CaseKeyEntry]:
    """The entries whose key matches ``keys`` (a subject filter below the bucket)."""
    stream, prefix = case_keys_stream(bucket), kv_subject(bucket, "")
    found: list[CaseKeyEntry] = []
    cursor = 1
    with bus_errors(what):
        while True:
            try:
                raw = await js.get_msg(
                    stream, seq=cursor, subject=kv_subject(bucket, keys), next=True
                )
            except nats.js.errors.NotFoundError:
                return found
            found.append(CaseKeyEntry((raw.subject or "").removeprefix(prefix), int(raw.seq or 0)))
            cursor = int(raw.seq or 0) + 1


async def _erase(js: Any, bucket: str, entries: Iterable[CaseKeyEntry]) -> int:
    erased = 0
    for entry in entries:
        try:
            # STREAM.MSG.DELETE without no_erase: the server overwrites the stored message.
            await js.delete_msg(case_keys_stream(bucket), entry.seq)
            erased += 1
        except nats.js.errors.NotFoundError:
            pass  # erased meanwhile by someone else
    return erased


async def revoke_case_keys(
    js: Any, case_id: str, agencies: Iterable[str], bucket: str = CASE_KEYS_BUCKET
) -> list[str]:
    """Erase the wraps of ``agencies``: they can no longer open the case's sealed fields.
    Returns the agencies whose wrap was erased. Needs no key of its own."""
    revoked = []
    with bus_errors(f"revoking data keys of case {case_id}"):
        for agency in sorted(set(agencies)):
            try:
                raw = await js.get_msg(
                    case_keys_stream(bucket),
                    subject=kv_subject(bucket, f"{case_id}.{CURRENT_GEN}.{agency}"),
                )
            except nats.js.errors.NotFoundError:
                continue
            if await _erase(js, bucket, [CaseKeyEntry("", int(raw.seq or 0))]):
                revoked.append(agency)
    return revoked


async def erase_case_keys(js: Any, case_id: str, bucket: str = CASE_KEYS_BUCKET) -> int:
    """Erase every data key of ``case_id`` and leave the erased marker; return how many
    entries were erased. Idempotent; needs no key of its own (an operator's command)."""
    with bus_errors(f"erasing the keys of case {case_id}"):
        # Erased before: erase again whatever appeared since.
        marker = json.dumps({"erased_at": datetime.now(UTC).isoformat()}).encode()
        await _create(js, bucket, f"{case_id}.{_ERASED}", marker)
        total = 0
        # Twice: a data key made while the first pass ran (before its maker saw the
        # erasure) is caught by the second; the maker also erases it when it finds out.
        for _ in range(2):
            entries = [
                e
                for e in await list_case_keys(js, case_id, bucket)
                if e.key.split(".")[1:] != [_ERASED]
            ]
            total += await _erase(js, bucket, entries)
    return total


class KeyStore(Protocol):
    """Where an agency's case keys are read and written: the store itself
    (:class:`DirectStore`: the platform, a bus without permissions) or the platform's
    custody service (:class:`lintas.infra.reads.ServiceReads`: an agency on a bus with
    permissions, which may not touch the store)."""

    async def case_key(self, key: str) -> bytes | None: ...

    async def make_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> str | None: ...

    async def wrap_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> bool: ...


class DirectStore:
    """The case key store written and read directly, by an identity allowed to (the
    platform, or anyone on a bus without permissions). It checks nothing: on a bus with
    permissions agencies go through :class:`~lintas.infra.privacy.custody.Custody`."""

    def __init__(self, js: Any, bucket: str = CASE_KEYS_BUCKET) -> None:
        self._js = js
        self.bucket = bucket

    async def case_key(self, key: str) -> bytes | None:
        try:
            raw = await self._js.get_msg(
                case_keys_stream(self.bucket), subject=kv_subject(self.bucket, key), direct=True
            )
        except nats.js.errors.NotFoundError:
            return None
        return bytes(raw.data or b"") or None

    async def make_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> str | None:
        maker = str(wrap.get("maker"))
        marker = json.dumps({"created_by": maker, "at": datetime.now(UTC).isoformat()})
        if not await _create(self._js, self.bucket, f"{case_id}.{gen}", marker.encode()):
            return _creator(await self.case_key(f"{case_id}.{gen}"))
        await _create(self._js, self.bucket, f"{case_id}.{gen}.{maker}", json.dumps(wrap).encode())
        return maker

    async def wrap_case_key(self, case_id: str, gen: int, wrap: dict[str, Any]) -> bool:
        key = f"{case_id}.{gen}.{wrap.get('for')}"
        return await _create(self._js, self.bucket, key, json.dumps(wrap).encode())


def _creator(marker: bytes | None) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        creator = json.loads(marker or b"").get("created_by")
        return creator if isinstance(creator, str) else None
    return None


class CaseKeys:
    """One agency's access to the case key store: its own wrapped keys (unwrapped with its
    X25519 private key once verified: :func:`~lintas.infra.privacy.custody.open_wrap`),
    and wrapping for others (with their public keys, signed with its ``signer``).

    ``store``: where it reads and writes (default: the store itself, :class:`DirectStore`);
    ``log``: where it reads the case's broadcasts, to find the grant a wrap names
    (:class:`~lintas.infra.privacy.custody.GrantCheck`);
    ``verifier``: the registry its wraps' makers' and grants' signatures are checked against;
    ``signer``: its signing key, or what loads it when it first wraps."""

    def __init__(
        self,
        js: Any,
        agency: str,
        private_key: X25519PrivateKey,
        recipients: Recipients,
        *,
        log: CaseLog,
        verifier: Verifier,
        signer: Signer | Callable[[], Signer],
        store: KeyStore | None = None,
        bucket: str = CASE_KEYS_BUCKET,
        cached_cases: int = 1024,
        cache_s: float = 30.0,
        lag_retries_s: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    ) -> None:
        self._js = js
        self.agency = agency
        self._private = private_key
        self.recipients = recipients
        self.bucket = bucket
        self._store: KeyStore = store if store is not None else DirectStore(js, bucket)
        self._verifier = verifier
        self._grants = GrantCheck(log, verifier)
        self._signer = signer
        # Data keys this agency seals with, in this process's memory only (never written),
        # for ``cache_s`` after their last use: a burst of publishes for a case unwraps its
        # key once. Forgotten at once when this process erases the case.
        self._sealing: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._cached = cached_cases
        self._cache_s = cache_s
        self._lag_retries_s = tuple(lag_retries_s)

    def forget(self, case_id: str) -> None:
        """Drop the case's data key from memory (after erasure)."""
        self._sealing.pop(case_id, None)
        self._grants.forget(case_id, CURRENT_GEN)

    def _signing(self) -> Signer:
        if not isinstance(self._signer, Signer):
            self._signer = self._signer()
        return self._signer

    async def _get(self, key: str) -> bytes | None:
        return await self._store.case_key(key)

    async def data_key(self, case_id: str, gen: int = CURRENT_GEN) -> bytes | None:
        """The case's data key of generation ``gen`` if it is wrapped for this agency.
        Raises :class:`~lintas.infra.privacy.custody.WrapUnverified` for a wrap that is not
        signed by an agency that may have made it, or whose grant is not on the log."""
        with bus_errors(f"reading {self.agency}'s data key of case {case_id}"):
            value = await self._get(f"{case_id}.{gen}.{self.agency}")
        if value is None:
            return None
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None
        return await open_wrap(
            doc,
            self._private,
            self._verifier,
            self._grants,
            case_id=case_id,
            gen=gen,
            recipient=self.agency,
        )

    async def _data_key_settled(self, case_id: str, *, missed: bool = False) -> bytes | None:
        """:meth:`data_key`, where the store says the case has one: looked for again a few
        times (under half a second in all) before this agency's wrap is taken to be absent.

        A replica of a replicated store may answer a direct get (:class:`DirectStore`'s
        read) before it holds what the leader stored a moment ago (no read-after-write
        coherency, NATS ADR-31). A wrap just written for this agency would otherwise read as
        "not a key holder". Custody reads from the leader, so through it a look again is
        rare (a wrap whose writer has not yet been answered).
        ``missed``: the caller has just read it and not found it."""
        key = None if missed else await self.data_key(case_id)
        for pause in self._lag_retries_s:
            if key is not None:
                break
            await asyncio.sleep(pause)
            key = await self.data_key(case_id)
        return key

    def _remember(self, case_id: str, key: bytes) -> bytes:
        self._sealing[case_id] = (key, time.monotonic() + self._cache_s)
        self._sealing.move_to_end(case_id)
        while len(self._sealing) > self._cached:
            self._sealing.popitem(last=False)
        return key

    def _recalled(self, case_id: str) -> bytes | None:
        cached = self._sealing.get(case_id)
        if cached is None:
            return None
        if cached[1] < time.monotonic():
            del self._sealing[case_id]
            return None
        return self._remember(case_id, cached[0])

    async def sealing_key(self, case_id: str, *, new_case: bool = False) -> tuple[int, bytes]:
        """The case's current data key, made now (wrapped for this agency alone) if the case
        has none yet. The Publisher asks only once its gate has seen the case is not
        erased; ``new_case``: the case has no event yet (so no key to look up, and it
        cannot have been erased)."""
        cached = self._recalled(case_id)
        if cached is not None:
            return CURRENT_GEN, cached
        if not new_case:
            key = await self.data_key(case_id)
            if key is not None:
                return CURRENT_GEN, self._remember(case_id, key)
        with bus_errors(f"making the data key of case {case_id}"):
            if not new_case and await self._get(f"{case_id}.{_ERASED}") is not None:
                raise CaseErased(f"case {case_id} was erased: no data key is made for it again")
            key = new_data_key()
            own = self._wrap_for(case_id, self.agency, key, None)
            creator = await self._store.make_case_key(case_id, CURRENT_GEN, own)
            if creator != self.agency:
                # Another agency made it first (between our read and now): ours, if wrapped.
                key = await self._data_key_settled(case_id)
                if key is None:
                    raise NotAKeyHolder(
                        f"case {case_id} has a data key, not wrapped for {self.agency}: a "
                        f"consent covering {self.agency} must be recorded by an agency that "
                        "holds it"
                    )
                return CURRENT_GEN, self._remember(case_id, key)
        return CURRENT_GEN, self._remember(case_id, key)

    def _wrap_for(self, case_id: str, agency: str, key: bytes, grant: int | None) -> dict[str, Any]:
        """``key`` wrapped for ``agency`` and signed, justified by the consent or override
        at ``grant`` (None: this agency's own first wrap, for its own public key)."""
        recipient = self.recipients.get(agency)
        if agency == self.agency:
            own = self._private.public_key()
            recipient = ExchangeKey(agency, exchange_key_id(agency, own), own)
        if recipient is None:
            raise NoExchangeKey(
                f"no X25519 public key is known for {agency}: it cannot be given case "
                f"{case_id}'s data key (`lintas keys init {agency}` there, then "
                "`lintas keys publish`)"
            )
        return make_wrap(
            self._signing(),
            key,
            recipient.public_key,
            kid=recipient.kid,
            case_id=case_id,
            gen=CURRENT_GEN,
            recipient=agency,
            grant=grant_of(grant),
        )

    def missing_recipients(self, agencies: Iterable[str]) -> list[str]:
        return sorted(a for a in set(agencies) if self.recipients.get(a) is None)

    async def grant(self, case_id: str, agencies: Iterable[str], grant: int) -> list[str]:
        """Wrap the case's data key for each of ``agencies`` that lacks it, as the consent or
        override at stream sequence ``grant`` allows; return those.

        Raises :class:`NotAKeyHolder` if this agency holds no wrap of it (when the case has
        no data key yet, it is made here), :class:`NoExchangeKey` (before wrapping any) if
        an agency has no known public key."""
        wanted = sorted(set(agencies) - {self.agency})
        if not wanted:
            return []
        missing = self.missing_recipients(wanted)
        if missing:
            raise NoExchangeKey(
                f"no X25519 public key is known for {', '.join(missing)}: case {case_id}'s "
                "data key cannot be wrapped for them (`lintas keys init AGENCY` there, then "
                "`lintas keys publish`)"
            )
        _gen, key = await self.sealing_key(case_id)
        with bus_errors(f"wrapping the data key of case {case_id}"):
            done = await asyncio.gather(
                *(
                    self._store.wrap_case_key(
                        case_id, CURRENT_GEN, self._wrap_for(case_id, a, key, grant)
                    )
                    for a in wanted
                )
            )
        return [agency for agency, wrapped in zip(wanted, done, strict=True) if wrapped]

    async def erased(self, case_id: str) -> bool:
        """Whether the case's keys were erased (its marker is in the store)."""
        with bus_errors(f"reading the key store of case {case_id}"):
            return await self._get(f"{case_id}.{_ERASED}") is not None

    async def holds(self, case_id: str) -> bool | None:
        """True if this agency holds the case's data key, None if the case has none yet
        (this agency would make it), False if another agency made it for others."""
        if self._recalled(case_id) is not None or await self.data_key(case_id) is not None:
            return True
        with bus_errors(f"reading the data key of case {case_id}"):
            made = await self._get(f"{case_id}.{CURRENT_GEN}")
        if made is None:
            return None
        # The case has a key: ours may be on its way to this replica (the store's writes
        # reach a replica in order, and the marker is written before any wrap).
        return await self._data_key_settled(case_id, missed=True) is not None

    async def creator(self, case_id: str) -> str | None:
        """The agency that made the case's data key (None: none made, or erased)."""
        with bus_errors(f"reading the key store of case {case_id}"):
            made = await self._get(f"{case_id}.{CURRENT_GEN}")
        return _creator(made)


def case_keys_for(
    js: Any,
    settings: Settings,
    agency: str,
    recipients: Recipients,
    *,
    verifier: Verifier | None = None,
) -> CaseKeys:
    """``agency``'s case keys, with its X25519 private key and its signing key from the data
    directory. Where the bus enforces the agency's permissions it reads and writes through
    the platform's custody service (it may not touch the store); ``verifier``: default, the
    shipped and local registries."""
    # Imported here: the read service erases keys with this module.
    from lintas.infra.reads import DirectReads, ServiceReads, jetstream_api

    store: KeyStore | None = None
    log: CaseLog = DirectReads(js, settings.stream)
    if uses_credentials(settings, agency) and agency != "platform":
        api = jetstream_api(js)
        if api is not None:
            store = log = ServiceReads(api[0], agency)
    return CaseKeys(
        js,
        agency,
        load_exchange_key(settings, agency),
        recipients,
        log=log,
        verifier=verifier or Verifier(load_registry(settings)),
        signer=lambda: Signer.load(settings, agency),
        store=store,
    )
