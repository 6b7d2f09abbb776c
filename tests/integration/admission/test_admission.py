"""Admission on a real nats-server: what it admits, what it refuses and with which code,
idempotence, and fail-over of a partition to another instance."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from lintas.admission import AdmissionService
from lintas.admission import cases as cases_module
from lintas.admission import service as service_module
from lintas.contracts import Event, encode, new_case_id
from lintas.contracts.admission import Answer
from lintas.infra.keys.signing import (
    Signer,
    Verifier,
    ensure_agency_key,
    load_registry,
)
from lintas.infra.nats.outage import end_tasks
from lintas.infra.nats.topology import ADMISSION_LEASE_S, declare_platform, intake_stream
from lintas.infra.settings import Settings
from lintas.producers._admit import Admission, send
from tests.support.attack import forge

pytestmark = pytest.mark.asyncio

NOW = datetime.now(UTC)
OWNED_BY_KP2MI = {"owner": "kp2mi", "officer_ref": "P2MI-07"}
OWNED_BY_KEMLU = {"owner": "kemlu", "officer_ref": "P2MI-07"}


@pytest.fixture
async def admission(
    nats_client: NATS, js: Any, settings: Settings
) -> AsyncIterator[AdmissionService]:
    for agency in ("kp2mi", "kemlu", "admission"):
        ensure_agency_key(settings, agency)
    await declare_platform(js, settings, [])
    service = await _service(nats_client, js, settings)
    yield service
    await service.stop()


async def _service(nc: NATS, js: Any, settings: Settings, **kw: Any) -> AdmissionService:
    service = AdmissionService(
        nc,
        js,
        settings,
        verifier=Verifier(load_registry(settings)),
        signer=Signer.load(settings, "admission"),
        **kw,
    )
    await service.start()
    return service


event = partial(forge, source="kp2mi")
"""The events of these tests: kp2mi's unless told, sealed, signed."""


async def submit(js: Any, nc: NATS, settings: Settings, ev: Event) -> Answer:
    return await send(nc, js, ev, stream=intake_stream(settings), wait_s=20, what="test")


