"""A replica that has not yet caught up with the leader: the case key store looks again
before it calls an agency "not a key holder".

The stand-in store answers direct gets as a lagging replica would (a key written a moment
ago is not found for the first few reads) and refuses a create of a key that exists, as
the leader does; the wrapping, unwrapping and the CaseKeys logic are the real ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import nats.js.errors
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lintas.contracts import new_case_id
from lintas.infra.keys.exchange import Recipients
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier, key_id
from lintas.infra.nats.topology import CASE_KEYS_BUCKET
from lintas.infra.privacy.casekeys import CURRENT_GEN, CaseKeys, NotAKeyHolder
from lintas.infra.privacy.custody import make_wrap
from lintas.infra.privacy.sealing import new_data_key
from tests.support.caselog import MemoryLog, consent

CASE = new_case_id()
PREFIX = f"$KV.{CASE_KEYS_BUCKET}."


class _LaggingStore:
    """Stored keys; the wrap of ``late`` is found only after ``lag`` reads of it."""

    def __init__(self, values: dict[str, bytes], late: str, lag: int) -> None:
        self.values = values
        self.late = late
        self.lag = lag
        self.reads = 0

    async def get_msg(self, stream: str, *, subject: str, direct: bool) -> Any:
        key = subject.removeprefix(PREFIX)
        if key == self.late:
            self.reads += 1
            if self.reads <= self.lag:
                raise nats.js.errors.NotFoundError
        if key not in self.values:
            raise nats.js.errors.NotFoundError
        return SimpleNamespace(data=self.values[key])

    async def publish(self, subject: str, value: bytes, headers: dict[str, str]) -> Any:
        if subject.removeprefix(PREFIX) in self.values:  # the leader knows it is taken
            raise nats.js.errors.APIError(err_code=10071)
        self.values[subject.removeprefix(PREFIX)] = value
        return SimpleNamespace(seq=1)


def _store(lag: int) -> tuple[_LaggingStore, CaseKeys, bytes]:
    private = X25519PrivateKey.generate()
    data_key = new_data_key()
    signing = Ed25519PrivateKey.generate()
    entry = KeyEntry(
        "kemlu",
        key_id("kemlu", signing.public_key()),
        signing.public_key(),
        datetime(2000, 1, 1, tzinfo=UTC),
    )
    wrap = make_wrap(
        Signer("kemlu", signing),
        data_key,
        private.public_key(),
        kid="kp2mi:x",
        case_id=CASE,
        gen=CURRENT_GEN,
        recipient="kp2mi",
        grant="seq:2",
    )
    late = f"{CASE}.{CURRENT_GEN}.kp2mi"
    values = {
        f"{CASE}.{CURRENT_GEN}": json.dumps({"created_by": "kemlu"}).encode(),
        late: json.dumps(wrap).encode(),
    }
    store = _LaggingStore(values, late, lag)
    log = MemoryLog()  # the consent the wrap names, as custody found it
    log.add(2, Signer("kemlu", signing), "consent.recorded", consent(["kp2mi"]), case_id=CASE)
    keys = CaseKeys(
        store,
        "kp2mi",
        private,
        Recipients(),
        log=log,
        verifier=Verifier(Registry([entry])),
        signer=lambda: Signer("kp2mi", Ed25519PrivateKey.generate()),
        lag_retries_s=(0, 0, 0, 0),
    )
    return store, keys, data_key


async def test_a_wrap_the_replica_has_not_yet_is_found_by_looking_again() -> None:
    store, keys, data_key = _store(lag=3)
    assert await keys.sealing_key(CASE) == (CURRENT_GEN, data_key)
    assert store.reads == 4
    store, keys, _ = _store(lag=3)
    assert await keys.holds(CASE) is True
    assert store.reads == 4  # the first read, then three looks again


async def test_a_wrap_that_never_comes_is_not_a_key_holder_after_a_few_looks() -> None:
    store, keys, _ = _store(lag=100)
    with pytest.raises(NotAKeyHolder, match="not wrapped for kp2mi"):
        await keys.sealing_key(CASE)
    assert store.reads == 2 + 4  # before the create, after it, and four looks again
    store, keys, _ = _store(lag=100)
    assert await keys.holds(CASE) is False
    assert store.reads == 1 + 4
