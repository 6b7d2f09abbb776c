"""A process's Prometheus metrics and health probes: ``/metrics``, ``/healthz``, ``/readyz``.

Every long-running lintas process (``lintas up``, ``lintas run ...``, ``lintas checkpoint
--every``, the admission service) serves them on ``LINTAS_METRICS_HOST``:``LINTAS_METRICS_PORT``
when the port is set (docs/OPERATIONS.md, "Metrics and probes"):

* ``/healthz``: 200 while the process's event loop answers (alive);
* ``/readyz``: 200 when every :class:`Check` of the process passes (connected to the bus, its
  streams and consumers there), else 503 with one line per problem;
* ``/metrics``: the text exposition format: the process's own collectors (CPU, memory, from
  ``prometheus_client``'s default registry) and the families its :data:`Source` s build at
  each scrape, from the bus and the projections. Built on scrape, not on a timer: what is
  not scraped costs nothing, and nothing here is on a message's path.

Labels name consumers, agencies and refusal codes: never a case id, an event id or anything
about a child (the same rule as subjects and logs).

The server is a few lines of asyncio, not ``prometheus_client``'s own threaded one: the
probes ask the bus, on the process's event loop.

Errors: none of its own. A source that fails is logged (``metrics.source_failed``) and left
out of that scrape; a check that fails or does not answer in time is a problem on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import nats.js.errors
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric

from lintas.contracts.errors import PermanentError

if TYPE_CHECKING:
    from lintas.infra.bootstrap import Parts

__all__ = [
    "PROBE_TIMEOUT_S",
    "Check",
    "MetricsPortUnavailable",
    "MetricsServer",
    "Probes",
    "Source",
    "connected",
    "consumers_present",
    "metrics_endpoint",
    "streams_present",
]

_log = structlog.get_logger("lintas.metrics")

PROBE_TIMEOUT_S: Final = 2.0
"""How long one check or source may take before the scrape goes on without it."""

_MAX_HEADER_LINES: Final = 64

Source = Callable[[], Awaitable[Iterable[Metric]]]
"""Metric families built at each scrape."""


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness condition: ``probe`` returns None when it holds, else what is wrong."""

    name: str
    probe: Callable[[], Awaitable[str | None]]


@dataclass(slots=True)
class Probes:
    """What one process reports."""

    checks: list[Check] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


class _Families:
    """A registry-shaped view of families collected already (what ``generate_latest`` reads)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def connected(name: str, client: Any) -> Check:
    """``client`` (a nats-py connection) is connected."""

    async def probe() -> str | None:
        return None if client.is_connected else "not connected to the bus"

    return Check(name, probe)


def streams_present(js: Any, streams: Sequence[str]) -> Check:
    """Each of ``streams`` exists (asked through ``js``)."""

    async def probe() -> str | None:
        missing = []
        for stream in streams:
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                missing.append(stream)
        return f"no stream {', '.join(missing)}" if missing else None

    return Check("streams", probe)


def consumers_present(js: Any, stream: str, consumers: Sequence[str]) -> Check:
    """Each of the durable ``consumers`` of ``stream`` exists."""

    async def probe() -> str | None:
        missing = []
        for consumer in consumers:
            try:
                await js.consumer_info(stream, consumer)
            except nats.js.errors.NotFoundError:
                missing.append(consumer)
        return f"no consumer {', '.join(missing)} on {stream}" if missing else None

    return Check("consumers", probe)


class MetricsPortUnavailable(PermanentError):
    """The metrics port cannot be listened on (taken, or an address not of this host):
    another ``LINTAS_METRICS_PORT`` (0: any free port) or ``LINTAS_METRICS_HOST`` is needed."""


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one process, on ``host``:``port`` (0:
    any free port; :attr:`port` says which)."""

    def __init__(
        self, probes: Probes, host: str, port: int, *, timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self.probes = probes
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:  # not the bus: said as what it is, not "the bus went away"
            raise MetricsPortUnavailable(
                f"cannot serve metrics on {self.host}:{self.port} ({exc.strerror or exc}): "
                "set LINTAS_METRICS_PORT to a free port (0: any) or LINTAS_METRICS_HOST"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        _log.info("metrics.serving", host=self.host, port=self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def problems(self) -> list[str]:
        """What keeps the process from being ready (empty: ready)."""
        found = []
        for check in self.probes.checks:
            try:
                problem = await asyncio.wait_for(check.probe(), self.timeout_s)
            except TimeoutError:
                problem = "did not answer in time"
            except Exception as exc:  # the bus, mostly: not ready, whatever it was
                problem = f"failed ({type(exc).__name__})"
            if problem is not None:
                found.append(f"{check.name}: {problem}")
        return found

    async def exposition(self) -> bytes:
        """The text exposition of the process's metrics, collected now."""
        families: list[Metric] = []
        for source in self.probes.sources:
            try:
                families.extend(await asyncio.wait_for(source(), self.timeout_s))
            except Exception as exc:
                _log.warning("metrics.source_failed", error=type(exc).__name__)
        return bytes(generate_latest(REGISTRY)) + bytes(generate_latest(_Families(families)))

    async def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            problems = await self.problems()
            if problems:
                return (
                    503,
                    "text/plain; charset=utf-8",
                    "".join(f"{p}\n" for p in problems).encode(),
                )
            return 200, "text/plain; charset=utf-8", b"ready\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await self.exposition()
        return 404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz, /readyz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), self.timeout_s)
            for _ in range(_MAX_HEADER_LINES):  # headers: read, not needed
                if (await asyncio.wait_for(reader.readline(), self.timeout_s)).strip() == b"":
                    break
            parts = request.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain; charset=utf-8", b"GET only\n"
            else:
                status, kind, body = await self._respond(parts[1].split("?", 1)[0])
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if parts[:1] == ["HEAD"] else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a client that went away or spoke nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@asynccontextmanager
async def metrics_endpoint(
    parts: Parts, identity: str, build: Callable[[Any], Probes]
) -> AsyncIterator[MetricsServer | None]:
    """Serve the process's metrics for the block, if ``LINTAS_METRICS_PORT`` is set (else
    nothing runs and None is yielded). The probes ask the bus on a connection of their own
    as ``identity``, reconnecting forever; ``build(js)`` says what this process reports."""
    settings = parts.settings
    if settings.metrics_port is None:
        yield None
        return
    nc = await parts.connect(identity, name="lintas-metrics", reconnect_forever=True)
    try:
        probes = build(parts.jetstream(nc, identity))
        probes.checks.insert(0, connected("bus", nc))
        server = MetricsServer(probes, settings.metrics_host, settings.metrics_port)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()
    finally:
        await nc.close()
