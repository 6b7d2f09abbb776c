"""``lintas status``, ``status --json`` and ``watch`` as the operator, on a bus with
authorization on, while an agency's consumers have a backlog: when operators need them.

The operator may not read the event stream, nor ask for its info (a subjects filter would
list who wrote what to whom about which case); a lag (when the oldest unacknowledged
message was stored) and the stream's numbers (messages, bytes, first and last sequence)
come from the platform's read service, and without one the snapshot is still taken,
saying in one line what it could not read and why.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from argparse import Namespace
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lintas.cli import main
from lintas.cli._watch import run_watch
from lintas.contracts import new_case_id
from lintas.infra.nats.access import RULES
from lintas.infra.nats.bus import read_service
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.nats.identities import accounts_path
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from tests.support.secured import Client, Hub, secured_hub

pytestmark = pytest.mark.nats

BACKLOG = 3


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with secured_hub(tmp_path) as hub:
        yield hub


@pytest.fixture
async def backlog(hub: Hub) -> list[int]:
    return await _backlog(hub)


async def _backlog(hub: Hub) -> list[int]:
    """KP2MI's and Dukcapil's consumers declared, none running; three messages for KP2MI
    on the log (written as admission, its only writer: what they say does not matter to a
    backlog). Returns their stream sequences."""
    settings = hub.settings
    platform = await Client.open(hub.url, settings, "platform")
    writer = await Client.open(hub.url, settings, "admission")
    try:
        await declare_platform(platform.js(), settings, deployment_consumers(["kp2mi", "dukcapil"]))
        seqs = []
        for _ in range(BACKLOG):
            subject = f"lintas.kemlu.kp2mi.case.opened.{new_case_id()}"
            ack = await writer.js().publish(subject, b"{}", stream=settings.stream)
            seqs.append(ack.seq)
        return seqs
    finally:
        await writer.close()
        await platform.close()


async def _stream_numbers(hub: Hub) -> dict[str, int]:
    """How much the event stream holds, as the platform reads it (the operator may not)."""
    platform = await Client.open(hub.url, hub.settings, "platform")
    try:
        state = (await platform.js().stream_info(hub.settings.stream)).state
    finally:
        await platform.close()
    return {
        "messages": state.messages,
        "first_seq": state.first_seq,
        "last_seq": state.last_seq,
        "bytes": state.bytes,
    }


async def _watched(hub: Hub, frames: int = 2) -> str:
    """``lintas watch`` as the operator for ``frames`` samples: what it drew."""
    shown = io.StringIO()
    console = Console(file=shown, width=200, force_terminal=True, color_system=None)
    watch_settings = hub.settings.model_copy(update={"nats_url": hub.url})
    assert await run_watch(watch_settings, Namespace(interval=0.05), console, frames=frames) == 0
    return shown.getvalue()


async def _stored(hub: Hub, seq: int) -> datetime:
    """When the bus stored ``seq``, as the platform reads it (the operator may not)."""
    platform = await Client.open(hub.url, hub.settings, "platform")
    try:
        stored = (await platform.js().get_msg(hub.settings.stream, seq)).time
    finally:
        await platform.close()
    assert stored is not None
    return stored


async def _status(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    for name in list(os.environ):
        if name.startswith("LINTAS_") and not name.startswith("LINTAS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LINTAS_NATS_URL", hub.url)
    monkeypatch.setenv("LINTAS_DATA_DIR", str(hub.settings.data_dir))
    monkeypatch.setenv("LINTAS_AGENCIES", json.dumps(["kp2mi", "dukcapil"]))
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", *args])
    said = capsys.readouterr()
    return code, said.out, said.err


async def test_status_and_watch_as_the_operator_with_a_backlog(
    hub: Hub,
    backlog: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert uses_credentials(hub.settings, "operator")  # the CLI connects as the operator
    async with read_service(hub.settings, hub.url):
        code, out, err = await _status(hub, monkeypatch, capsys, "--json", "--sample", "0")
        assert code == 0, err
        doc: dict[str, Any] = json.loads(out)
        kp2mi = doc["agencies"]["kp2mi"]
        assert (kp2mi["pending"], kp2mi["ack_pending"]) == (BACKLOG, 0)
        # The lag is the age of the oldest message it has not acknowledged, when `at` was taken.
        oldest = await _stored(hub, backlog[0])
        expected = (datetime.fromisoformat(doc["at"]) - oldest).total_seconds()
        assert kp2mi["lag_s"] == pytest.approx(expected, abs=0.002)
        assert doc["consumers"]["agency-kp2mi"]["lag_s"] == kp2mi["lag_s"]
        assert doc["agencies"]["dukcapil"]["lag_s"] == 0.0  # nothing for it
        assert doc["problems"] == []
        # The stream's numbers, from the read service: the operator may not ask its info.
        numbers = await _stream_numbers(hub)
        assert numbers["messages"] == numbers["last_seq"] == BACKLOG
        stream = doc["stream"]
        assert {name: stream[name] for name in numbers} == numbers
        assert stream["name"] == hub.settings.stream

        code, out, err = await _status(hub, monkeypatch, capsys)
        assert code == 0, err
        assert "kp2mi" in out
        assert f"{hub.settings.stream}: {BACKLOG} events" in out
        assert "not read" not in out

        frames = await _watched(hub)
        assert "kp2mi" in frames
        assert f"{hub.settings.stream}: {BACKLOG} events" in frames
        assert "not read" not in frames


async def test_without_a_read_service_status_says_which_lags_it_could_not_read(
    hub: Hub,
    backlog: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # One sample (no rate): each sample waits out the read service's timeout (5 s) before
    # it says none answers; the second call keeps the default, a rate over 1 s.
    code, out, err = await _status(hub, monkeypatch, capsys, "--json", "--sample", "0")
    assert code == 0, err
    doc = json.loads(out)
    kp2mi = doc["agencies"]["kp2mi"]
    assert (kp2mi["pending"], kp2mi["lag_s"]) == (BACKLOG, None)  # unknown, not 0
    assert doc["agencies"]["dukcapil"]["lag_s"] == 0.0  # no backlog: no read needed
    stream = doc["stream"]
    assert [stream[n] for n in ("messages", "first_seq", "last_seq", "bytes")] == [None] * 4
    assert doc["quarantined"] == 0  # read on the quarantine itself: still there
    # One line for all the read service did not tell, saying why.
    [problem] = doc["problems"]
    assert problem.startswith("stream state and lag not read ("), problem
    assert "no read service answers" in problem, problem
    assert "NATS unavailable" not in problem

    code, out, err = await _status(hub, monkeypatch, capsys)
    assert code == 0, err
    said = " ".join(out.split())
    assert f"{hub.settings.stream}: - events" in said
    assert said.count("not read (") == 1
    assert "stream state and lag not read (no read service answers" in said

    frames = " ".join((await _watched(hub, frames=1)).split())
    assert "kp2mi" in frames
    assert "stream state and lag not read (no read service answers" in frames


async def test_without_a_read_service_or_a_backlog_status_says_the_stream_was_not_read(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every lag is 0 with nothing pending, so only the stream's numbers are missing."""
    platform = await Client.open(hub.url, hub.settings, "platform")
    try:
        await declare_platform(platform.js(), hub.settings, deployment_consumers(["kp2mi"]))
    finally:
        await platform.close()
    code, out, err = await _status(hub, monkeypatch, capsys, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["stream"]["messages"] is None
    assert doc["agencies"]["kp2mi"]["lag_s"] == 0.0
    [problem] = doc["problems"]
    assert problem.startswith("stream state not read ("), problem
    assert "no read service answers" in problem


async def test_on_a_bus_where_nothing_has_run_status_says_so_as_the_operator(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No stream: the read service answers the operator "no stream" and the consumers'
    list says the same, so `lintas status` says that nothing has run, not what it missed."""
    async with read_service(hub.settings, hub.url):
        code, out, err = await _status(hub, monkeypatch, capsys, "--json", "--sample", "0")
    assert code == 1
    assert "no stream LINTAS on the bus: nothing has run yet" in " ".join(err.split())
    assert out == ""


async def test_under_an_authorization_older_than_stream_state_status_still_reads_lags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment that upgraded lintas but not yet the server's authorization: the
    operator may not ask for the stream's numbers (and may still ask STREAM.INFO, until the
    authorization is rendered again). Status says so in one line and reads the rest."""
    rule = RULES["operator"]
    older = replace(
        rule,
        publish=(
            *(p for p in rule.publish if not p.endswith(".stream-state")),
            "{api}.STREAM.INFO.*",
        ),
        deny_publish=(),
    )
    monkeypatch.setitem(RULES, "operator", older)  # type: ignore[index]  # a Mapping: a dict
    async with secured_hub(tmp_path) as hub:
        monkeypatch.undo()
        assert "lintas_read.operator.stream-state" not in accounts_path(hub.settings).read_text()
        seqs = await _backlog(hub)
        async with read_service(hub.settings, hub.url):
            code, out, err = await _status(hub, monkeypatch, capsys, "--json", "--sample", "0")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["stream"]["messages"] is None
    assert doc["agencies"]["kp2mi"]["lag_s"] is not None  # lags are still read
    assert doc["agencies"]["kp2mi"]["pending"] == len(seqs)
    [problem] = doc["problems"]
    assert problem.startswith("stream state not read ("), problem
    assert "not permitted" in problem, problem
