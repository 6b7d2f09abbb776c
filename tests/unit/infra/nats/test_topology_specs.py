"""Consumer specs and configs, without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from lintas.contracts.errors import SubjectError
from lintas.infra.nats.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    consumer_config,
    consumer_differences,
    record_consumer,
    staff_consumer,
    stream_config,
    stream_differences,
)
from lintas.infra.settings import Settings

NS = 1_000_000_000


def test_consumer_names_are_valid_jetstream_names() -> None:
    for spec in (
        agency_consumer("desa-3201010001"),
        agency_sent_consumer("my-jkm"),
        record_consumer(),
        staff_consumer("kp2mi"),
    ):
        assert "." not in spec.name
        assert spec.filter_subjects


@pytest.mark.parametrize("name", ["agency.kp2mi", "a b", "*", ""])
def test_an_invalid_consumer_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="consumer name"):
        ConsumerSpec(name, ("lintas.>",))


def test_a_consumer_for_a_non_agency_is_refused() -> None:
    with pytest.raises(SubjectError):
        agency_consumer("all")


def test_one_filter_uses_filter_subject_several_use_filter_subjects() -> None:
    settings = Settings()
    single = consumer_config(agency_sent_consumer("kp2mi"), settings)
    assert (single.filter_subject, single.filter_subjects) == ("lintas.kp2mi.>", None)
    several = consumer_config(agency_consumer("kp2mi"), settings)
    assert several.filter_subject is None
    assert several.filter_subjects == ["lintas.*.kp2mi.>", "lintas.*.all.>"]


def test_staff_see_only_new_events_and_projections_the_whole_history() -> None:
    settings = Settings()
    staff = staff_consumer("kp2mi")
    assert staff.deliver_new is True
    assert consumer_config(staff, settings).deliver_policy == DeliverPolicy.NEW
    for spec in (agency_consumer("kp2mi"), agency_sent_consumer("kp2mi"), record_consumer()):
        assert spec.deliver_new is False
        assert consumer_config(spec, settings).deliver_policy == DeliverPolicy.ALL


def _stream_as_served(**changes: Any) -> StreamConfig:
    """The stream config of ``stream_config(Settings())`` in the server's own words."""
    resp: dict[str, Any] = {
        "name": "LINTAS",
        "subjects": ["lintas.>"],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "discard": "old",
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
        "storage": "file",
        "num_replicas": 1,
        "duplicate_window": 120 * NS,
        "sealed": False,
        "deny_delete": True,
        "deny_purge": True,
        "allow_rollup_hdrs": False,
        "allow_direct": True,
        "mirror_direct": False,
        "compression": "none",
        "metadata": {"_nats.ver": "2.15.1"},
    }
    return StreamConfig.from_response({**resp, **changes})


def test_the_servers_unlimited_and_nanoseconds_equal_our_defaults() -> None:
    assert stream_differences(_stream_as_served(), stream_config(Settings())) == {}


def test_stream_limits_are_differences() -> None:
    served = _stream_as_served(max_age=3600 * NS, max_msgs=100, max_msgs_per_subject=1)
    assert stream_differences(served, stream_config(Settings())) == {
        "max_age": (3600.0, None),
        "max_msgs": (100, None),
        "max_msgs_per_subject": (1, None),
    }


def test_a_mirror_is_a_difference() -> None:
    served = _stream_as_served(subjects=None, mirror={"name": "UPSTREAM"})
    assert stream_differences(served, stream_config(Settings())) == {
        "subjects": ([], ["lintas.>"]),
        "mirror": ("UPSTREAM", None),
    }


def _consumer_as_served(**changes: Any) -> ConsumerConfig:
    """``consumer_config(record_consumer(), Settings())`` in the server's own words."""
    resp: dict[str, Any] = {
        "name": "record",
        "durable_name": "record",
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": 30 * NS,
        "max_deliver": 20,
        "filter_subject": "lintas.>",
        "replay_policy": "instant",
        "max_waiting": 512,
        "max_ack_pending": 1024,
        "num_replicas": 0,
    }
    return ConsumerConfig.from_response({**resp, **changes})


def test_a_consumer_as_served_equals_ours() -> None:
    want = consumer_config(record_consumer(), Settings())
    assert consumer_differences(_consumer_as_served(), want) == {}
    # The one filter in the list form is the same filter.
    served = _consumer_as_served(filter_subject=None, filter_subjects=["lintas.>"])
    assert consumer_differences(served, want) == {}


def test_consumer_delivery_differences() -> None:
    want = consumer_config(record_consumer(), Settings())
    served = _consumer_as_served(
        headers_only=True, deliver_policy="new", backoff=[NS, 2 * NS], max_deliver=-1
    )
    assert consumer_differences(served, want) == {
        "headers_only": (True, False),
        "deliver_policy": ("new", "all"),
        "backoff": ([1.0, 2.0], None),
        "max_deliver": (None, 20),
    }


def test_a_start_sequence_matters_only_when_delivering_from_it() -> None:
    want = consumer_config(record_consumer(), Settings())
    assert consumer_differences(_consumer_as_served(opt_start_seq=0), want) == {}
    served = _consumer_as_served(deliver_policy="by_start_sequence", opt_start_seq=9)
    assert consumer_differences(served, want) == {
        "deliver_policy": ("by_start_sequence", "all"),
        "opt_start_seq": (9, None),
    }


def test_max_waiting_is_compared_only_when_we_set_it() -> None:
    want = consumer_config(record_consumer(), Settings())
    assert consumer_differences(_consumer_as_served(max_waiting=1), want) == {}
    want.max_waiting = 512
    assert consumer_differences(_consumer_as_served(max_waiting=1), want) == {
        "max_waiting": (1, 512)
    }


def test_a_nats_url_may_list_a_clusters_nodes() -> None:
    from lintas.infra.nats.bus import servers

    assert servers("nats://a:4222") == ["nats://a:4222"]
    assert servers("nats://a:4222, nats://b:4222,nats://c:4222,") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]
