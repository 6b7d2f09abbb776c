"""Which stream settings let events leave the log, or never get in (one pure rule)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from lintas.infra.nats.topology import (
    checkpoints_config,
    dropping_settings,
    kept_streams,
    quarantine_config,
    stream_config,
)
from lintas.infra.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_what_lintas_declares_keeps_every_event(settings: Settings) -> None:
    assert dropping_settings(stream_config(settings)) == []
    assert dropping_settings(checkpoints_config(settings)) == []
    assert stream_config(settings).allow_rollup_hdrs is False
    assert kept_streams(settings) == ("LINTAS", "LINTAS_CHECKPOINTS")
    # The quarantine lets retried entries go: not one of the kept streams.
    assert dropping_settings(quarantine_config(settings)) == [
        "deny_delete=false (events may be deleted)"
    ]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"max_age": 1.0}, "max_age=1s"),
        (
            {"max_msgs": 100},
            "max_msgs=100 with discard=old (past it the oldest events are removed)",
        ),
        (
            {"max_bytes": 1 << 20, "discard": DiscardPolicy.NEW},
            "max_bytes=1.04858e+06 with discard=new (past it new events are refused)",
        ),
        ({"max_msgs_per_subject": 1}, "max_msgs_per_subject=1 (a case's older events are removed)"),
        (
            {
                "max_msgs_per_subject": 5,
                "discard": DiscardPolicy.NEW,
                "discard_new_per_subject": True,
            },
            "max_msgs_per_subject=5 (a case's new events are refused)",
        ),
        ({"max_msg_size": 4096}, "max_msg_size=4096"),
        ({"retention": RetentionPolicy.WORK_QUEUE}, "retention=workqueue"),
        ({"retention": RetentionPolicy.INTEREST}, "retention=interest"),
        ({"storage": StorageType.MEMORY}, "storage=memory"),
        ({"deny_delete": False}, "deny_delete=false"),
        ({"deny_purge": None}, "deny_purge=false"),
        ({"allow_rollup_hdrs": True}, "allow_rollup_hdrs=true"),
        ({"allow_msg_ttl": True}, "allow_msg_ttl=true"),
        ({"sealed": True}, "sealed=true"),
    ],
)
def test_each_setting_that_can_lose_events_is_named(
    settings: Settings, change: dict[str, object], named: str
) -> None:
    for config in (stream_config(settings), checkpoints_config(settings)):
        found = dropping_settings(replace(config, **change))  # type: ignore[arg-type]
        assert len(found) == 1, found
        assert found[0].startswith(named), found


def test_discard_alone_and_unlimited_values_lose_nothing(settings: Settings) -> None:
    config = stream_config(settings)
    for change in (
        {"discard": DiscardPolicy.NEW},
        {"max_age": 0.0, "max_msgs": -1, "max_bytes": 0, "max_msgs_per_subject": -1},
        {"max_msg_size": -1, "num_replicas": 3, "no_ack": False},
    ):
        assert dropping_settings(replace(config, **change)) == [], change  # type: ignore[arg-type]


def test_as_the_server_reports_it(settings: Settings) -> None:
    served = StreamConfig.from_response(
        {
            "name": "LINTAS",
            "subjects": ["lintas.>"],
            "retention": "limits",
            "max_age": 3_600_000_000_000,  # nanoseconds
            "max_msgs": -1,
            "max_bytes": -1,
            "max_msg_size": -1,
            "max_msgs_per_subject": -1,
            "discard": "old",
            "storage": "file",
            "deny_delete": True,
            "deny_purge": True,
        }
    )
    assert dropping_settings(served) == ["max_age=3600s (older events are removed)"]
