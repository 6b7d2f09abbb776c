"""Seals on a timer, on a real nats-server: each round seals what the stream gained since
the last seal, continuing its digest, and ``verify`` checks them all. In process
(:func:`start_sealer`, as ``lintas up`` runs it) and as ``lintas seal --every``."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys

import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, read_seals, verify_stream
from lintas.audit.sealer import start_sealer
from lintas.audit.seals import ZERO_DIGEST, Seal
from lintas.infra.embedded import EmbeddedNats
from lintas.infra.keys import Signer, load_registry
from lintas.infra.settings import Settings

from .helpers import declare_record
from .test_audit_support import ChainedAgencies, cli, cli_env_fixture  # noqa: F401
from .test_cli_up import _line_with

pytestmark = pytest.mark.nats


@pytest.fixture
async def agencies(js: JetStreamContext, settings: Settings) -> ChainedAgencies:
    """The agencies, after two cases of three events each: stream seq 1..6."""
    await declare_record(js, settings)
    agencies = ChainedAgencies(js, settings)
    await agencies.cases(2, steps=3)
    return agencies


async def test_each_round_seals_what_is_new_and_verify_checks_the_seals(
    js: JetStreamContext, settings: Settings, nats_server: EmbeddedNats, agencies: ChainedAgencies
) -> None:
    sealed: asyncio.Queue[Seal] = asyncio.Queue()
    sealer = await start_sealer(
        nats_server.url,
        settings,
        Signer.load(settings, "kp2mi"),
        interval_s=0.05,
        on_seal=sealed.put_nowait,
    )
    try:
        async with asyncio.timeout(20):
            first = await sealed.get()
        assert (first.first_seq, first.last_seq, first.count) == (1, 6, 6)
        assert (first.prev_digest, first.sealed_by) == (ZERO_DIGEST, "kp2mi")
        await agencies.cases(1, steps=3)  # seq 7..9, sealed in one round or more
        later = [first]
        async with asyncio.timeout(20):
            while later[-1].last_seq < 9:
                later.append(await sealed.get())
    finally:
        await sealer.stop()
    for previous, seal in itertools.pairwise(later):
        assert seal.first_seq == previous.last_seq + 1
        assert seal.prev_digest == previous.digest
        assert seal.count == seal.last_seq - seal.first_seq + 1
    # Rounds with nothing new sealed nothing: every seal stored was handed on, once.
    assert sealed.empty()
    stored = await read_seals(js, settings)
    assert [(s.first_seq, s.last_seq, s.digest) for s in stored] == [
        (s.first_seq, s.last_seq, s.digest) for s in later
    ]
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    verdict = await verify_stream(reader.events(cut), cut, load_registry(settings), seals=stored)
    assert verdict.ok, verdict.finding


async def test_lintas_seal_every_seals_until_sigint(
    js: JetStreamContext, cli_env: Settings, agencies: ChainedAgencies
) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "seal",
        "--every",
        "0.1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        line = await _line_with(proc.stdout, "sealing stream", 30)
        assert f"sealing stream {cli_env.stream} every 0.1 s with kp2mi's key" in line
        line = await _line_with(proc.stdout, "sealed stream", 30)
        assert "seq 1..6 (6 messages) as seal 1, signed by kp2mi" in line
        await agencies.cases(1, steps=1)  # seq 7
        line = await _line_with(proc.stdout, "sealed stream", 30)
        assert "seq 7..7 (1 message) as seal 2, signed by kp2mi" in line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert len(await read_seals(js, cli_env)) == 2


@pytest.mark.parametrize("every", ["0", "-1"])
async def test_lintas_seal_every_needs_a_positive_period(cli_env: Settings, every: str) -> None:
    assert await cli("seal", "--every", every) == 2
