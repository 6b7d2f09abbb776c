"""The key buckets are replicated like the event stream (issue 23: LINTAS_KEYS and
LINTAS_EXCHANGE_KEYS stayed R1 on an R3 cluster), on a real three-node cluster."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
import nats.errors
import pytest
from rich.console import Console

from lintas.cli._keys import _publish_keys
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import register_keys
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import (
    EXCHANGE_BUCKET,
    KEYS_BUCKET,
    TopologyConflict,
    TopologyRefused,
    case_keys_stream,
    declare_platform,
    ensure_key_buckets,
    open_key_bucket,
)
from lintas.infra.settings import Settings
from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.nats

BUCKETS = (f"KV_{KEYS_BUCKET}", f"KV_{EXCHANGE_BUCKET}", case_keys_stream())


async def _quiet(_exc: Exception) -> None:
    pass


async def test_every_key_bucket_has_the_stream_s_replicas_on_a_cluster(
    tmp_path: Path, settings: Settings
) -> None:
    settings = settings.model_copy(update={"stream_replicas": 3})
    async with asyncio.timeout(120), LoopbackCluster(tmp_path / "cluster") as cluster:
        await cluster.wait_formed(30)
        nc = await nats.connect(cluster.urls, error_cb=_quiet)
        try:
            js = nc.jetstream()
            # A cluster just formed, on a loaded machine, may leave a create unanswered or
            # see a peer offline for a moment. Declaring again is idempotent.
            for attempt in range(5):
                try:
                    await declare_platform(js, settings, [])
                    break
                except (BusUnavailable, TopologyRefused):
                    if attempt == 4:
                        raise
                    await cluster.wait_formed(30)
            await register_keys(settings, js)
            for name in BUCKETS:
                assert (await js.stream_info(name)).config.num_replicas == 3, name
            # Declared again: unchanged.
            assert set((await ensure_key_buckets(js, settings)).values()) == {"unchanged"}
        finally:
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()


async def test_a_key_bucket_made_with_fewer_replicas_is_a_conflict(
    nats_server: object, js: object, settings: Settings
) -> None:
    """Made R1 earlier (a ``lintas keys publish`` before the platform declared): the
    platform says so instead of running on a registry the log outlives."""
    await open_key_bucket(js, KEYS_BUCKET, 1)
    with pytest.raises(TopologyConflict, match="num_replicas"):
        await ensure_key_buckets(js, settings.model_copy(update={"stream_replicas": 2}))


async def test_keys_publish_on_a_cluster_the_platform_never_set_up_makes_the_buckets_r3(
    tmp_path: Path, settings: Settings
) -> None:
    """``lintas keys publish`` before ``lintas up``: it made the key buckets R1, and the
    platform then refused to start (a conflict). It makes them as the platform does now."""
    async with asyncio.timeout(120), LoopbackCluster(tmp_path / "cluster") as cluster:
        await cluster.wait_formed(30)
        settings = settings.model_copy(update={"stream_replicas": 3, "nats_url": cluster.urls[0]})
        for attempt in range(5):  # a cluster just formed may see a peer offline a moment
            try:
                assert await _publish_keys(settings, Console(file=None, quiet=True)) == 0
                break
            except (BusUnavailable, TopologyRefused):
                if attempt == 4:
                    raise
                await cluster.wait_formed(30)
        nc = await nats.connect(cluster.urls, error_cb=_quiet)
        try:
            js = nc.jetstream()
            for name in BUCKETS[:2]:
                assert (await js.stream_info(name)).config.num_replicas == 3, name
            assert set((await ensure_key_buckets(js, settings)).values()) == {"unchanged"}
        finally:
            with contextlib.suppress(nats.errors.Error, OSError):
                await nc.close()


async def test_keys_publish_refuses_key_buckets_made_with_fewer_replicas(
    nats_server: EmbeddedNats, js: object, settings: Settings
) -> None:
    """Made R1 earlier (by a ``keys publish`` before this fix): said, not written into."""
    for bucket in (KEYS_BUCKET, EXCHANGE_BUCKET):
        await open_key_bucket(js, bucket, 1)
    settings = settings.model_copy(update={"stream_replicas": 2, "nats_url": nats_server.url})
    with pytest.raises(TopologyConflict, match="num_replicas"):
        await _publish_keys(settings, Console(file=None, quiet=True))
