"""Signatures on a real bus: only what its source agency signed is applied."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from lintas.consumers.quarantine import list_entries
from lintas.contracts import SignatureError, new_case_id
from lintas.infra.keys.signing import (
    Registry,
    Signer,
    SigningKeyError,
    Verifier,
    init_agency_key,
    load_registry,
    private_key_path,
    publish_registry,
)
from lintas.infra.nats.bus import registry_source
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import Applied, declare_record, publish_case, signed, start_record

pytestmark = pytest.mark.nats


def test_keys_init_writes_a_private_key_only_its_owner_can_read(settings: Settings) -> None:
    entry = init_agency_key(settings, "dukcapil")
    path = private_key_path(settings, "dukcapil")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert entry.keyid.startswith("dukcapil:")
    assert load_registry(settings).get(entry.keyid) is not None
    with pytest.raises(SigningKeyError, match="do not overwrite"):
        init_agency_key(settings, "dukcapil")
    with pytest.raises(SigningKeyError, match="not an agency id"):
        init_agency_key(settings, "nobody")


def test_a_publisher_cannot_sign_for_another_agency(settings: Settings) -> None:
    init_agency_key(settings, "kemlu")
    with pytest.raises(SignatureError, match="kemlu's key cannot sign what dukcapil publishes"):
        Publisher(None, "dukcapil", signer=Signer.load(settings, "kemlu"))


async def test_only_events_signed_by_their_source_are_applied(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    case_id = await publish_case(kemlu, steps=1, kp2mi=kp2mi)  # seq 1, 2: good
    opened = json.loads((await js.get_msg(settings.stream, 1)).data or b"")
    subject = f"lintas.kemlu.kp2mi.case.opened.{case_id}"

    tampered = dict(opened, data={**opened["data"], "risk_level": "low"})  # 3
    unsigned = {k: v for k, v in opened.items() if k not in ("signature", "keyid")}  # 4
    for body in (tampered, unsigned):
        await js.publish(subject, json.dumps(body).encode(), stream=settings.stream)
    # kp2mi signs an event claiming to come from kemlu: its key, someone else's name.
    impostor = Publisher(js, "kemlu", stream=settings.stream)  # 5
    impostor.signer = Signer.load(settings, "kp2mi")
    request = {"request_id": "doc-x", "kind": "nik"}
    with pytest.raises(SignatureError):  # the Publisher itself refuses to do it ...
        await impostor.publish("document.requested", request, case_id=case_id, target="kp2mi")
    forged = dict(opened, keyid=Signer.load(settings, "kp2mi").keyid)  # ... so forge it by hand
    await js.publish(subject, json.dumps(forged).encode(), stream=settings.stream)
    await kemlu.publish("document.requested", request, case_id=case_id, target="kp2mi")  # 6

    applied = Applied()
    verifier = Verifier(load_registry(settings))
    with capture_logs():
        stop, databases = await start_record(nats_server.url, settings, [applied], verifier)
        try:
            await applied.wait_for(3)
        finally:
            await stop()
    databases.dispose()
    assert [seq for seq, _ in applied.events] == [1, 2, 6]
    reasons = {e.stream_seq: e.reason async for e in list_entries(js, settings)}
    assert set(reasons) == {3, 4, 5}
    assert "signature does not match" in reasons[3]
    assert "is not signed" in reasons[4]
    assert "signed with kp2mi's key" in reasons[5]


async def test_a_consumer_trusts_keys_published_to_the_kv_bucket(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, tmp_path: object
) -> None:
    """An agency's key made elsewhere reaches a consumer through JetStream KV alone."""
    from pathlib import Path

    from lintas.infra.keys.signing import publish_registry, registry_from_kv, trusted_registry

    elsewhere = settings.model_copy(update={"data_dir": Path(str(tmp_path)) / "elsewhere"})
    assert await registry_from_kv(js) is not None  # no bucket yet: empty, not an error
    assert (await registry_from_kv(js)).entries() == []
    kemlu = signed(js, elsewhere, "kemlu")  # key made in another data dir
    assert await publish_registry(js, load_registry(elsewhere)) == 1

    assert load_registry(settings).entries() == []  # this data dir knows nothing of it ...
    registry = await trusted_registry(settings, js)  # ... but the bucket does
    assert [e.agency for e in registry.entries()] == ["kemlu"]

    await declare_record(js, settings)
    await kemlu.publish(
        "case.opened",
        {
            "situation": "neglected",
            "location": {"country": "ID"},
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
        },
        case_id=new_case_id(),
        target="kp2mi",
    )
    applied = Applied()
    stop, databases = await start_record(nats_server.url, settings, [applied], Verifier(registry))
    try:
        await applied.wait_for(1)
    finally:
        await stop()
    databases.dispose()
    assert [e async for e in list_entries(js, settings)] == []


async def test_a_running_consumer_learns_a_key_published_after_it_started(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    """A consumer meeting a key id it lacks reads the registry afresh (once per interval):
    KemLu's key, published while it runs, counts; a key no registry holds is still
    quarantined, without a second read."""
    await declare_record(js, settings)
    source = registry_source(nats_server.url, settings, "platform")
    reads: list[int] = []

    async def refresh() -> Registry:
        registry = await source()
        reads.append(len(registry.entries()))
        return registry

    applied = Applied()
    verifier = Verifier(Registry(), refresh=refresh, refresh_interval_s=3600)
    stop, databases = await start_record(nats_server.url, settings, [applied], verifier)
    try:
        elsewhere = settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
        kemlu = signed(js, elsewhere, "kemlu")  # made in another data dir, after the start
        await publish_registry(js, load_registry(elsewhere))
        await publish_case(kemlu, steps=0)  # seq 1
        stranger = Signer("kemlu", Ed25519PrivateKey.generate())  # in no registry
        await publish_case(Publisher(js, "kemlu", stream=settings.stream, signer=stranger), steps=0)
        await publish_case(kemlu, steps=0)  # seq 3
        await applied.wait_for(2)
    finally:
        await stop()
    databases.dispose()
    assert [seq for seq, _ in applied.events] == [1, 3]
    reasons = {e.stream_seq: e.reason async for e in list_entries(js, settings)}
    assert set(reasons) == {2}
    assert "is not in the registry" in reasons[2]
    assert reads == [1]
