"""Checkpoints on a timer, on a real nats-server: each round checkpoints what the stream gained
since the last checkpoint, continuing its digest, and ``verify`` checks them all. In process
(:func:`start_checkpointer`, as ``lintas up`` runs it) and as ``lintas checkpoint --every``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, read_checkpoints, verify_stream
from lintas.audit.checkpointer import start_checkpointer
from lintas.audit.checkpoints import ZERO_DIGEST, Checkpoint, CheckpointRaced, checkpoint_stream
from lintas.infra.bootstrap import Parts
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import (
    SEALER,
    Signer,
    ensure_agency_key,
    ensure_sealer_key,
    load_registry,
)
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import checkpoints_config, ensure_stream_config
from lintas.infra.settings import Settings
from tests.support.audit import ChainedAgencies, cli
from tests.support.cluster import LoopbackCluster
from tests.support.helpers import declare_record, line_with

pytestmark = pytest.mark.nats


@pytest.fixture
async def agencies(js: JetStreamContext, settings: Settings) -> ChainedAgencies:
    """The agencies, after two cases of three events each: stream seq 1..6."""
    await declare_record(js, settings)
    agencies = ChainedAgencies(js, settings)
    await agencies.cases(2, steps=3)
    return agencies


async def test_each_round_checkpoints_what_is_new_and_verify_checks_the_checkpoints(
    js: JetStreamContext, settings: Settings, nats_server: EmbeddedNats, agencies: ChainedAgencies
) -> None:
    checkpointed: asyncio.Queue[Checkpoint] = asyncio.Queue()
    checkpointer = await start_checkpointer(
        Parts(settings, nats_server.url),
        _sealer(settings),
        interval_s=0.05,
        on_checkpoint=checkpointed.put_nowait,
    )
    try:
        async with asyncio.timeout(20):
            first = await checkpointed.get()
        assert (first.first_seq, first.last_seq, first.count) == (1, 6, 6)
        assert (first.prev_digest, first.signed_by) == (ZERO_DIGEST, SEALER)
        await agencies.cases(1, steps=3)  # seq 7..9, checkpointed in one round or more
        later = [first]
        async with asyncio.timeout(20):
            while later[-1].last_seq < 9:
                later.append(await checkpointed.get())
    finally:
        await checkpointer.stop()
    for previous, checkpoint in itertools.pairwise(later):
        assert checkpoint.first_seq == previous.last_seq + 1
        assert checkpoint.prev_digest == previous.digest
        assert checkpoint.count == checkpoint.last_seq - checkpoint.first_seq + 1
    # Rounds with nothing new checkpointed nothing: every checkpoint stored was handed on, once.
    assert checkpointed.empty()
    stored = await read_checkpoints(js, settings)
    assert [(s.first_seq, s.last_seq, s.digest) for s in stored] == [
        (s.first_seq, s.last_seq, s.digest) for s in later
    ]
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    verdict = await verify_stream(
        reader.events(cut), cut, load_registry(settings), checkpoints=stored
    )
    assert verdict.ok, verdict.finding


def _sealer(settings: Settings) -> Signer:
    return ensure_sealer_key(settings)[0]


async def test_an_agencys_key_never_makes_a_checkpoint(
    js: JetStreamContext, settings: Settings, nats_server: EmbeddedNats, agencies: ChainedAgencies
) -> None:
    kp2mi = Signer.load(settings, "kp2mi")
    with pytest.raises(ValueError, match="signed by the sealer only, not by kp2mi"):
        await checkpoint_stream(js, settings, kp2mi)
    with pytest.raises(ValueError, match="signed by the sealer only, not by kp2mi"):
        await start_checkpointer(Parts(settings, nats_server.url), kp2mi, interval_s=1)
    assert await read_checkpoints(js, settings) == []


async def test_lintas_checkpoint_every_checkpoints_until_sigint(
    js: JetStreamContext, cli_env: Settings, agencies: ChainedAgencies
) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "checkpoint",
        "--every",
        "0.1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        line = await line_with(proc.stdout, "checkpointing stream", 30)
        assert f"checkpointing stream {cli_env.stream} every 0.1 s with the sealer's key" in line
        line = await line_with(proc.stdout, "checkpointed stream", 30)
        assert "seq 1..6 (6 messages) as checkpoint 1, signed by sealer" in line
        await agencies.cases(1, steps=1)  # seq 7
        line = await line_with(proc.stdout, "checkpointed stream", 30)
        assert "seq 7..7 (1 message) as checkpoint 2, signed by sealer" in line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert len(await read_checkpoints(js, cli_env)) == 2


async def test_lintas_checkpoint_every_needs_a_bus_with_a_log(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No LINTAS_NATS_URL and no `lintas up` here: a bus started for the command would hold
    no log to checkpoint."""
    ensure_agency_key(settings, SEALER)
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    assert await cli("checkpoint", "--every", "5") == 1
    assert "no bus to checkpoint: set LINTAS_NATS_URL" in capsys.readouterr().err
    assert not (settings.data_dir / "nats.url").exists()