async def test_an_honest_opening_is_admitted_with_a_signed_receipt(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()
    answer = await submit(js, nats_client, settings, event(settings, "case.opened", case_id=case))
    assert answer.admitted, answer
    assert answer.seq == 1
    assert answer.hash
    assert answer.receipt
    stored = await js.get_msg(settings.stream, seq=answer.seq)
    assert stored.subject.endswith(case)
    receipt = answer.receipt.model_dump()
    Verifier(load_registry(settings)).verify_document(
        receipt, signer="admission", at=datetime.fromisoformat(receipt["admitted_at"])
    )


async def test_sending_again_gets_the_first_answer_and_stores_nothing_twice(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()
    opened = event(settings, "case.opened", case_id=case)
    first = await submit(js, nats_client, settings, opened)
    again = await submit(js, nats_client, settings, opened)
    assert again.admitted
    assert (again.seq, again.hash) == (first.seq, first.hash)
    assert (await js.stream_info(settings.stream)).state.messages == 1


async def test_a_resend_to_another_instance_gets_the_first_receipt(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    """The receipt's time is the one stored with the event, not a clock's at the resend:
    another instance (a partition taken over, a restart) reads it from the log."""
    opened = event(settings, "case.opened", case_id=new_case_id())
    first = await submit(js, nats_client, settings, opened)
    assert first.receipt is not None
    await admission.stop()
    later = datetime.now(UTC) + timedelta(hours=1)
    successor = await _service(nats_client, js, settings, clock=lambda: later)
    try:
        again = await submit(js, nats_client, settings, opened)
    finally:
        await successor.stop()
    assert (again.admitted, again.duplicate) == (True, True)
    assert again.receipt == first.receipt


async def test_chain_and_id_rules(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()
    first = await submit(js, nats_client, settings, event(settings, "case.opened", case_id=case))
    assigned = event(
        settings,
        "case.assigned",
        case_id=case,
        data=OWNED_BY_KP2MI,
        prev=None,
    )
    moved = await submit(js, nats_client, settings, assigned)
    assert (moved.admitted, moved.code) == (False, "chain_moved")
    assert moved.head is not None
    assert moved.head.hash == first.hash
    chained = event(
        settings,
        "case.assigned",
        case_id=case,
        data=OWNED_BY_KP2MI,
        prev=first.hash,
    )
    assert (await submit(js, nats_client, settings, chained)).admitted
    # The same id with other content, in the same case and in another.
    other = event(
        settings,
        "case.assigned",
        case_id=case,
        event_id=chained.id,
        data=OWNED_BY_KEMLU,
    )
    assert (await submit(js, nats_client, settings, other)).code == "duplicate_id"
    elsewhere = event(settings, "case.opened", case_id=new_case_id(), event_id=first.event_id)
    assert (await submit(js, nats_client, settings, elsewhere)).code == "duplicate_id"


async def test_refusal_codes(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()

    async def code(ev: Event) -> str | None:
        answer = await submit(js, nats_client, settings, ev)
        assert not answer.admitted
        return answer.code

    future = event(settings, "case.opened", case_id=case, time=NOW + timedelta(days=365))
    assert await code(future) == "time_skew"
    past = event(settings, "case.opened", case_id=case, time=NOW - timedelta(days=400))
    assert await code(past) == "time_skew"
    forged = event(settings, "case.opened", case_id=case)
    tampered = forged.envelope.model_copy(update={"target": "kemlu"})
    assert await code(Event(tampered, forged.data)) == "bad_signature"
    unsigned = forged.envelope.model_copy(update={"signature": None, "keyid": None})
    assert await code(Event(unsigned, forged.data)) == "unsigned"
    assert (await js.stream_info(settings.stream)).state.messages == 0


async def test_raw_junk_is_refused_with_a_code(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()
    for body, expected in (
        (b"", "not_json"),
        (b"[1]", "not_json"),
        (b"{" * 70_000, "too_large"),
        (b"[" * 100 + b"]" * 100, "not_json"),
        (b'{"a":' * 30 + b"1" + b"}" * 30, "too_deep"),
        (b'{"id": "x"}', "contract"),
    ):
        inbox = f"_INBOX.kp2mi.{new_case_id()}"
        sub = await nats_client.subscribe(inbox, max_msgs=1)
        await js.publish(
            f"lintas_intake.kp2mi.{case}",
            body,
            stream=intake_stream(settings),
            headers={"Lintas-Reply": inbox},
        )
        answer = Answer.model_validate_json((await sub.next_msg(timeout=20)).data)
        assert (answer.admitted, answer.code) == (False, expected), body[:20]
    assert (await js.stream_info(settings.stream)).state.messages == 0


async def test_an_event_sent_under_another_agencys_name_is_refused(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    case = new_case_id()
    ev = event(settings, "case.opened", case_id=case, source="kemlu")
    inbox = f"_INBOX.kp2mi.{new_case_id()}"
    sub = await nats_client.subscribe(inbox, max_msgs=1)
    await js.publish(
        f"lintas_intake.kp2mi.{case}",
        encode(ev.envelope),
        stream=intake_stream(settings),
        headers={"Lintas-Reply": inbox},
    )
    answer = Answer.model_validate_json((await sub.next_msg(timeout=20)).data)
    assert (answer.code, answer.field) == ("subject_mismatch", "source")


async def test_a_partition_fails_over_when_its_writer_dies(
    admission: AdmissionService, nats_client: NATS, js: Any, settings: Settings
) -> None:
    standby = await _service(nats_client, js, settings, instance="standby")
    try:
        assert admission.held == set(range(settings.admission_partitions))
        assert standby.held == set()
        # The writer dies without releasing anything: its leases must age out.
        await end_tasks(admission._tasks)
        admission._tasks = []
        answer = await submit(
            js, nats_client, settings, event(settings, "case.opened", case_id=new_case_id())
        )
        assert answer.admitted
        assert standby.held
    finally:
        await standby.stop()


async def test_stop_ends_partitions_whose_renewals_lose_their_cancellation(
    nats_client: NATS, js: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease renewed back to back (a lease of 30 ms) is a renewal in flight whenever
    stop() comes, and on Python 3.11 a cancel landing as its reply does is lost (CPython
    gh-86296): stop() must still end every partition, not wait for ever."""
    for agency in ("kp2mi", "admission"):
        ensure_agency_key(settings, agency)
    await declare_platform(js, settings, [])
    monkeypatch.setattr(service_module, "ADMISSION_LEASE_S", 0.03)
    for round_ in range(16):
        service = await _service(nats_client, js, settings, instance=f"i{round_}")
        partitions = list(service._tasks)
        await asyncio.sleep(0.05)  # renewing
        stopping = asyncio.create_task(service.stop())
        done, _ = await asyncio.wait({stopping}, timeout=20)
        if not done:
            for task in partitions:
                task.cancel()
        assert stopping in done, f"round {round_}: stop() waited on a partition for ever"
        assert all(task.done() for task in partitions)


async def test_a_batch_longer_than_the_lease_keeps_its_partition(
    admission: AdmissionService,
    nats_client: NATS,
    js: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An overloaded writer (one batch outlasting the lease) still renews its lease: no
    standby takes the partition over, and the senders waiting are answered by it."""
    entered, release = asyncio.Event(), asyncio.Event()
    decide = admission._decide

    async def slow(raw: bytes, agency: str, case_id: str, **kw: Any) -> Answer:
        entered.set()
        await release.wait()
        return await decide(raw, agency, case_id, **kw)

    monkeypatch.setattr(admission, "_decide", slow)
    # The premise: the writer holds every partition before the standby starts polling (on a
    # loaded machine a lease try can fail at start, and the standby would then take one).
    assert admission.held == set(range(settings.admission_partitions))
    standby = await _service(nats_client, js, settings, instance="standby")
    entering: asyncio.Task[bool] | None = None
    try:
        opened = event(settings, "case.opened", case_id=new_case_id())
        sending = asyncio.create_task(submit(js, nats_client, settings, opened))
        # Waits for the writer's batch, or for the send to end some other way (answered by
        # the standby, or given up), so that a broken premise fails here instead of hanging.
        entering = asyncio.create_task(entered.wait())
        await asyncio.wait({entering, sending}, return_when=asyncio.FIRST_COMPLETED)
        assert entered.is_set(), "the event was not decided by the writer holding the lease"
        # What is tested is time passing with the batch unfinished: half again the lease's
        # life, through which the standby polls for a free lease.
        await asyncio.sleep(ADMISSION_LEASE_S * 1.5)
        assert standby.held == set()
        assert admission.held == set(range(settings.admission_partitions))
        release.set()
        assert (await sending).admitted
    finally:
        release.set()
        if entering is not None:
            entering.cancel()
        await standby.stop()


async def test_junk_is_refused_before_any_case_is_read(
    admission: AdmissionService,
    nats_client: NATS,
    js: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A case's state costs a head read or a walk checking every signature: junk sent for
    random case ids (off contract, or not signed by its source) must not cost one."""
    loads: list[str] = []
    real_load = cases_module.load

    async def counted(reads: Any, verifier: Any, case_id: str, batch: int = 256) -> Any:
        loads.append(case_id)
        return await real_load(reads, verifier, case_id, batch)

    monkeypatch.setattr(cases_module, "load", counted)
    sender = Admission(nats_client, js, intake_stream(settings), wait_s=20)

    async def code(body: bytes, case_id: str) -> str | None:
        return (await sender.send(body, "kp2mi", case_id, "test")).code

    honest = event(settings, "case.opened", case_id=new_case_id())
    altered = json.loads(encode(honest.envelope))
    altered["time"] = (NOW - timedelta(minutes=1)).isoformat()
    assert await code(json.dumps(altered).encode(), honest.case_id) == "bad_signature"
    assert await code(b'{"id": "x"}', new_case_id()) == "contract"
    assert await code(b"\xff" * 10, new_case_id()) == "not_json"
    assert loads == []
    assert (await sender.send(encode(honest.envelope), "kp2mi", honest.case_id, "t")).admitted
    assert loads == [honest.case_id]
