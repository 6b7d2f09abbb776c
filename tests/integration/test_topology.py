"""Stream and consumer declarations against a real JetStream."""

from __future__ import annotations

import re

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from lintas.contracts.subjects import inbound_filters
from lintas.infra.embedded import EmbeddedNats
from lintas.infra.errors import BusUnavailable
from lintas.infra.settings import Settings
from lintas.infra.topology import (
    TopologyConflict,
    agency_consumer,
    agency_sent_consumer,
    consumer_config,
    declare,
    ensure_consumer,
    ensure_stream,
    record_consumer,
    staff_consumer,
    stream_config,
)

pytestmark = pytest.mark.nats

SPECS = (
    agency_consumer("kp2mi"),
    agency_sent_consumer("kp2mi"),
    record_consumer(),
    staff_consumer("kp2mi"),
)
SUBJECT = "lintas.kemlu.kp2mi.case.opened.C1"  # the stream takes any lintas.> subject


async def test_declaring_twice_changes_nothing_the_second_time(
    js: JetStreamContext, settings: Settings
) -> None:
    names = [settings.stream, *(spec.name for spec in SPECS)]
    assert await declare(js, settings, SPECS) == dict.fromkeys(names, "created")
    assert await declare(js, settings, SPECS) == dict.fromkeys(names, "unchanged")


async def test_the_stream_is_append_only_and_deduplicating(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    cfg = (await js.stream_info(settings.stream)).config
    assert cfg.subjects == ["lintas.>"]
    assert cfg.deny_delete is True
    assert cfg.deny_purge is True
    assert cfg.duplicate_window == settings.duplicate_window_s
    assert (cfg.storage, cfg.retention, cfg.discard) == ("file", "limits", "old")
    assert cfg.allow_direct is True


async def test_consumers_are_declared_as_specified(
    js: JetStreamContext, settings: Settings
) -> None:
    await declare(js, settings, SPECS)
    inbox = (await js.consumer_info(settings.stream, "agency-kp2mi")).config
    assert inbox.durable_name == "agency-kp2mi"
    assert inbox.filter_subjects == inbound_filters("kp2mi")
    assert (inbox.ack_policy, inbox.deliver_policy, inbox.replay_policy) == (
        "explicit",
        "all",
        "instant",
    )
    assert inbox.ack_wait == settings.ack_wait_s
    assert inbox.max_deliver == settings.max_deliver
    assert inbox.max_ack_pending == 4 * settings.batch_size

    sent = (await js.consumer_info(settings.stream, "sent-kp2mi")).config
    assert sent.filter_subject == "lintas.kp2mi.>"
    record = (await js.consumer_info(settings.stream, "record")).config
    assert record.filter_subject == "lintas.>"
    staff = (await js.consumer_info(settings.stream, "staff-kp2mi")).config
    assert staff.filter_subjects == inbound_filters("kp2mi")


async def test_a_consumer_with_another_filter_is_a_conflict_left_alone(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    spec = agency_consumer("kp2mi")
    other = consumer_config(spec, settings)
    other.filter_subjects, other.filter_subject = None, "lintas.*.kemlu.>"
    await js.add_consumer(settings.stream, other)

    with pytest.raises(TopologyConflict) as caught:
        await declare(js, settings, SPECS)
    assert caught.value.differences == {
        "filter_subjects": (["lintas.*.kemlu.>"], sorted(inbound_filters("kp2mi")))
    }
    assert "consumer 'agency-kp2mi'" in str(caught.value)
    assert "filter_subjects" in str(caught.value)
    kept = (await js.consumer_info(settings.stream, spec.name)).config
    assert kept.filter_subject == "lintas.*.kemlu.>"


async def test_a_consumer_with_another_ack_wait_is_a_conflict(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    spec = record_consumer()
    await js.add_consumer(settings.stream, consumer_config(spec, settings), ack_wait=99)

    with pytest.raises(
        TopologyConflict, match=re.escape("ack_wait: existing 99.0, wanted 7.5")
    ) as caught:
        await ensure_consumer(js, settings.stream, spec, settings)
    assert set(caught.value.differences) == {"ack_wait"}
    assert (await js.consumer_info(settings.stream, spec.name)).config.ack_wait == 99


async def test_a_stream_with_another_config_is_a_conflict(
    js: JetStreamContext, settings: Settings
) -> None:
    await js.add_stream(stream_config(settings), duplicate_window=5, deny_purge=False)
    with pytest.raises(TopologyConflict, match="stream 'LINTAS'") as caught:
        await ensure_stream(js, settings)
    assert caught.value.differences == {
        "duplicate_window": (5.0, settings.duplicate_window_s),
        "deny_purge": (False, True),
    }


async def test_a_stream_created_meanwhile_with_another_config_is_a_conflict(
    js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between our look-up and our create, another process declared it differently."""
    await js.add_stream(stream_config(settings), duplicate_window=5)
    real_stream_info = js.stream_info
    calls = 0

    async def not_there_at_first(name: str) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise nats.js.errors.NotFoundError(code=404, err_code=10059)
        return await real_stream_info(name)

    monkeypatch.setattr(js, "stream_info", not_there_at_first)
    with pytest.raises(TopologyConflict) as caught:
        await ensure_stream(js, settings)
    assert set(caught.value.differences) == {"duplicate_window"}
    assert calls == 2


async def test_a_message_id_is_stored_once(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, settings)
    first = await js.publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": "evt-1"})
    second = await js.publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": "evt-1"})
    assert not first.duplicate
    assert second.duplicate is True
    assert second.seq == first.seq
    assert (await js.stream_info(settings.stream)).state.messages == 1


async def test_the_stream_refuses_delete_and_purge(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    ack = await js.publish(SUBJECT, b"evidence")
    with pytest.raises(nats.js.errors.APIError):
        await js.delete_msg(settings.stream, ack.seq)
    with pytest.raises(nats.js.errors.APIError):
        await js.purge_stream(settings.stream)
    assert (await js.get_msg(settings.stream, ack.seq)).data == b"evidence"


async def test_a_lost_connection_is_bus_unavailable(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await nc.close()
    with pytest.raises(BusUnavailable, match="declaring stream LINTAS"):
        await ensure_stream(js, settings)
    with pytest.raises(BusUnavailable):
        await ensure_consumer(js, settings.stream, record_consumer(), settings)
