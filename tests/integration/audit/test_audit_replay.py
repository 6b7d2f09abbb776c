"""``lintas replay`` and ``lintas record digest``: the record rebuilt from the log alone.

Replays go into fresh SQLite files; the live record is the real record projector
(FastStream, the consumer edge, quarantine) run over the same stream.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session, SQLModel
from structlog.testing import capture_logs

from lintas.audit import (
    NotAFreshStore,
    RecordDigest,
    StreamReader,
    _shards,
    live_record_url,
    record_digest,
    replay,
)
from lintas.audit.replay import ReplayResult, ReplayWorkerDied, open_fresh_store
from lintas.consumers import CaseRecord, record
from lintas.consumers.projections import RecordCaseRow, load_records
from lintas.consumers.record import DocumentIssued
from lintas.contracts import canonical_json, decode, new_case_id
from lintas.infra.db import create_db_engine
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from tests.support.audit import DAY, T0, ChainedAgencies, Sent, cli
from tests.support.helpers import Applied, declare_record, start_record
from tests.support.postgres import postgres_database

pytestmark = pytest.mark.nats

# lintas.audit re-exports the function replay under the module's name.
replay_module = importlib.import_module("lintas.audit.replay")

CASES = 4
DIGEST = re.compile(r"record digest (sha256:[0-9a-f]{64}) \((\d+) cases\)")


@pytest.fixture
async def log(js: JetStreamContext, settings: Settings) -> list[Sent]:
    await declare_record(js, settings)
    return await ChainedAgencies(js, settings).cases(CASES)


def _digest(out: str) -> tuple[str, int]:
    found = DIGEST.findall(out)
    assert len(found) == 1, out
    return found[0][0], int(found[0][1])


def _url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


async def test_replaying_twice_gives_one_digest_from_the_stream_and_the_archive(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = []
    for name in ("one.db", "two.db"):
        assert await cli("replay", "--database", _url(tmp_path, name)) == 0
        out = capsys.readouterr().out
        assert f"replayed {len(log)} events" in out
        assert f"{len(log)} applied, 0 skipped" in out
        digests.append(_digest(out))
    assert await cli("export", "--out", str(tmp_path / "a.tar.gz")) == 0
    assert (
        await cli(
            "replay",
            "--archive",
            str(tmp_path / "a.tar.gz"),
            "--database",
            _url(tmp_path, "three.db"),
        )
        == 0
    )
    digests.append(_digest(capsys.readouterr().out))
    assert digests[0] == digests[1] == digests[2]
    assert digests[0][1] == CASES
    # `record digest --database` reads a replayed store back to the same digest.
    assert await cli("record", "digest", "--database", _url(tmp_path, "one.db")) == 0
    assert _digest(capsys.readouterr().out) == digests[0]


async def test_replay_of_the_whole_stream_equals_the_live_record(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Including what the live projector quarantines: a forged event and an event of a
    case never opened are left out of both."""
    chained = ChainedAgencies(js, cli_env)
    stray = await chained.publish(
        "kp2mi",
        "dukcapil",
        "document.requested",
        {"request_id": "doc-9", "kind": "kk"},
        case_id=new_case_id(),
        time=T0,
    )
    forged = dict(log[0].doc, id="0195f000-0000-7000-8000-0000000000aa")
    forged["data"] = dict(forged["data"], risk_level="low")  # kemlu's signature no longer holds
    await js.publish(
        f"lintas.kemlu.kp2mi.case.opened.{log[0].case_id}",
        json.dumps(forged).encode(),
        stream=cli_env.stream,
    )
    more = await chained.cases(1)  # and the log goes on after them

    applied = Applied()
    with capture_logs():
        stop, databases = await start_record(
            nats_server.url, cli_env, [applied], Verifier(load_registry(cli_env))
        )
        try:
            await applied.wait_for(len(log) + len(more))
        finally:
            await stop()
    databases.dispose()
    assert stray.seq not in {seq for seq, _ in applied.events}

    assert await cli("record", "digest") == 0
    live = _digest(capsys.readouterr().out)
    assert live == (record_digest(live_record_url(cli_env)).digest, CASES + 1)
    assert await cli("replay", "--database", _url(tmp_path, "r.db")) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 skipped as the live record would (quarantined)" in out
    never = f"document.requested for case {stray.case_id}, which was never opened"
    assert f"stream seq {stray.seq}: {never}" in out
    assert "signature does not match" in out
    assert _digest(out) == live


