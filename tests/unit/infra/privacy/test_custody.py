"""A recipient opens only a wrap it can verify (lintas.infra.privacy.custody.open_wrap):
well formed, signed by its maker, and naming a grant the recipient finds on the log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lintas.contracts import new_case_id
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier, key_id
from lintas.infra.privacy.custody import GrantCheck, WrapUnverified, make_wrap, open_wrap
from lintas.infra.privacy.sealing import SealBroken, new_data_key, wrap_key
from tests.support.caselog import MemoryLog, consent
from tests.support.samples import SAMPLES

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


def _signer(agency: str) -> Signer:
    return Signer(agency, SIGNING[agency])


def _log() -> MemoryLog:
    """kemlu's consent naming kp2mi at seq 2 (and again at 9), as custody found them."""
    log = MemoryLog()
    log.add(2, _signer("kemlu"), "consent.recorded", consent(["kp2mi"]), case_id=CASE)
    log.add(9, _signer("kemlu"), "consent.recorded", consent(["kp2mi"], "c-9"), case_id=CASE)
    return log


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


async def _open(doc: Any, log: MemoryLog | None = None) -> bytes:
    grants = GrantCheck(log or _log(), VERIFIER)
    return await open_wrap(doc, KP2MI, VERIFIER, grants, case_id=CASE, gen=1, recipient="kp2mi")


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


@pytest.mark.parametrize(
    ("seq", "event_type", "data", "signer", "case_id"),
    [
        # dukcapil's own consent naming kp2mi: not the maker's
        (2, "consent.recorded", consent(["kp2mi"]), "dukcapil", CASE),
        # kemlu's consent naming dukcapil only
        (2, "consent.recorded", consent(["dukcapil"]), "kemlu", CASE),
        # kemlu's consent naming kp2mi, of another case
        (2, "consent.recorded", consent(["kp2mi"]), "kemlu", new_case_id()),
        # kemlu's consent naming kp2mi for aggregate reporting only
        (2, "consent.recorded", consent(["kp2mi"]) | {"scopes": ["reporting"]}, "kemlu", CASE),
        # no consent at all: kemlu's withdrawal at that seq
        (2, "consent.withdrawn", {"consent_id": "c", "reason": "moved"}, "kemlu", CASE),
    ],
)
async def test_a_signed_wrap_naming_a_seq_that_grants_the_recipient_nothing_is_refused(
    seq: int, event_type: str, data: dict[str, Any], signer: str, case_id: str
) -> None:
    """A broken-into platform with kemlu's stolen key: the wrap's signature holds, the
    grant it names is a real event of the log, but not kemlu's consent of this case
    naming kp2mi with a reading scope."""
    log = MemoryLog()
    log.add(seq, _signer(signer), event_type, data, case_id=case_id)
    with pytest.raises(WrapUnverified, match="grant does not hold"):
        await _open(_wrap(grant=f"seq:{seq}"), log)


async def test_a_grant_counts_only_signed_by_its_source() -> None:
    """kemlu's consent naming kp2mi, but signed with dukcapil's key: not kemlu's."""
    log = MemoryLog()
    log.add(
        2,
        Signer("kemlu", SIGNING["dukcapil"]),
        "consent.recorded",
        consent(["kp2mi"]),
        case_id=CASE,
    )
    with pytest.raises(WrapUnverified, match="no admitted consent"):
        await _open(_wrap(), log)


async def test_a_withdrawn_consent_or_an_erased_case_grants_no_key() -> None:
    for event_type, data in (
        ("consent.withdrawn", {"consent_id": "consent-1", "reason": "moved"}),
        ("case.erased", SAMPLES["case.erased"]),
    ):
        log = _log()
        log.add(5, _signer("kemlu"), event_type, data, case_id=CASE)
        with pytest.raises(WrapUnverified, match=r"withdrawn|erased"):
            await _open(_wrap(), log)


async def test_the_grant_is_read_once_per_case_key() -> None:
    log = _log()
    grants = GrantCheck(log, VERIFIER)
    for _ in range(3):
        key = await open_wrap(
            _wrap(), KP2MI, VERIFIER, grants, case_id=CASE, gen=1, recipient="kp2mi"
        )
        assert key == KEY
    assert log.reads == 2  # the case's broadcasts, and the empty page after them
    # Another grant named for the same key is checked afresh.
    await open_wrap(
        _wrap(grant="seq:9"), KP2MI, VERIFIER, grants, case_id=CASE, gen=1, recipient="kp2mi"
    )
    assert log.reads == 4


async def test_a_recipient_s_own_first_wrap_reads_no_log() -> None:
    log = MemoryLog()
    own = make_wrap(
        Signer("kemlu", SIGNING["kemlu"]),
        KEY,
        KP2MI.public_key(),
        kid="kemlu:x",
        case_id=CASE,
        gen=1,
        recipient="kemlu",
        grant="made",
    )
    grants = GrantCheck(log, VERIFIER)
    assert (
        await open_wrap(own, KP2MI, VERIFIER, grants, case_id=CASE, gen=1, recipient="kemlu") == KEY
    )
    assert log.reads == 0


async def test_a_maker_s_key_published_just_after_the_verifier_s_read_is_waited_for() -> None:
    """The maker's key came into the registry a moment after the recipient's verifier read
    it: the verifier reads again when its interval allows (Verifier.check_document), and
    the wrap opens rather than being refused for good."""
    reads: list[str] = []

    async def refresh() -> Registry:
        reads.append("read")
        return VERIFIER.registry if len(reads) > 1 else Registry()

    verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=0.2)
    assert await verifier.learn()  # the key not published yet
    grants = GrantCheck(_log(), verifier)
    opened = await open_wrap(
        _wrap(), KP2MI, verifier, grants, case_id=CASE, gen=1, recipient="kp2mi"
    )
    assert opened == KEY
    assert reads == ["read", "read"]
