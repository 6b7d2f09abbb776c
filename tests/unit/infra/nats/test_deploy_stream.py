"""The production stream settings (docs/DURABILITY.md), without a broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lintas.infra.nats.topology import stream_config, stream_differences
from lintas.infra.settings import Settings


@pytest.fixture(autouse=True)
def _no_lintas_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LINTAS_STREAM_REPLICAS", "LINTAS_DUPLICATE_WINDOW_S", "LINTAS_STREAM"):
        monkeypatch.delenv(name, raising=False)


def test_one_replica_by_default_for_the_embedded_single_server() -> None:
    assert Settings().stream_replicas == 1
    assert stream_config(Settings()).num_replicas == 1


def test_lintas_stream_replicas_makes_the_stream_r3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_STREAM_REPLICAS", "3")
    cfg = stream_config(Settings())
    assert cfg.num_replicas == 3


@pytest.mark.parametrize("replicas", [0, 6])
def test_replicas_jetstream_cannot_have_are_refused(replicas: int) -> None:
    with pytest.raises(ValidationError):
        Settings(stream_replicas=replicas)


def test_the_audit_log_is_kept_whole() -> None:
    """File storage, nothing aged out or capped, no delete, no purge, no rollup, no TTL."""
    cfg = stream_config(Settings(stream_replicas=3))
    assert str(cfg.storage.value if cfg.storage else None) == "file"
    assert (cfg.deny_delete, cfg.deny_purge) == (True, True)
    assert not cfg.allow_rollup_hdrs
    assert not cfg.allow_msg_ttl
    assert not cfg.max_age
    assert not cfg.max_msgs
    assert not cfg.max_bytes
    assert cfg.duplicate_window == 120.0


def test_an_r1_stream_is_not_silently_taken_for_r3() -> None:
    """Scaling an existing stream is an operator's deliberate act: declare reports it."""
    r1 = stream_config(Settings())
    r3 = stream_config(Settings(stream_replicas=3))
    assert stream_differences(r1, r3) == {"num_replicas": (1, 3)}
