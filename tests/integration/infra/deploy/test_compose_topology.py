"""The compose file's topology as plain processes: each lintas service's command run as a
subprocess with its environment and exactly the files it mounts (copied from a deployment
directory ``lintas infra config`` rendered, under a directory of its own standing for its
container), on a secured nats-server, the partner behind a real leaf node. Every service
serves its probes; an event sent by one agency reaches the record and the agency it is
addressed to; spans reach the OTLP endpoint standing for Jaeger, named per service.

What differs from the containers, and why: one nats-server without TLS stands for the
three-node TLS cluster (so R1 streams, and no CA); projections are each process's SQLite
files rather than one PostgreSQL (tested elsewhere); each service gets a free metrics port on
loopback rather than 9464 in its own network namespace.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lintas.contracts import NATIONAL_AGENCIES
from lintas.infra.deploy.config import render_deployment
from lintas.infra.keys.signing import ensure_agency_key, load_registry, publish_registry
from tests.support.helpers import publish_case
from tests.support.metrics import metrics_url, ready_until, scrape_until, value
from tests.support.secured import (
    Client,
    agency_publisher,
    leaves_connected,
    partner_conf,
    secured_hub,
    start_leaf,
    stop_leaf,
)

pytestmark = [pytest.mark.nats, pytest.mark.slow]

AGENCIES = (*NATIONAL_AGENCIES, "desa-3525012001", "my-jkm")  # LINTAS_AGENCIES' default


# `lintas run admission` is being added (issue 24). Until it is, the command takes
# `admission` for an agency and fails looking for its consumers: the one service allowed
# not to run, and the test warns that it did not.
@dataclass
class Service:
    name: str
    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    base: str | None = None


@pytest.fixture
def jaeger() -> Iterator[tuple[str, list[str]]]:
    """An OTLP/HTTP endpoint standing for Jaeger's: the service names of what it receives."""
    services: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                for spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                    attributes = {a.key: a.value.string_value for a in spans.resource.attributes}
                    services.append(attributes["service.name"])
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", services
    finally:
        server.shutdown()
        server.server_close()


