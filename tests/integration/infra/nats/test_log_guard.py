"""The log cannot shrink: on a secured bus, connected as each identity lintas's services use,
changing the limits of the event log or its checkpoints, purging them, deleting a message or
the stream is refused; the break-glass admin may; and lintas does not start on a log whose
configuration can drop events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats.errors
import pytest
from nats.js.api import StreamConfig

from lintas.contracts import new_case_id
from lintas.contracts.subjects import checkpoints_filter
from lintas.infra.nats.topology import (
    StreamCanDropEvents,
    checkpoints_stream,
    declare_platform,
    deployment_consumers,
    stream_config,
)
from tests.support.audit import cli
from tests.support.secured import AGENCIES, Client, Hub, secured_hub

pytestmark = pytest.mark.nats

SERVICES = (
    "platform",
    "admission",
    "operator",
    "auditor",
    "watchdog",
    "kemlu",
    "desa-3525012001",
    "my-jkm",
)


def _attempts(name: str) -> list[tuple[str, bytes]]:
    """Each way to make ``name`` hold fewer messages, as a JetStream API request."""
    shrunk = {"name": name, "subjects": [], "max_age": 1_000_000_000}  # 1 s
    return [
        (f"$JS.API.STREAM.UPDATE.{name}", json.dumps(shrunk).encode()),
        (f"$JS.API.STREAM.PURGE.{name}", b"{}"),
        (f"$JS.API.STREAM.MSG.DELETE.{name}", json.dumps({"seq": 1, "no_erase": True}).encode()),
        (f"$JS.API.STREAM.DELETE.{name}", b""),
    ]


async def _refused(client: Client, subject: str, body: bytes) -> bool:
    """Refused by the server's permissions (no answer, a violation reported), or, behind a
    partner's account boundary, answered by nothing that holds the stream."""
    try:
        msg = await client.conn.request(subject, body, timeout=0.5)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        if client.identity == "my-jkm":
            return True  # its account imports no such service
        return await client.refused(subject)
    return b"not enabled for account" in msg.data


async def _holdings(platform: Client, hub: Hub) -> list[tuple[int, float | None]]:
    js = platform.js()
    out = []
    for name in (hub.settings.stream, checkpoints_stream(hub.settings)):
        info = await js.stream_info(name)
        out.append((info.state.messages, info.config.max_age))
    return out


async def _declared_with_messages(hub: Hub) -> Client:
    platform = await Client.open(hub.url, hub.settings, "platform")
    await declare_platform(platform.js(), hub.settings, deployment_consumers(AGENCIES))
    writer = await Client.open(hub.url, hub.settings, "admission")  # the log's only writer
    try:
        for _ in range(3):
            subject = f"lintas.kemlu.dukcapil.case.opened.{new_case_id()}"
            await writer.js().publish(subject, b"{}", stream=hub.settings.stream)
    finally:
        await writer.close()
    subject = checkpoints_filter(hub.settings.stream).replace(">", "x")
    await platform.js().publish(subject, b"{}", stream=checkpoints_stream(hub.settings))
    return platform


async def test_no_service_identity_can_shrink_the_log_or_its_checkpoints(tmp_path: Path) -> None:
    async with secured_hub(tmp_path) as hub:
        platform = await _declared_with_messages(hub)
        before = await _holdings(platform, hub)
        assert before == [(3, 0.0), (1, 0.0)]
        try:
            clients = [await Client.open(hub.url, hub.settings, i) for i in SERVICES]
            tried = [
                (client, subject, body)
                for client in clients
                for name in (hub.settings.stream, checkpoints_stream(hub.settings))
                for subject, body in _attempts(name)
            ]
            refused = await asyncio.gather(*(_refused(c, s, b) for c, s, b in tried))
            for client in clients:
                await client.close()
            allowed = [
                f"{c.identity}: {s}" for (c, s, _), no in zip(tried, refused, strict=True) if not no
            ]
            assert allowed == []
            assert len(tried) == 8 * len(SERVICES)
            assert await _holdings(platform, hub) == before
        finally:
            await platform.close()


async def test_the_admin_may_and_then_lintas_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with secured_hub(tmp_path) as hub:
        platform = await _declared_with_messages(hub)
        admin = await Client.open(hub.url, hub.settings, "admin")
        try:
            # Break-glass: the admin changes the log's retention (an hour, so it stays)...
            changed = StreamConfig.from_response(
                {**stream_config(hub.settings).as_dict(), "max_age": 3600 * 10**9}
            )
            info = await admin.js().update_stream(changed)
            assert info.config.max_age == 3600
            # ...and may delete the checkpoints stream, which declaring makes again.
            assert await admin.js().delete_stream(checkpoints_stream(hub.settings))
            assert admin.errors == []
            # Every lintas process that declares refuses to start on it, naming the setting.
            with pytest.raises(StreamCanDropEvents, match=r"stream 'LINTAS': max_age=3600s"):
                await declare_platform(platform.js(), hub.settings, deployment_consumers(AGENCIES))
            monkeypatch.setenv("LINTAS_DATA_DIR", str(hub.settings.data_dir))
            monkeypatch.setenv("LINTAS_NATS_URL", hub.url)
            capsys.readouterr()
            assert await cli("run", "record") == 1
            out = " ".join(capsys.readouterr().err.split())
            assert "max_age=3600s (older events are removed)" in out, out
            # The admin puts it back: lintas starts again, and finds the 3 events kept.
            await admin.js().update_stream(stream_config(hub.settings))
            await declare_platform(platform.js(), hub.settings, deployment_consumers(AGENCIES))
            assert (await platform.js().stream_info(hub.settings.stream)).state.messages == 3
        finally:
            await admin.close()
            await platform.close()
