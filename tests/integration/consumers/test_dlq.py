"""Operators' quarantine tooling on a real bus: list, show (masked), retry exactly once."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext
from rich.console import Console
from sqlmodel import Session

from lintas.cli import main
from lintas.cli._dlq import dlq_list, dlq_retry, dlq_show
from lintas.consumers.app import Databases
from lintas.consumers.projections import Batch, RecordProjection, load_record
from lintas.consumers.quarantine import QuarantineEntry, list_entries
from lintas.consumers.quarantine import put as quarantine_put
from lintas.consumers.rebuild import build_of, prepare
from lintas.consumers.retry import retry_entry
from lintas.contracts import build_data, encode, make_event
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import Signer, ensure_agency_key
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from tests.support.helpers import declare_record, signed, start_record
from tests.support.tracing import SpanCapture

pytestmark = pytest.mark.nats

CHILD = {"full_name": "Ayu Lestari", "birth_date": "2014-05-02", "address": "Dusun 4, RT 07"}


def _console() -> Console:
    return Console(record=True, width=200)


def _opened(
    seq: int,
    case_id: str,
    *,
    source: str = "kemlu",
    signer: Signer | None = None,
    attempts: int = 1,
    reason: str = "a bug",
) -> QuarantineEntry:
    """A quarantined ``case.opened`` of ``source`` (signed by ``signer``, if any) for the
    record, at stream sequence ``seq``."""
    data = {
        "situation": "neglected",
        "location": {"country": "ID"},
        "jurisdiction": {"country": "ID"},
        "risk_level": "low",
    }
    envelope = make_event(
        build_data("case.opened", data), source=source, target="kp2mi", case_id=case_id
    ).envelope
    return QuarantineEntry(
        consumer="record",
        stream="LINTAS",
        stream_seq=seq,
        subject=envelope.nats_subject,
        attempts=attempts,
        reason=reason,
        body=encode(signer.sign(envelope) if signer is not None else envelope),
    )


async def test_list_show_and_retry_exactly_once(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    settings: Settings,
    monkeypatch: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await declare_record(js, settings)
    kemlu = signed(js, settings, "kemlu")
    opened = await kemlu.publish(
        "case.opened",
        {
            "situation": "undocumented_abroad",
            "location": {"country": "MY", "subdivision": "MY-12"},
            "jurisdiction": {"country": "MY"},
            "risk_level": "high",
            "child": CHILD,
        },
        case_id="C" + "1" * 26,
        target="kp2mi",
    )
    body = (await js.get_msg(settings.stream, opened.stream_seq)).data
    assert body is not None
    await js.publish(  # a version from the future: can never be applied by this build
        opened.event.envelope.nats_subject,
        body.replace(b'"dataversion":4', b'"dataversion":7'),
        stream=settings.stream,
    )
    broken = RecordProjection.apply_batch

    def fails_on_opened(self: RecordProjection, session: Session, batch: Batch) -> int:
        if any(event.type == "case.opened" for _, event in batch):
            raise RuntimeError("a bug, since fixed")
        return broken(self, session, batch)

    monkeypatch.setattr(RecordProjection, "apply_batch", fails_on_opened)
    stored: list[int] = []
    three_stored = asyncio.Event()

    async def put_and_count(*args: Any) -> int:
        entry_id = await quarantine_put(*args)
        stored.append(entry_id)
        if len(stored) == 3:
            three_stored.set()
        return entry_id

    monkeypatch.setattr("lintas.consumers.app.put", put_and_count)
    stop, databases = await start_record(nats_server.url, settings, [])
    try:
        # seq 3 is for a case the record never saw opened (seq 1 is quarantined): it
        # stays unknown, so it is quarantined too, to be retried once the case exists.
        await kemlu.publish(
            "document.requested",
            {"request_id": "doc-1", "kind": "nik"},
            case_id="C" + "1" * 26,
            target="kp2mi",
        )
        await asyncio.wait_for(three_stored.wait(), 20)
    finally:
        await stop()
    monkeypatch.undo()  # the bug is fixed

    console = _console()
    assert await dlq_list(console, js, settings, as_json=True) == 0
    listed = {e["stream_seq"]: e for e in json.loads(console.export_text())}
    assert set(listed) == {1, 2, 3}
    assert listed[3]["reason"] == (
        "document.requested v2 could not be applied: document.requested for case "
        f"{'C' + '1' * 26}, which was never opened"
    )
    assert {e["consumer"] for e in listed.values()} == {"record"}
    # Seq 2 breaks its contract on decoding; seq 1 fails only on applying, three times.
    assert listed[1]["reason"] == "case.opened v4 could not be applied: RuntimeError on 3 attempts"
    assert "newer than this build" in listed[2]["reason"]
    poisoned, future = listed[1]["id"], listed[2]["id"]

    console = _console()
    assert await dlq_show(console, js, settings, poisoned) == 0
    shown = console.export_text()
    assert '"child": "[personal]"' in shown
    for value in CHILD.values():
        assert value not in shown

    console = _console()
    assert await dlq_retry(console, js, settings, None) == 1  # --all: two apply, one stays
    out = console.export_text()
    assert f"retried {poisoned} (record seq 1): case.opened applied to record" in out
    assert f"retried {listed[3]['id']} (record seq 3): document.requested applied to record" in out
    assert f"kept {future} (record seq 2): still cannot be applied" in out
    assert "2 retried, 1 still quarantined" in out
    assert [e.stream_seq async for e in list_entries(js, settings)] == [2]

    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        record = load_record(session, "C" + "1" * 26)
    assert record is not None
    assert [(e.seq, e.type) for e in record.timeline] == [
        (1, "case.opened"),
        (3, "document.requested"),
    ]
    assert record.situation == "undocumented_abroad"

    # Retrying a retried entry again is impossible (deleted), and would change nothing.
    console = _console()
    capsys.readouterr()
    assert await dlq_retry(console, js, settings, poisoned) == 1
    assert f"no quarantine entry {poisoned}" in capsys.readouterr().err  # a failure
    databases.dispose()


def test_retrying_the_same_entry_twice_applies_it_once(settings: Settings) -> None:
    entry = _opened(41, "C" + "2" * 26, source="kemensos", attempts=3)
    databases = Databases(settings)
    try:
        # Unsigned, as a consumer that checks no signatures applies it.
        first = retry_entry(entry, databases, verifier=None)
        second = retry_entry(entry, databases, verifier=None)
        engine, _ = databases.for_consumer("record")
        with Session(engine) as session:
            record = load_record(session, "C" + "2" * 26)
    finally:
        databases.dispose()
    assert (first.applied, first.detail) == (True, "case.opened applied to record")
    assert (second.applied, second.detail) == (True, "already applied by an earlier retry")
    assert record is not None
    assert [(e.seq, e.type) for e in record.timeline] == [(41, "case.opened")]


async def test_a_retry_checks_the_signature_again(js: JetStreamContext, settings: Settings) -> None:
    """A message quarantined for its signature is applied on retry only once it holds: a
    forgery stays; one whose source's key was missing goes through once the key is known."""
    await declare_record(js, settings)
    ensure_agency_key(settings, "kemlu")

    async def quarantined(signer: Signer, seq: int, case_id: str) -> int:
        entry = _opened(seq, case_id, signer=signer, reason="signature")
        return await quarantine_put(js, settings, entry)

    forged = await quarantined(Signer("kemlu", Ed25519PrivateKey.generate()), 5, "C" + "3" * 26)
    genuine = await quarantined(Signer.load(settings, "kemlu"), 6, "C" + "4" * 26)
    console = _console()
    capture = SpanCapture()
    assert await dlq_retry(console, js, settings, None, capture.provider) == 1
    out = console.export_text()
    assert f"kept {forged} (record seq 5): its signature still does not hold" in out
    assert "is not in the registry" in out
    assert f"retried {genuine} (record seq 6): case.opened applied to record" in out
    assert [e.id async for e in list_entries(js, settings)] == [forged]
    # Each retry is a span of its event's trace, saying what became of it.
    spans = {(s.attributes or {})["lintas.stream.sequence"]: s for s in capture.spans()}
    assert set(spans) == {5, 6}
    for seq, outcome, case_id in ((5, "kept", "C" + "3" * 26), (6, "applied", "C" + "4" * 26)):
        attributes = spans[seq].attributes or {}
        assert spans[seq].name == "retry lintas.kemlu.kp2mi.case.opened.{case_id}"
        assert attributes["lintas.outcome"] == outcome
        assert attributes["lintas.case.id"] == case_id
        assert attributes["messaging.operation.name"] == "retry"
        assert attributes["messaging.consumer.group.name"] == "record"


