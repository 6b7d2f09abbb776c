"""An agency, connected as itself on a secured bus, sending events signed with key ids of
its own name that no registry holds, to hold up admission for everyone else.

Admission (as a deployment runs it: its verifier reads the registry again, at most once a
second, for a key id it lacks) waits up to a second for the next read before it refuses
``unknown_key``, so that an agency's first event right after its key is published is
admitted. Those waits must not add up: the cases of a batch are judged side by side, but a
case's messages one after the other, and the partition fetches its next batch only when the
batch is done. A second per made-up event of one case would hold the whole partition, every
agency's events in it, for as many seconds as the attacker sent events.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lintas.contracts import Event, encode, new_case_id
from lintas.contracts.admission import REPLY_HEADER, Answer
from lintas.contracts.gate import MADE
from lintas.contracts.subjects import intake_subject, read_subject
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.bus import read_service
from lintas.infra.nats.topology import intake_stream
from lintas.infra.privacy.custody import WRAP_VERSION
from lintas.infra.reads import ServiceReads
from tests.support.attack import Case, forge, platform_running
from tests.support.secured import admission_running

pytestmark = [pytest.mark.asyncio, pytest.mark.nats]

PER_CASE = 24
"""Made-up events the attacker queues in each of its cases (one case per partition): held
up one registry interval (1 s) each, they would keep the victim waiting about 24 s, short of
the intake's 30 s ack wait."""
PROMPT_S = 12.0
"""How long the victim's event may take to be admitted while the attacker's are judged:
well above one registry interval and an admission on a busy machine, half of ``PER_CASE``
intervals."""
READS_PROMPT_S = 5.0
"""As ``PROMPT_S``, for a head read (640 requests holding every place held it about 9 s)."""


def _partition(case_id: str, partitions: int) -> int:
    """The intake partition nats-server's ``partition(n,2)`` transform gives a case id:
    FNV-1a (32 bit) of the token, modulo n (checked on the stream below)."""
    digest = 0x811C9DC5
    for byte in case_id.encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return digest % partitions


def _case_in(partition: int, partitions: int) -> str:
    while True:
        case_id = new_case_id()
        if _partition(case_id, partitions) == partition:
            return case_id


async def test_made_up_key_ids_of_one_agency_do_not_hold_up_another_agency_s_admission(
    tmp_path: Path,
) -> None:
    async with platform_running(tmp_path, admitting=False) as platform:
        settings = platform.settings
        partitions = settings.admission_partitions
        attacker = await platform.client("kp2mi")
        stranger = Signer("kp2mi", Ed25519PrivateKey.generate())  # of its name, never published

        # Queued before admission starts: each partition's first batch is the attacker's.
        prefix = f"_INBOX.kp2mi.{uuid.uuid4().hex}"
        answers: asyncio.Queue[Answer] = asyncio.Queue()

        async def answered(msg: Any) -> None:
            await answers.put(Answer.model_validate_json(msg.data))

        await attacker.conn.subscribe(f"{prefix}.*", cb=answered)
        for partition in range(partitions):
            case_id = _case_in(partition, partitions)
            for n in range(PER_CASE):
                made_up = forge(settings, "case.opened", source="kp2mi", case_id=case_id)
                event = Event(stranger.sign(made_up.envelope), made_up.data)
                await attacker.js().publish(
                    intake_subject("kp2mi", case_id),
                    encode(event.envelope),
                    stream=intake_stream(settings),
                    headers={REPLY_HEADER: f"{prefix}.{partition}-{n}"},
                )
        intake = await platform.reader.js().stream_info(
            intake_stream(settings), subjects_filter=">"
        )
        held = {subject.split(".")[1] for subject in intake.state.subjects or {}}
        assert held == {str(p) for p in range(partitions)}, intake.state.subjects

        async with admission_running(platform.hub):
            first = await asyncio.wait_for(answers.get(), 20)
            assert (first.admitted, first.code) == (False, "unknown_key"), first
            # Meanwhile another agency opens a case, in a partition the attacker holds up.
            victim = Case(id=_case_in(0, partitions))
            began = time.monotonic()
            await platform.say(victim, "case.opened", "kemlu")
            took = time.monotonic() - began
            assert took < PROMPT_S, (
                f"kemlu's event waited {took:.1f}s behind kp2mi's {PER_CASE} made-up key ids"
            )


READS_FLOOD = 640
"""Made-up key ids the attacker asks custody to store a case's first key under: ten times
the read service's concurrency."""


async def test_made_up_key_ids_sent_to_custody_do_not_hold_up_another_agency_s_reads(
    tmp_path: Path,
) -> None:
    """The read service (as a deployment runs it: its verifier reads the registry again for a
    key id it lacks) answers at most 64 requests at once, of every agency; ``make-key`` checks
    the wrap's signature before anything else. A wrap signed with a key id of the asker's name
    that no registry holds must not hold one of those places for up to a second each, and
    every agency's reads (the heads each send needs) behind them: one asker's requests are
    answered a few at a time (``_PER_ASKER``), the rest wait their turn."""
    async with platform_running(tmp_path, admitting=False) as platform:
        settings = platform.settings
        attacker = await platform.client("kp2mi")
        victim = await platform.client("kemlu")
        stranger = Signer("kp2mi", Ed25519PrivateKey.generate())  # of its name, never published
        async with read_service(settings, platform.hub.url):
            # Answered once for each, before the flood: the service's interest has then
            # reached both accounts (a busy machine takes a while, and a request sent before
            # is dropped unanswered), and the victim's read times the flood alone.
            for client, agency in ((attacker, "kp2mi"), (victim, "kemlu")):
                await ServiceReads(client.conn, agency, timeout=30).head(new_case_id())
            prefix = f"_INBOX.kp2mi.{uuid.uuid4().hex}"
            answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            async def answered(msg: Any) -> None:
                await answers.put(json.loads(msg.data))

            await attacker.conn.subscribe(f"{prefix}.*", cb=answered)
            for n in range(READS_FLOOD):
                case_id = new_case_id()
                wrap = stranger.sign_document(
                    {
                        "v": WRAP_VERSION,
                        "case": case_id,
                        "gen": 1,
                        "for": "kp2mi",
                        "grant": MADE,
                        "maker": "kp2mi",
                        "at": datetime.now(UTC).isoformat(),
                    }
                )
                await attacker.conn.publish(
                    read_subject("kp2mi", "make-key"),
                    json.dumps({"case": case_id, "gen": 1, "wrap": wrap}).encode(),
                    reply=f"{prefix}.{n}",
                )
            await attacker.conn.flush()
            first = await asyncio.wait_for(answers.get(), 20)
            assert first["code"] == 403, first
            assert "not in the registry" in first["error"], first

            began = time.monotonic()
            head = await ServiceReads(victim.conn, "kemlu", timeout=30).head(new_case_id())
            took = time.monotonic() - began
            assert head.seq == 0
            assert took < READS_PROMPT_S, (
                f"kemlu's head read waited {took:.1f}s behind kp2mi's {READS_FLOOD} made-up key ids"
            )