def _container(root: Path, deployment: Path, service: dict[str, Any]) -> None:
    """What the service's container holds: the files it mounts, at their container paths."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./certs/"):
            continue  # no TLS on the test's bus
        if source.startswith("./"):
            where = root / target.lstrip("/")
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(deployment / source, where)


def _environment(
    root: Path, service: dict[str, Any], urls: dict[str, str], collector: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINTAS_", "OTEL_"))}
    for key, raw in service["environment"].items():
        text = str(raw)
        if key == "LINTAS_NATS_URL":
            text = urls["partner-leaf"] if "partner-leaf" in text else urls["cluster"]
        elif key in ("LINTAS_NATS_TLS_CA", "LINTAS_DATABASE_URL"):
            continue  # no TLS on the test's bus; each process's own SQLite
        elif key == "LINTAS_STREAM_REPLICAS":
            text = "1"  # one node here
        elif key == "OTEL_EXPORTER_OTLP_ENDPOINT":
            text = collector
        elif text.startswith("/"):
            text = str(root / text.lstrip("/"))  # a path inside the container
        env[key] = text
    env["LINTAS_METRICS_HOST"] = "127.0.0.1"
    # Any free port, which the process announces (_serving): one merely free when chosen
    # can be taken before the process binds it (another suite beside this one did).
    env["LINTAS_METRICS_PORT"] = "0"
    env["COLUMNS"] = "200"
    return env


async def _start(
    name: str, service: dict[str, Any], deployment: Path, tmp_path: Path, **urls: str
) -> Service:
    root = tmp_path / "containers" / name
    _container(root, deployment, service)
    env = _environment(root, service, urls, urls.pop("collector"))
    workdir = root / "var" / "lib" / "lintas"  # the image's WORKDIR
    workdir.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        *service["command"],  # the image's entrypoint is `lintas`
        env=env,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Service(name, proc)


async def _serving(service: Service, within_s: float = 90) -> None:
    """Until the service prints where its metrics are, or ends."""
    stdout = service.proc.stdout
    assert stdout is not None
    try:
        async with asyncio.timeout(within_s):
            while line := (await stdout.readline()).decode():
                service.output.append(line)
                if "metrics on" in line:
                    service.base = metrics_url(line)
                    return
    except TimeoutError:
        said = "".join(service.output)[-3000:]
        raise AssertionError(f"{service.name} did not serve in {within_s}s:\n{said}") from None


async def _served(service: Service) -> None:
    """Fails unless the service said where its metrics are (:func:`_serving`)."""
    if service.base is None:
        code = await service.proc.wait()
        said = "".join(service.output)
        raise AssertionError(f"{service.name} ended ({code}) without serving:\n{said}")


async def _drain(service: Service) -> None:
    """Keep reading its output, so that a chatty process never blocks on a full pipe."""
    stdout = service.proc.stdout
    assert stdout is not None
    while line := (await stdout.readline()).decode():
        service.output.append(line)


async def test_the_compose_services_run_as_processes_and_an_event_goes_through(
    tmp_path: Path, jaeger: tuple[str, list[str]]
) -> None:
    collector, traced = jaeger
    async with secured_hub(tmp_path, agencies=AGENCIES, batch_size=256) as hub:
        settings = hub.settings
        # The registrar: signing keys of the agencies that will publish, and the deployment
        # directory (seeds, the platform services' keys, the partner's leaf config).
        for agency in ("kemlu", "kp2mi"):
            ensure_agency_key(settings, agency)
        deployment = tmp_path / "deploy"
        render_deployment(settings, deployment)
        leaf = start_leaf(tmp_path / "partner-leaf", partner_conf(hub, "my-jkm"))
        running: list[Service] = []
        readers: list[asyncio.Task[None]] = []
        try:
            await leaves_connected(leaf)
            compose = yaml.safe_load((deployment / "compose.yaml").read_text())
            services = {n: s for n, s in compose["services"].items() if "build" in s}
            urls = {"cluster": hub.url, "partner-leaf": leaf.url, "collector": collector}
            # The platform first (compose restarts an agency that came too early; here
            # nothing does), then every other service at once, as compose starts them.
            platform = await _start("platform", services["platform"], deployment, tmp_path, **urls)
            running.append(platform)
            await _serving(platform)
            readers.append(asyncio.create_task(_drain(platform)))
            await _served(platform)
            # It declared the stream and the buckets: now the registrar publishes the public
            # keys (`lintas keys publish`).
            registrar = await Client.open(hub.url, settings, "platform")
            await publish_registry(registrar.js(), load_registry(settings))
            await registrar.close()
            others = [
                await _start(name, services[name], deployment, tmp_path, **urls)
                for name in sorted(n for n in services if n != "platform")
            ]
            running += others
            # Thirteen processes starting on the same cores: more time than for one.
            waits = (_serving(service, within_s=150) for service in others)
            started = await asyncio.gather(*waits, return_exceptions=True)
            readers += [asyncio.create_task(_drain(service)) for service in others]
            for service, outcome in zip(others, started, strict=True):
                if isinstance(outcome, BaseException):
                    raise outcome
                await _served(service)
            serving = {s.name: s.base for s in running if s.base is not None}
            for name, base in serving.items():
                assert base is not None
                assert await ready_until(base, 200, within_s=60) == "ready\n", name

            # kemlu opens a case for kp2mi, which asks kemlu for a document: through the
            # read services the compose file runs, each agency as itself.
            publishers = {}
            clients = []
            for agency in ("kemlu", "kp2mi"):
                client = await Client.open(hub.url, settings, agency)
                clients.append(client)
                publishers[agency] = agency_publisher(client, settings)
            try:
                await publish_case(
                    publishers["kemlu"], steps=1, kp2mi=publishers["kp2mi"], at=datetime.now(UTC)
                )
            finally:
                for client in clients:
                    await client.close()

            await scrape_until(
                str(serving["platform"]),
                lambda s: value(s, "lintas_consumer_applied_total", consumer="record") == 2,
                "the record applied both events",
            )
            await scrape_until(
                str(serving["kp2mi"]),
                lambda s: value(s, "lintas_consumer_applied_total", consumer="agency-kp2mi") == 1,
                "kp2mi's consumer applied the case addressed to it",
            )
            await scrape_until(
                str(serving["kemlu"]),
                lambda s: value(s, "lintas_handoffs_open", agency="kemlu") == 1,
                "kemlu's worklist holds the request",
            )
            # The watchdog follows the hand-off: its consumer applied both events too.
            await scrape_until(
                str(serving["watchdog"]),
                lambda s: value(s, "lintas_consumer_applied_total", consumer="watchdog") == 2,
                "the watchdog's projection has both events",
            )
        finally:
            for service in running:
                if service.proc.returncode is None:
                    service.proc.send_signal(signal.SIGINT)
            codes = {s.name: await asyncio.wait_for(s.proc.wait(), 60) for s in running}
            for task in readers:
                await task
            stop_leaf(leaf)
        assert set(codes.values()) == {0}, {
            s.name: "".join(s.output)[-2000:] for s in running if codes[s.name] != 0
        }
        # Spans reached the collector standing for Jaeger, each service under its own name
        # (the batch processor writes the last of them as each process stops).
        assert {"lintas-platform", "lintas-kp2mi", "lintas-kemlu"} <= set(traced)