@pytest.mark.parametrize("every", ["0", "-1"])
async def test_lintas_checkpoint_every_needs_a_positive_period(
    cli_env: Settings, every: str
) -> None:
    assert await cli("checkpoint", "--every", every) == 2


class _Gated:
    """A JetStream context whose publish says it got there, then waits at a gate: two
    rounds read the same last checkpoint before either publishes."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.reached.set()
        await self.gate.wait()
        return await self._js.publish(*args, **kwargs)


async def _race(js: JetStreamContext, other: JetStreamContext, settings: Settings) -> Checkpoint:
    """Two checkpoint_stream rounds at once; the first publishes first. The winner's checkpoint."""
    first, second = _Gated(js), _Gated(other)
    winner = asyncio.create_task(checkpoint_stream(first, settings, _sealer(settings)))
    loser = asyncio.create_task(checkpoint_stream(second, settings, _sealer(settings)))
    async with asyncio.timeout(30):
        await first.reached.wait()
        await second.reached.wait()
        first.gate.set()
        won = await winner
        second.gate.set()
        with pytest.raises(CheckpointRaced, match="another checkpointer checkpointed"):
            await loser
    assert won is not None
    return won


async def test_two_checkpointers_at_once_store_one_checkpoint_and_the_other_is_told(
    js: JetStreamContext, settings: Settings, agencies: ChainedAgencies
) -> None:
    won = await _race(js, js, settings)
    stored = await read_checkpoints(js, settings)
    assert [(s.seq, s.first_seq, s.last_seq, s.signed_by) for s in stored] == [(1, 1, 6, SEALER)]
    # The loser's next round checkpoints what is still uncheckpointed, after the winner's
    # checkpoint.
    await agencies.cases(1, steps=1)  # seq 7
    after = await checkpoint_stream(js, settings, _sealer(settings))
    assert after is not None
    assert (after.first_seq, after.last_seq, after.prev_digest) == (7, 7, won.digest)


@pytest.mark.slow
async def test_on_a_replicated_stream_the_checkpointer_that_lost_is_told_too(
    tmp_path: Path, settings: Settings
) -> None:
    """An R3 stream answers the loser's publish as a duplicate (the same message id, the
    same cut) instead of refusing its expected sequence: the loser must not take the
    winner's checkpoint for its own."""
    settings = settings.model_copy(update={"stream_replicas": 3})
    async with asyncio.timeout(90), LoopbackCluster(tmp_path / "cluster") as cluster:
        await cluster.wait_formed(30)
        nc = await nats.connect(cluster.urls, error_cb=_quiet)
        other = await nats.connect(cluster.urls, error_cb=_quiet)
        try:
            js = nc.jetstream()
            await _declared(js, settings)
            await ChainedAgencies(js, settings).cases(2, steps=3)  # seq 1..6
            await _race(js, other.jetstream(), settings)
            stored = await read_checkpoints(js, settings)
            assert [(s.first_seq, s.last_seq, s.signed_by) for s in stored] == [(1, 6, SEALER)]
        finally:
            for client in (nc, other):
                with contextlib.suppress(nats.errors.Error, OSError):
                    await client.close()


async def _declared(js: JetStreamContext, settings: Settings, attempts: int = 3) -> None:
    # A cluster just formed has, about one run in 25, left the first create unanswered
    # (tests/integration/audit/test_stream_reader.py). Declaring again is idempotent.
    for attempt in range(1, attempts + 1):
        try:
            await declare_record(js, settings)
            await ensure_stream_config(js, checkpoints_config(settings))
            return
        except BusUnavailable:
            if attempt == attempts:
                raise


async def _quiet(_exc: Exception) -> None:
    pass
