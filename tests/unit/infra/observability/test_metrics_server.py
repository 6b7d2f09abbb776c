"""The metrics server over real HTTP (urllib): what each path answers, a failing check or
source, and a client that says nothing."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterable

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from lintas.contracts import PermanentError
from lintas.infra.observability.metrics import (
    Check,
    MetricsPortUnavailable,
    MetricsServer,
    Probes,
)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, url)


async def test_paths_answer_what_the_probes_say() -> None:
    state = {"ready": False}

    async def bus() -> str | None:
        return None if state["ready"] else "not connected to the bus"

    async def slow() -> str | None:
        await asyncio.Event().wait()  # never answers
        return None

    async def pending() -> Iterable[Metric]:
        family = GaugeMetricFamily("lintas_consumer_pending", "waiting", labels=["consumer"])
        family.add_metric(["agency-kemlu"], 7)
        return [family]

    async def broken() -> Iterable[Metric]:
        raise ConnectionError("the bus went away")

    probes = Probes(checks=[Check("bus", bus)], sources=[broken, pending])
    server = MetricsServer(probes, "127.0.0.1", 0, timeout_s=0.5)
    await server.start()
    try:
        assert server.port != 0
        base = server.url
        assert await get(f"{base}/healthz") == (200, "text/plain; charset=utf-8", "ok\n")

        status, _, body = await get(f"{base}/readyz")
        assert (status, body) == (503, "bus: not connected to the bus\n")
        state["ready"] = True
        assert (await get(f"{base}/readyz"))[::2] == (200, "ready\n")
        probes.checks.append(Check("consumers", slow))
        assert (await get(f"{base}/readyz"))[::2] == (503, "consumers: did not answer in time\n")

        status, kind, body = await get(f"{base}/metrics?x=1")
        assert status == 200
        assert kind.startswith("text/plain; version=")
        # The failing source is left out; the other one and the process collectors are there.
        assert 'lintas_consumer_pending{consumer="agency-kemlu"} 7.0' in body
        assert "# TYPE lintas_consumer_pending gauge" in body
        assert "python_info" in body

        assert (await get(f"{base}/nothing"))[0] == 404
    finally:
        await server.stop()


async def test_a_silent_client_does_not_hold_the_server() -> None:
    server = MetricsServer(Probes(), "127.0.0.1", 0, timeout_s=0.2)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # It says nothing: the server gives up on it and closes the connection.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 405 ")
        writer.close()
        assert (await get(f"{server.url}/healthz"))[0] == 200
    finally:
        await server.stop()


async def test_a_port_it_cannot_listen_on_is_said_as_the_metrics_port() -> None:
    """Not an OSError a process would take for the bus going away as it starts."""
    taken = MetricsServer(Probes(), "127.0.0.1", 0)
    await taken.start()
    try:
        with pytest.raises(MetricsPortUnavailable, match="LINTAS_METRICS_PORT") as refused:
            await MetricsServer(Probes(), "127.0.0.1", taken.port).start()
        assert f"127.0.0.1:{taken.port}" in str(refused.value)
        assert isinstance(refused.value, PermanentError)
    finally:
        await taken.stop()
