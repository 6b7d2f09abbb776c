"""Erasure by crypto-shredding: after ``lintas case erase``, a child's identifying values are
unrecoverable from the stream, an archive, every projection and the logs, while the log
still verifies and replays."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session
from structlog.testing import capture_logs

from lintas.cli import main
from lintas.consumers.app import Databases, attach_agency, attach_record, create_broker
from lintas.consumers.casefile import ERASED, read_case_file
from lintas.consumers.projections import load_record
from lintas.contracts import BROADCAST, CaseErased, new_case_id, uuid7
from lintas.infra.keys.signing import Verifier, ensure_sealer_key, load_registry
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import case_keys_stream, declare_platform, deployment_consumers
from lintas.infra.privacy.casekeys import list_case_keys
from lintas.infra.settings import Settings
from tests.support.helpers import T0, Applied, consent, signed
from tests.support.tracing import SpanCapture

pytestmark = [pytest.mark.nats, pytest.mark.slow]

MARK = "ERASE-ME"
CHILD = {
    "full_name": f"Siti Rahayu {MARK}-NAME",
    "birth_date": "2013-08-17",
    "mother_name": f"Wartini {MARK}-MOTHER",
    "father_name": f"Kasmadi {MARK}-FATHER",
    "address": f"Dusun Sumberrejo RT 02 {MARK}-ADDRESS",
}
NUMBER = f"3525-{MARK}-NIK"
NOTES = f"afraid of the dark {MARK}-NOTES"
AGENCIES = ["kp2mi", "dukcapil", "kemensos"]
IDENTIFYING = [*(v for k, v in CHILD.items() if k != "birth_date"), NUMBER, NOTES]


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def _files(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def _found(root: Path, needles: list[bytes]) -> list[str]:
    """``root``'s files holding any of ``needles`` (bytes, as stored on disk)."""
    hits = []
    for path in _files(root):
        body = path.read_bytes()
        hits += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in body]
    return hits


