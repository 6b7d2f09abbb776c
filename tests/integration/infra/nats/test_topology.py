"""Stream and consumer declarations against a real JetStream."""

from __future__ import annotations

import re
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo, StreamSource

from lintas.contracts.subjects import inbound_filters
from lintas.infra.errors import BusUnavailable
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import (
    TopologyConflict,
    TopologyNotApplied,
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
from lintas.infra.settings import Settings

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


# --- the full configuration is compared ---------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "differences"),
    [
        (
            {"max_age": 3600, "max_msgs": 100, "max_msgs_per_subject": 1},
            {"max_age": (3600.0, None), "max_msgs": (100, None), "max_msgs_per_subject": (1, None)},
        ),
        (
            {"max_bytes": 1 << 20, "max_msg_size": 1024},
            {"max_bytes": (1 << 20, None), "max_msg_size": (1024, None)},
        ),
        ({"storage": "memory", "num_replicas": 1}, {"storage": ("memory", "file")}),
        (
            {"allow_direct": False, "deny_delete": False},
            {"allow_direct": (False, True), "deny_delete": (False, True)},
        ),
        # A rollup header would purge a subject, a TTL header expire a message: not append-only.
        (
            {"allow_rollup_hdrs": True, "deny_purge": False},
            {"deny_purge": (False, True), "allow_rollup_hdrs": (True, False)},
        ),
        ({"allow_msg_ttl": True}, {"allow_msg_ttl": (True, False)}),
        ({"no_ack": True}, {"no_ack": (True, False)}),
    ],
    ids=[
        "age-msgs-per-subject",
        "bytes-msg-size",
        "storage",
        "direct-delete",
        "rollup",
        "ttl",
        "no-ack",
    ],
)
async def test_a_stream_with_other_limits_or_flags_is_a_conflict(
    js: JetStreamContext,
    settings: Settings,
    changes: dict[str, Any],
    differences: dict[str, tuple[object, object]],
) -> None:
    await js.add_stream(stream_config(settings), **changes)
    with pytest.raises(TopologyConflict, match="stream 'LINTAS'") as caught:
        await ensure_stream(js, settings)
    assert caught.value.differences == differences


async def test_a_stream_that_also_sources_another_is_a_conflict(
    js: JetStreamContext, settings: Settings
) -> None:
    await js.add_stream(name="ELSEWHERE", subjects=["elsewhere.>"])
    await js.add_stream(stream_config(settings), sources=[StreamSource(name="ELSEWHERE")])
    with pytest.raises(TopologyConflict) as caught:
        await ensure_stream(js, settings)
    assert caught.value.differences == {"sources": (["ELSEWHERE"], [])}


@pytest.mark.parametrize(
    ("changes", "differences"),
    [
        # Every message would arrive without its body, and look like "not JSON".
        ({"headers_only": True}, {"headers_only": (True, False)}),
        ({"deliver_policy": "new"}, {"deliver_policy": ("new", "all")}),
        (
            {"deliver_policy": "by_start_sequence", "opt_start_seq": 7},
            {"deliver_policy": ("by_start_sequence", "all"), "opt_start_seq": (7, None)},
        ),
        (
            {"max_deliver": -1, "max_ack_pending": 1},
            {"max_deliver": (None, 5), "max_ack_pending": (1, 64)},
        ),
        ({"replay_policy": "original"}, {"replay_policy": ("original", "instant")}),
        # The server then takes the first backoff as ack_wait.
        (
            {"backoff": [1, 5], "max_deliver": 5},
            {"ack_wait": (1.0, 7.5), "backoff": ([1.0, 5.0], None)},
        ),
        ({"sample_freq": "50%"}, {"sample_freq": ("50%", None)}),
        ({"inactive_threshold": 3600}, {"inactive_threshold": (3600.0, None)}),
        # A push consumer: nothing pulls it, the server pushes at whoever listens there.
        ({"deliver_subject": "somewhere.else"}, {"deliver_subject": ("somewhere.else", None)}),
    ],
    ids=[
        "headers-only",
        "deliver-new",
        "start-seq",
        "limits",
        "replay",
        "backoff",
        "sample",
        "inactive",
        "push",
    ],
)
async def test_a_consumer_with_other_delivery_is_a_conflict(
    js: JetStreamContext,
    settings: Settings,
    changes: dict[str, Any],
    differences: dict[str, tuple[object, object]],
) -> None:
    await ensure_stream(js, settings)
    spec = record_consumer()
    await js.add_consumer(settings.stream, consumer_config(spec, settings), **changes)
    with pytest.raises(TopologyConflict, match="consumer 'record'") as caught:
        await ensure_consumer(js, settings.stream, spec, settings)
    assert caught.value.differences == differences