async def test_replay_as_of_shows_the_record_as_it_stood_then(
    js: JetStreamContext, log: list[Sent], settings: Settings, tmp_path: Path
) -> None:
    # Case k opens on day k at 08:00 and closes at 13:00. At day 1, 10:30: case 0 is
    # closed, case 1 has its document issued and nothing else, cases 2 and 3 do not exist.
    as_of = T0 + DAY + timedelta(hours=2, minutes=30)
    url = _url(tmp_path, "asof.db")
    engine = open_fresh_store(url, settings)
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    result = await replay(
        reader.events(cut), engine, url, load_registry(settings), source="test", as_of=as_of
    )
    assert (result.applied, result.after_as_of, result.skipped) == (7 + 4, len(log) - 11, 0)
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
    engine.dispose()
    assert set(records) == {log[0].case_id, log[1].case_id}
    assert records[log[0].case_id].status == "closed"
    then = records[log[1].case_id]
    assert then.status == "open"
    assert [h.status for h in then.handoffs] == ["completed"]  # the document, no referral yet
    assert len(then.documents) == 1
    # Exactly the fold of that case's events up to then, and the digest says so too.
    expected = None
    for sent in log:
        if sent.case_id == log[1].case_id and decode(json.dumps(sent.doc).encode()).time <= as_of:
            expected = record.apply(expected, decode(json.dumps(sent.doc).encode()), sent.seq)
    assert then == expected
    assert result.digest is not None
    assert result.digest.cases == 2