def _database_text(url: str) -> str:
    """Every row of every table of a PostgreSQL database, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                str(row[0])
                for table in inspect(engine).get_table_names()
                for row in conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t'))
            )
    finally:
        engine.dispose()


async def _pathway(case_id: str, kemlu: Any, kp2mi: Any, dukcapil: Any) -> None:
    """Opened with the child's identity, consented, a document number, referral notes."""
    opened = {
        "situation": "undocumented_abroad",
        "location": {"country": "MY", "subdivision": "MY-12"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
        "risk_level": "high",
        "child": CHILD,
    }
    await kemlu.publish("case.opened", opened, case_id=case_id, target="kp2mi", time=T0)
    await consent(kemlu, case_id, AGENCIES, at=T0)
    await kp2mi.publish(
        "case.assigned",
        {"owner": "kp2mi", "officer_ref": "P2MI-7"},
        case_id=case_id,
        target=BROADCAST,
    )
    await kp2mi.publish(
        "document.requested",
        {"request_id": "d-1", "kind": "nik"},
        case_id=case_id,
        target="dukcapil",
    )
    await dukcapil.publish(
        "document.issued",
        {
            "request_id": "d-1",
            "kind": "nik",
            "number": NUMBER,
            "issuing_office": "35.25",
            "issued_on": "2025-03-02",
        },
        case_id=case_id,
        target="kp2mi",
    )
    await kp2mi.publish(
        "referral.requested",
        {"referral_id": "r-1", "service": "shelter", "notes": NOTES},
        case_id=case_id,
        target="kemensos",
    )


async def test_after_erasure_nothing_identifying_survives_and_the_log_still_verifies(
    nats_server: EmbeddedNats,
    admission: object,
    js: JetStreamContext,
    settings: Settings,
    database_url: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tracing: SpanCapture,
) -> None:
    settings = settings.model_copy(update={"database_url": database_url})
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LINTAS_NATS_URL", nats_server.url)
    if database_url:
        monkeypatch.setenv("LINTAS_DATABASE_URL", database_url)
    await declare_platform(js, settings, deployment_consumers(AGENCIES))
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    dukcapil = signed(js, settings, "dukcapil")
    case_id, other = new_case_id(), new_case_id()
    logs: list[Any] = []
    outputs: list[str] = []  # what the CLI printed, on stdout and stderr
    with capture_logs() as captured:
        for case in (case_id, other):  # another case, untouched by the erasure
            await _pathway(case, kemlu, kp2mi, dukcapil)
    logs += captured
    # What an agency holding the key can read: the values are there, before erasure.
    wrapped = [
        (await js.get_msg(case_keys_stream(), e.seq)).data or b""
        for e in await list_case_keys(js, case_id)
        if e.agency is not None
    ]
    assert len(wrapped) == 4  # kemlu, and the three agencies its consent covers
    secrets = [json.loads(w)["ct"].encode() for w in wrapped]
    kp2mi_keys = kp2mi.gate.keys
    assert kp2mi_keys is not None
    data_key = await kp2mi_keys.data_key(case_id)
    assert data_key is not None
    store = nats_server.store_dir
    assert len(_found(store, secrets)) == len(secrets), "the scan finds wrapped keys on disk"

    databases = Databases(settings)
    broker = create_broker(nats_server.url)
    applied = Applied()
    verifier = Verifier(load_registry(settings))
    spans = tracing.provider
    attach_record(
        broker, databases, settings, on_commit=[applied], verifier=verifier, tracer_provider=spans
    )
    for agency in AGENCIES:
        attach_agency(
            broker,
            databases,
            settings,
            agency,
            on_commit=[applied],
            verifier=verifier,
            tracer_provider=spans,
        )
    try:
        with capture_logs() as captured:
            await broker.start()
            # Per case: record 6; kp2mi 4 in, 3 sent; dukcapil 3 in, 1 sent; kemensos 3 in.
            await applied.wait_for(2 * (6 + 7 + 4 + 3))
            engine, _ = databases.for_consumer("worklist-kp2mi")
            before = await read_case_file(engine, "kp2mi", case_id, kp2mi_keys)
        logs += captured
        assert {str(f.value) for f in before if f.field == "number"} == {NUMBER}
        assert any(CHILD["full_name"] in str(f.value) for f in before)

        # What a leak of dukcapil's X25519 key would expose: both cases, these fields.
        capsys.readouterr()
        assert await cli("case", "exposed", "--agency", "dukcapil", "--json") == 0
        exposed = json.loads(capsys.readouterr().out)
        assert {c["case_id"] for c in exposed["cases"]} == {case_id, other}
        assert {tuple(c["sealed_fields"]) for c in exposed["cases"]} == {
            ("case.opened.child", "document.issued.number", "referral.requested.notes")
        }

        # Only the owner, and only a data protection officer.
        with pytest.raises(SystemExit):
            await cli("case", "erase", case_id, "--reason", "subject_request")
        refused = await cli(
            "case", "erase", case_id, "--reason", "subject_request",
            "--role", "data_protection_officer", "--agency", "kemlu",
        )  # fmt: skip
        assert refused == 1
        outputs.append(str(capsys.readouterr()))
        assert "only the case's owner (kp2mi) may erase" in outputs[-1]

        assert await cli(
            "case", "erase", case_id, "--reason", "subject_request",
            "--role", "data_protection_officer", "--requested-by", "parent",
        ) == 0  # fmt: skip
        outputs.append(str(capsys.readouterr()))
        erased = " ".join(outputs[-1].split())
        assert f"case {case_id} erased by kp2mi (data_protection_officer)" in erased
        # case.erased: the record, three inboxes, and kp2mi's own sent events.
        await applied.wait_for(2 * (6 + 7 + 4 + 3) + 5)
    finally:
        await broker.stop()

    # The keys are gone everywhere the key store kept them, and no new one can be made.
    assert [e.key for e in await list_case_keys(js, case_id)] == [f"{case_id}.erased"]
    for agency in ("kemlu", *AGENCIES):
        keys = signed(js, settings, agency).gate.keys
        assert keys is not None
        assert await keys.data_key(case_id) is None, agency
        assert await keys.data_key(other) is not None, f"{agency}: the other case is untouched"
    fresh = signed(js, settings, "kp2mi").gate.keys  # another process of kp2mi
    assert fresh is not None
    with pytest.raises(CaseErased):
        await fresh.sealing_key(case_id)
    with pytest.raises(CaseErased):
        await kemlu.publish("case.reopened", {"reason": "again"}, case_id=case_id, target="kp2mi")

    assert await cli("case", "exposed", "--agency", "dukcapil", "--json") == 0
    exposed = json.loads(capsys.readouterr().out)
    assert [c["case_id"] for c in exposed["cases"]] == [other], "nothing of the erased case"

    # The projections say erased, and open nothing.
    engine, _ = databases.for_consumer("worklist-kp2mi")
    after = await read_case_file(engine, "kp2mi", case_id, kp2mi_keys)
    assert {f.access for f in after} == {ERASED}
    assert len(after) == len(before)
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        record = load_record(session, case_id)
    assert record is not None
    assert record.erasure is not None
    assert {p.state for p in record.personal} == {"erased"}
    databases.dispose()

    # The log: verified, exported, replayed; [erased] where the data was.
    assert await cli("verify") == 0
    outputs.append(str(capsys.readouterr()))
    assert "the authority policy, hash chains and sequence hold" in outputs[-1]
    archive = tmp_path / "after-erasure"
    ensure_sealer_key(settings)  # exported on the platform's host, which holds the sealer's key
    assert await cli("export", "--out", str(archive)) == 0
    keys = tmp_path / "lintas-keys.json"
    assert await cli("keys", "export", "--out", str(keys)) == 0
    assert await cli("verify", "--archive", str(archive), "--keys", str(keys)) == 0
    replayed = f"sqlite:///{tmp_path / 'replay.db'}"
    outputs.append(str(capsys.readouterr()))
    assert await cli("replay", "--database", replayed, "--case", case_id) == 0
    shown = capsys.readouterr().out
    outputs.append(shown)
    assert re.search(r"seq \d+ case\.opened child: \[erased\]", shown), shown
    assert re.search(r"seq \d+ document\.issued number: \[erased\]", shown), shown
    assert re.search(r"seq \d+ referral\.requested notes: \[erased\]", shown), shown
    assert "3 [erased]; 1 case erased" in shown

    # Nothing identifying anywhere, and none of the case's keys on disk: not in the
    # stream's or the key store's files, the archive, the projections, or the logs.
    identifying = [v.encode() for v in IDENTIFYING]
    keys_on_disk = [*secrets, data_key]
    assert _found(store, identifying + keys_on_disk) == []
    assert _found(archive, identifying + keys_on_disk) == []
    assert _found(settings.data_dir, identifying + keys_on_disk) == []  # SQLite files too
    assert _found(tmp_path, [data_key]) == []
    if database_url:
        rows = _database_text(database_url)
        assert rows, "the projections are in PostgreSQL"
        for value in IDENTIFYING:
            assert value not in rows
    logged = json.dumps(logs, default=str)
    assert "event.published" in logged, "the logs were captured"
    assert MARK not in logged
    assert MARK not in "".join(outputs)
    # ... nor in the consumers' spans: names, attributes, events and links.
    traced = [span.to_json() for span in tracing.spans()]
    assert any(case_id in text for text in traced), "the spans were captured"
    for value in IDENTIFYING:
        assert not any(value in text for text in traced), value


async def test_an_erasure_retried_completes_and_changes_nothing_more(
    js: JetStreamContext, settings: Settings
) -> None:
    """A second case.erased (or a retry with the same id) erases again, idempotently."""
    await declare_platform(js, settings, [])
    kemlu = signed(js, settings, "kemlu")
    case_id = new_case_id()
    await kemlu.publish(
        "case.opened",
        {
            "situation": "neglected",
            "location": {"country": "ID"},
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
            "child": {"full_name": f"Anak {MARK}"},
        },
        case_id=case_id,
        target="kp2mi",
    )
    erasure: dict[str, Any] = {
        "officer_role": "data_protection_officer",
        "requested_by": "retention_ended",
        "legal_basis": ["UU 27/2022 Pasal 43"],
        "reason": "retention_ended",
    }
    event_id = str(uuid7())
    first = await kemlu.publish(
        "case.erased", erasure, case_id=case_id, target="all", event_id=event_id
    )
    again = await kemlu.publish(
        "case.erased", erasure, case_id=case_id, target="all", event_id=event_id
    )
    assert (again.duplicate, again.stream_seq) == (True, first.stream_seq)
    assert [e.key for e in await list_case_keys(js, case_id)] == [f"{case_id}.erased"]