async def test_staff_consumers_see_only_what_is_published_after_them(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    before = "lintas.kemlu.kp2mi.case.opened.C1"
    after = "lintas.kemlu.kp2mi.case.opened.C2"
    await js.publish(before, b"{}")
    spec = staff_consumer("kp2mi")
    assert await ensure_consumer(js, settings.stream, spec, settings) == "created"
    assert (await js.consumer_info(settings.stream, spec.name)).config.deliver_policy == "new"
    await js.publish(after, b"{}")

    sub = await js.pull_subscribe_bind(spec.name, settings.stream)
    msgs = await sub.fetch(10, timeout=1)
    assert [m.subject for m in msgs] == [after]
    assert await ensure_consumer(js, settings.stream, spec, settings) == "unchanged"


async def test_a_staff_consumer_that_replays_history_is_a_conflict(
    js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(js, settings)
    spec = staff_consumer("kp2mi")
    await js.add_consumer(settings.stream, consumer_config(spec, settings), deliver_policy="all")
    with pytest.raises(TopologyConflict) as caught:
        await ensure_consumer(js, settings.stream, spec, settings)
    assert caught.value.differences == {"deliver_policy": ("all", "new")}


# --- what the server made of a create -----------------------------------------------------


async def test_a_consumer_created_without_its_filters_is_refused(
    js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What nats-server < 2.10 does: it ignores filter_subjects, and reads everything."""
    await ensure_stream(js, settings)
    real_add_consumer = js.add_consumer

    async def old_server_add_consumer(stream: str, config: Any = None, **kw: Any) -> ConsumerInfo:
        info = await real_add_consumer(stream, config, **kw)
        info.config.filter_subjects = None
        return info

    monkeypatch.setattr(js, "add_consumer", old_server_add_consumer)
    spec = agency_consumer("kp2mi")
    with pytest.raises(TopologyNotApplied, match="consumer 'agency-kp2mi'") as caught:
        await ensure_consumer(js, settings.stream, spec, settings)
    assert isinstance(caught.value, TopologyConflict)
    assert caught.value.differences == {"filter_subjects": ([], sorted(inbound_filters("kp2mi")))}
    assert "2.10" in str(caught.value)


async def test_a_stream_created_without_a_guarantee_is_refused(
    js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_add_stream = js.add_stream

    async def lax_add_stream(config: Any = None, **kw: Any) -> StreamInfo:
        info = await real_add_stream(config, **kw)
        info.config.deny_purge = False
        return info

    monkeypatch.setattr(js, "add_stream", lax_add_stream)
    with pytest.raises(TopologyNotApplied, match="stream 'LINTAS'") as caught:
        await ensure_stream(js, settings)
    assert caught.value.differences == {"deny_purge": (False, True)}


async def test_more_replicas_than_servers_is_refused_clearly(
    js: JetStreamContext, settings: Settings
) -> None:
    from lintas.infra.nats.topology import TopologyRefused

    with pytest.raises(TopologyRefused, match=r"refused to create stream LINTAS.*REPLICAS"):
        await ensure_stream(js, settings.model_copy(update={"stream_replicas": 3}))