async def test_replay_of_one_case(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_id = log[2].case_id
    url = _url(tmp_path, "case.db")
    assert await cli("replay", "--case", case_id, "--database", url) == 0
    out = capsys.readouterr().out
    assert "replayed 7 events" in out
    assert _digest(out)[1] == 1
    engine = create_db_engine(url)
    with Session(engine) as session:
        assert [r.case_id for r in load_records(session)] == [case_id]
    engine.dispose()


async def test_replay_refuses_the_live_database_and_any_store_not_fresh(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = live_record_url(cli_env)
    with pytest.raises(NotAFreshStore, match="live projections"):
        open_fresh_store(live, cli_env)
    assert await cli("replay", "--database", live) == 1
    assert "a replay writes to a fresh store" in capsys.readouterr().err
    assert not (cli_env.db_dir / "record.sqlite").exists()  # not even created

    used = _url(tmp_path, "used.db")
    assert await cli("replay", "--database", used) == 0
    capsys.readouterr()
    assert await cli("replay", "--database", used) == 1
    assert "already holds a coordination record" in " ".join(capsys.readouterr().err.split())

    shared = _url(tmp_path, "shared.db")
    monkeypatch.setenv("LINTAS_DATABASE_URL", shared)
    assert await cli("replay", "--database", shared) == 1
    assert "that is the live database" in capsys.readouterr().err


async def test_an_archive_replays_with_no_bus(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("replay", "--database", _url(tmp_path, "s.db")) == 0
    from_stream = _digest(capsys.readouterr().out)
    assert await cli("export", "--out", str(tmp_path / "a")) == 0
    monkeypatch.setenv("LINTAS_NATS_URL", "nats://127.0.0.1:1")  # nothing listens there
    as_of = (T0 + DAY + timedelta(hours=2, minutes=30)).isoformat()
    assert (
        await cli("replay", "--archive", str(tmp_path / "a"), "--database", _url(tmp_path, "a.db"))
        == 0
    )
    assert _digest(capsys.readouterr().out) == from_stream
    assert (
        await cli(
            "replay",
            "--archive",
            str(tmp_path / "a"),
            "--as-of",
            as_of,
            "--database",
            _url(tmp_path, "b.db"),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert _digest(out)[1] == 2
    assert f"{len(log) - 11} after --as-of" in out


def test_the_digest_is_sha256_of_canonical_records_in_case_id_order(tmp_path: Path) -> None:
    """The definition, spelled out: written in any order, read back in case id order."""
    url = _url(tmp_path, "digest.db")
    engine = create_db_engine(url)
    SQLModel.metadata.create_all(engine, tables=[RecordCaseRow.__table__])  # type: ignore[attr-defined]
    issued = DocumentIssued(
        kind="passport",
        issued_by="kemlu",
        issuing_office="KBRI-MYKUL",
        issued_on="2025-01-02",
        at=T0,
    )
    records = [
        CaseRecord(case_id=new_case_id(), situation="neglected", last_seq=n, documents=(issued,))
        for n in (1, 2, 3)
    ]
    # Written beyond ASCII, escapes included: RFC 8785 writes it as UTF-8, "\n" escaped.
    records.append(
        CaseRecord(
            case_id=new_case_id(),
            whereabouts='Kota Kinabalu, Sabah — \u00e9\u4e2d \U0001f600\n\t\x7f\x01"\\',
            last_seq=4,
        )
    )
    # Stored before ``erasure``, and before a document's ``valid_until``, were fields:
    # they digest as the current model reads them.
    older = json.loads(records[1].model_dump_json())
    del older["erasure"]
    nested = json.loads(records[2].model_dump_json())
    del nested["documents"][0]["valid_until"]
    # A number written as a float (by hand, say): read as the model reads it, an integer.
    records.append(CaseRecord(case_id=new_case_id(), last_seq=5))
    floated = records[4].model_dump_json().replace('"last_seq":5', '"last_seq":5.0')
    assert floated != records[4].model_dump_json()
    docs = [
        records[0].model_dump_json(),
        json.dumps(older),
        json.dumps(nested),
        records[3].model_dump_json(),
        floated,
    ]
    with Session(engine) as session:
        for rec, doc in reversed(list(zip(records, docs, strict=True))):
            session.add(
                RecordCaseRow(
                    case_id=rec.case_id, status=rec.status, last_seq=rec.last_seq, doc=doc
                )
            )
        session.commit()
    engine.dispose()
    expected = hashlib.sha256()
    for rec in sorted(records, key=lambda r: r.case_id):
        expected.update(canonical_json(rec.model_dump(mode="json")) + b"\n")
    assert record_digest(url) == RecordDigest("sha256:" + expected.hexdigest(), 5)
    empty = "sha256:" + hashlib.sha256().hexdigest()
    assert record_digest(_url(tmp_path, "missing.db")) == RecordDigest(empty, 0)
    assert not (tmp_path / "missing.db").exists()


@pytest.fixture
def fresh_postgres() -> Iterator[str | None]:
    """A second, empty PostgreSQL database to replay into (None without PostgreSQL)."""
    with postgres_database("lintas_replay") as url:
        yield url


async def test_live_and_replayed_records_digest_alike_on_either_backend(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    log: list[Sent],
    settings: Settings,
    tmp_path: Path,
    database_url: str | None,
    fresh_postgres: str | None,
) -> None:
    """The live record in SQLite or PostgreSQL; replays into SQLite and PostgreSQL."""
    live_settings = settings.model_copy(update={"database_url": database_url})
    applied = Applied()
    with capture_logs():
        stop, databases = await start_record(
            nats_server.url, live_settings, [applied], Verifier(load_registry(settings))
        )
        try:
            await applied.wait_for(len(log))
        finally:
            await stop()
    databases.dispose()
    live = record_digest(live_record_url(live_settings))
    assert live.cases == CASES
    targets = [_url(tmp_path, "replay.db")] + ([fresh_postgres] if fresh_postgres else [])
    for url in targets:
        engine = open_fresh_store(url, live_settings)
        reader = StreamReader(js, settings.stream)
        cut = await reader.cut()
        result = await replay(reader.events(cut), engine, url, load_registry(settings), source="t")
        engine.dispose()
        assert result.digest == live, url
    if database_url is not None:
        with pytest.raises(NotAFreshStore, match="live database"):
            open_fresh_store(database_url, live_settings)


async def test_replay_of_one_case_from_an_archive(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("export", "--out", str(tmp_path / "a")) == 0
    assert await cli("replay", "--case", log[2].case_id, "--database", _url(tmp_path, "c1")) == 0
    from_stream = _digest(capsys.readouterr().out)
    archive = str(tmp_path / "a")
    url = _url(tmp_path, "c2")
    assert (
        await cli("replay", "--archive", archive, "--case", log[2].case_id, "--database", url) == 0
    )
    out = capsys.readouterr().out
    assert "replayed 7 events" in out
    assert _digest(out) == from_stream


def _exit_at_once(*_: object) -> None:
    os._exit(3)


def _die_at_second_batch(job: _shards.ShardJob) -> None:
    """A worker that applies one batch, then dies."""
    _shards.start_worker(job)
    shard = _shards._WORKER
    assert shard is not None
    apply, calls = shard.apply, [0]

    def apply_once(batch: Any) -> _shards.ShardReport:
        calls[0] += 1
        if calls[0] > 1:
            os._exit(3)
        return apply(batch)

    shard.apply = apply_once  # type: ignore[method-assign]


def _die_at_flush(job: _shards.ShardJob) -> None:
    """A worker that applies every batch, then dies writing what it holds."""
    _shards.start_worker(job)
    shard = _shards._WORKER
    assert shard is not None
    shard.flush = lambda: os._exit(3)  # type: ignore[method-assign]


async def _replay_all(
    js: JetStreamContext, settings: Settings, url: str, **options: Any
) -> ReplayResult:
    engine = open_fresh_store(url, settings)
    try:
        reader = StreamReader(js, settings.stream)
        return await replay(
            reader.events(await reader.cut()),
            engine,
            url,
            load_registry(settings),
            source="test",
            **options,
        )
    finally:
        engine.dispose()


@pytest.mark.parametrize("pool", ["workers", "broken workers"])
async def test_a_replay_sharded_by_case_across_worker_processes_is_the_same_replay(
    js: JetStreamContext,
    log: list[Sent],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pool: str,
) -> None:
    """A big selection is split by case across worker processes that decode, check, fold
    and store (or, if no worker starts, applied here): the same events are applied and
    skipped, with the same digest and the same first reasons."""
    opened = log[1]
    assert opened.doc["type"] == "case.opened"
    forged = dict(opened.doc, id="0195f000-0000-7000-8000-0000000000bb")
    forged["data"] = dict(forged["data"], risk_level="low")  # the signature no longer holds
    await js.publish(
        f"lintas.kemlu.kp2mi.case.opened.{opened.case_id}",
        json.dumps(forged).encode(),
        stream=settings.stream,
    )
    await ChainedAgencies(js, settings).cases(2)

    here = await _replay_all(js, settings, _url(tmp_path, "here.db"), batch_size=7, workers=2)
    assert here.workers == 0  # a small selection: in this process
    monkeypatch.setattr(replay_module, "_BULK", 1)
    if pool == "broken workers":
        monkeypatch.setattr(
            replay_module._Shards,
            "_new_pool",
            lambda self: ProcessPoolExecutor(1, initializer=_exit_at_once, initargs=(None,)),
        )
    children = set(active_children())
    there = await _replay_all(js, settings, _url(tmp_path, "there.db"), batch_size=7, workers=2)
    assert there.workers == (2 if pool == "workers" else 0)
    # They exit while the record is digested, and are waited for.
    assert set(active_children()) <= children
    assert there.digest == here.digest is not None
    assert (there.applied, there.skipped) == (here.applied, here.skipped) == (len(log) + 14, 1)
    assert there.skipped_reasons == here.skipped_reasons
    assert "signature does not match" in there.skipped_reasons[0]


@pytest.mark.parametrize("when", ["at its second batch", "writing its records"])
async def test_a_worker_that_dies_after_applying_fails_the_replay(
    js: JetStreamContext,
    log: list[Sent],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """Its batches cannot be told applied or not: the replay says the store is incomplete
    rather than finishing with a record that lacks them."""
    monkeypatch.setattr(replay_module, "_BULK", 1)
    dies = _die_at_second_batch if when == "at its second batch" else _die_at_flush
    monkeypatch.setattr(
        replay_module._Shards,
        "_new_pool",
        lambda self: ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=dies, initargs=(self._job,)
        ),
    )
    with pytest.raises(ReplayWorkerDied, match="incomplete"):
        await _replay_all(js, settings, _url(tmp_path, "died.db"), batch_size=3, workers=2)