async def test_a_retry_that_cannot_read_the_key_bucket_checks_against_the_data_dir(
    js: JetStreamContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An authorization written before the operator could read the key bucket: the retry
    says so, and checks signatures against the data dir's registry instead."""

    async def refused(*_args: Any) -> Any:
        raise BusUnavailable("reading the LINTAS_KEYS bucket: no answer")

    monkeypatch.setattr("lintas.cli._dlq.trusted_registry", refused)
    await declare_record(js, settings)
    ensure_agency_key(settings, "kemlu")
    genuine = await quarantine_put(
        js, settings, _opened(7, "C" + "5" * 26, signer=Signer.load(settings, "kemlu"))
    )
    impostor = Signer("kemlu", Ed25519PrivateKey.generate())
    forged = await quarantine_put(js, settings, _opened(8, "C" + "5" * 26, signer=impostor))
    console = _console()
    assert await dlq_retry(console, js, settings, None) == 1
    out = console.export_text()
    assert "cannot read the public-key bucket" in out
    assert "lintas infra config" in out
    assert f"retried {genuine} (record seq 7): case.opened applied to record" in out
    assert f"kept {forged} (record seq 8): its signature still does not hold" in out


async def test_a_rebuild_supersedes_what_was_quarantined_before_it(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record quarantined a case.opened it failed on (a bug) and one of a future
    version; the bug is fixed and ``lintas rebuild record`` applies the first from the log
    and quarantines the second anew (a copy of its own build, not deduplicated into the old
    one). Retrying the entries of before the rebuild would apply the first twice: they are
    dropped; the rebuild's own entry stays."""
    await declare_record(js, settings)
    kemlu = signed(js, settings, "kemlu")
    case_id = "C" + "3" * 26
    opened = await kemlu.publish(
        "case.opened",
        {
            "situation": "neglected",
            "location": {"country": "ID"},
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
        },
        case_id=case_id,
        target="kp2mi",
    )
    body = (await js.get_msg(settings.stream, opened.stream_seq)).data
    assert body is not None
    await js.publish(
        opened.event.envelope.nats_subject,
        re.sub(rb'"dataversion":\d+', b'"dataversion":99', body),
        stream=settings.stream,
    )
    broken = RecordProjection.apply_batch

    def fails_on_opened(self: RecordProjection, session: Session, batch: Batch) -> int:
        if any(event.type == "case.opened" for _, event in batch):
            raise RuntimeError("a bug, since fixed")
        return broken(self, session, batch)

    stored: list[int] = []
    both = asyncio.Event()

    async def put_and_count(*args: Any) -> int:
        stored.append(await quarantine_put(*args))
        if len(stored) == 2:
            both.set()
        return stored[-1]

    with monkeypatch.context() as bug:
        bug.setattr(RecordProjection, "apply_batch", fails_on_opened)
        bug.setattr("lintas.consumers.app.put", put_and_count)
        stop, databases = await start_record(nats_server.url, settings, [])
        try:
            await asyncio.wait_for(both.wait(), 30)
        finally:
            await stop()
    engine, _ = databases.for_consumer("record")
    before = build_of(engine, "record", settings.stream)
    databases.dispose()
    old = [e async for e in list_entries(js, settings)]
    assert {(e.stream_seq, e.build) for e in old} == {(1, before), (2, before)}

    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LINTAS_NATS_URL", nats_server.url)
    assert await asyncio.to_thread(main, ["rebuild", "record"]) == 0
    databases = Databases(settings)
    engine, _ = databases.for_consumer("record")
    after = build_of(engine, "record", settings.stream)
    assert after is not None
    assert after != before
    entries = [e async for e in list_entries(js, settings)]
    # (seq 2 is refused on decoding, before seq 1 fails on applying)
    assert [(e.stream_seq, e.build) for e in entries] == [(2, before), (1, before), (2, after)]

    console = _console()
    assert await dlq_retry(console, js, settings, None) == 1  # the future version stays
    out = " ".join(console.export_text().split())
    first = next(e.id for e in old if e.stream_seq == 1)
    assert f"dropped {first} (record seq 1): quarantined before record's projection" in out
    assert "0 retried, 2 dropped (from before a rebuild), 1 still quarantined" in out
    assert [(e.stream_seq, e.build) async for e in list_entries(js, settings)] == [(2, after)]
    with Session(engine) as session:
        record = load_record(session, case_id)
    databases.dispose()
    assert record is not None
    assert [(e.seq, e.type) for e in record.timeline] == [(1, "case.opened")]  # once


def test_an_entry_from_before_builds_were_noted_is_judged_by_its_time(
    settings: Settings,
) -> None:
    """An entry with no build (quarantined by older code) from before the projection's
    build is dropped on retry; one from after it is applied."""
    databases = Databases(settings)
    try:
        engine, _ = databases.for_consumer("record")
        prepare(engine, RecordProjection(), "LINTAS", ["record"])
        built = build_of(engine, "record", "LINTAS")
        assert built is not None
        at = datetime.fromisoformat(built)
        older = replace(_opened(5, "C" + "4" * 26), quarantined_at=at - timedelta(seconds=1))
        newer = replace(_opened(6, "C" + "5" * 26), quarantined_at=at + timedelta(seconds=1))
        dropped = retry_entry(older, databases, verifier=None)
        applied = retry_entry(newer, databases, verifier=None)
    finally:
        databases.dispose()
    assert (dropped.applied, dropped.superseded) == (False, True)
    assert (applied.applied, applied.superseded) == (True, False)
