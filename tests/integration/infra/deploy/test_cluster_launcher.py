"""tests.support.cluster.LoopbackCluster: the shipped cluster configs, run on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import nats
import nats.errors
import pytest

from tests.support.cluster import CLUSTER_CONFIGS, ClusterError, LoopbackCluster, read_node_config

pytestmark = [pytest.mark.nats, pytest.mark.slow]

SHIPPED_PORTS = {
    int(port)
    for path in CLUSTER_CONFIGS
    for port in re.findall(r"127\.0\.0\.1:(\d+)", path.read_text())
}


async def _quiet(_exc: Exception) -> None:
    pass


async def test_the_shipped_cluster_forms_on_free_ports_and_survives_a_follower(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(45), LoopbackCluster(tmp_path) as cluster:
        assert list(cluster.nodes) == ["lintas-n1", "lintas-n2", "lintas-n3"]
        for node in cluster.nodes.values():
            assert node.client_port not in SHIPPED_PORTS
            assert node.http_port not in SHIPPED_PORTS
            varz = await node.varz()
            assert varz["server_name"] == node.name
            assert varz["cluster"]["name"] == "lintas"
            assert varz["jetstream"]["config"]["sync_always"] is True
            assert varz["jetstream"]["config"]["store_dir"].startswith(str(node.store_dir))

        leader = await cluster.meta_leader()
        follower = next(name for name in cluster.nodes if name != leader)

        # One seed URL is enough once connected: the cluster tells the client the others.
        seed = cluster.node(follower).url
        reconnected, discovered = asyncio.Event(), asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        async def on_discovered() -> None:
            discovered.set()

        nc = await nats.connect(
            seed,
            error_cb=_quiet,
            reconnected_cb=on_reconnect,
            discovered_server_cb=on_discovered,
            reconnect_time_wait=0.2,
        )
        try:
            # The seed announces its peers as their routes come up, perhaps after the
            # connect: each announcement is awaited until the client knows every node.
            async with asyncio.timeout(10):
                while {f"nats://{uri.netloc}" for uri in nc.servers} != set(cluster.urls):
                    await discovered.wait()
                    discovered.clear()

            await cluster.kill(follower)
            assert not cluster.node(follower).running
            assert await cluster.wait_formed(10) == leader  # two nodes keep the quorum
            await asyncio.wait_for(reconnected.wait(), 10)  # failed over to a live node
            await nc.flush(timeout=5)
            assert nc.connected_url is not None
            assert f"nats://{nc.connected_url.netloc}" != seed
            assert (await nc.jetstream().account_info()) is not None

            await cluster.restart(follower)
            assert cluster.node(follower).running
        finally:
            with contextlib.suppress(nats.errors.Error):
                await nc.close()

        with pytest.raises(ClusterError, match="still running"):
            await cluster.restart(follower)
    assert not any(node.running for node in cluster.nodes.values())


async def test_a_node_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text(
        CLUSTER_CONFIGS[2].read_text().replace("sync_interval: always", "sync_interval: often")
    )
    configs = [*CLUSTER_CONFIGS[:2], broken]
    assert read_node_config(broken).name == "lintas-n3"
    cluster = LoopbackCluster(tmp_path / "run", configs=configs)
    with pytest.raises(ClusterError, match=r"(?s)lintas-n3 exited.*sync_interval"):
        await cluster.start(timeout=20)
    assert not any(node.running for node in cluster.nodes.values())
