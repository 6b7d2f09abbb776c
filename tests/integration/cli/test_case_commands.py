"""The commands that take a case id, and every reading command's ``--json``, on the demo's
bus, where authorization is on: each connects as the identity it runs as (the auditor
reads the log, the operator the quarantine, the platform erases)."""

from __future__ import annotations

import asyncio
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lintas.consumers.quarantine import QuarantineEntry, put
from lintas.contracts import build_data, encode, make_event, new_case_id, uuid7
from lintas.contracts.redaction import FREE_TEXT, PERSONAL, UNKNOWN
from lintas.demo import run_demo
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.credentials import js_options, uses_credentials
from lintas.infra.observability.tracing import CASE_ID
from lintas.infra.settings import Settings
from tests.support.audit import cli
from tests.support.samples import FAKE_SEALED
from tests.support.settings import isolated_settings

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One demo case, run once for the module, on a data dir's embedded bus (authorization
    on), which stops when the demo ends: that data dir, and the demo's result. (In a thread
    of its own: the event loop of a test is not running yet.)"""
    with pytest.MonkeyPatch.context() as monkeypatch:
        settings = isolated_settings(tmp_path_factory.mktemp("demo") / "data", monkeypatch)
        with ThreadPoolExecutor(1) as thread:
            demo = run_demo(settings, 1, timeout_s=120)
            result = thread.submit(asyncio.run, demo).result()
    return settings.data_dir, result


@pytest.fixture
def demo(demo_run: tuple[Path, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo's data dir copied as this test's (its store, keys, identities and
    projections, as the demo left them): the embedded bus each command then starts for its
    own duration, as an operator's shell would. A test changes its copy only."""
    ran, result = demo_run
    shutil.copytree(ran, settings.data_dir, symlinks=True)
    assert uses_credentials(settings, "auditor")
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("LINTAS_NATS_URL", raising=False)
    return result


def _said(captured: Any) -> str:
    return " ".join(captured.err.split())  # unwrapped


async def test_a_case_the_log_does_not_hold_gets_one_line_and_exit_3_from_every_command(
    demo: Any, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = new_case_id()
    line = f"no case {missing}: stream {settings.stream} holds no event of it"
    replayed, exported, page = tmp_path / "r.db", tmp_path / "case.tar.gz", tmp_path / "c.html"
    capsys.readouterr()
    for argv in (
        ["case", "show", missing],
        ["case", "show", missing, "--json"],
        ["verify", "--case", missing],
        ["verify", "--case", missing, "--json"],
        ["replay", "--database", f"sqlite:///{replayed}", "--case", missing, "--json"],
        ["export", "--out", str(exported), "--case", missing],
        ["report", missing, "--html", str(page)],
        ["trace", missing],
        [
            "case",
            "erase",
            missing,
            "--reason",
            "subject_request",
            "--role",
            "data_protection_officer",
        ],
    ):
        assert await cli(*argv) == 3, argv
        captured = capsys.readouterr()
        assert captured.out == "", argv  # not a verdict, a digest or an archive of nothing
        assert _said(captured) == line, argv
    assert not replayed.exists()
    assert not exported.exists()
    assert not page.exists()

    # The same answer from an archive, offline.
    archive = tmp_path / "all"
    assert await cli("export", "--out", str(archive)) == 0
    capsys.readouterr()
    for argv in (
        ["verify", "--archive", str(archive), "--case", missing],
        [
            "replay",
            "--database",
            f"sqlite:///{replayed}",
            "--archive",
            str(archive),
            "--case",
            missing,
        ],
    ):
        assert await cli(*argv) == 3, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert _said(captured) == f"no case {missing}: archive {archive} holds no event of it"
    assert not replayed.exists()

    # An agency knows only the cases it took part in: to it, one it holds nothing of (in
    # its worklist, consent books or case file) does not exist. Asked as the agency.
    owner = demo.records[0].owner
    assert await cli("case", "file", missing, "--agency", owner) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _said(captured) == f"no case {missing}: {owner}'s projection holds no event of it"
    assert await cli("case", "file", demo.records[0].case_id, "--agency", owner) == 0
    capsys.readouterr()

    # A case the log holds is no such answer.
    case_id = demo.records[0].case_id
    assert await cli("verify", "--case", case_id) == 0
    # (4: the archive holds, by its own keys only, as no --keys names a registry kept apart)
    assert await cli("verify", "--archive", str(archive), "--case", case_id) == 4


async def test_case_show_says_when_the_record_has_not_caught_up_with_the_stream(
    demo: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    record = demo.records[0]
    case_id = record.case_id
    capsys.readouterr()
    assert await cli("case", "show", case_id, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["record"]["case_id"] == case_id
    assert doc["record"]["last_seq"] == record.timeline[-1].seq
    assert doc["freshness"]["compared"] is True
    assert doc["freshness"]["behind"] == 0
    assert await cli("case", "show", case_id) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"The record is up to date with stream {settings.stream} for this case" in out

    # Erased while no record runs (the demo's consumers are gone): the record still says
    # sealed, and case show says it is one event of the case behind.
    erase = [
        "case",
        "erase",
        case_id,
        "--reason",
        "subject_request",
        "--role",
        "data_protection_officer",
    ]
    assert await cli(*erase) == 0
    capsys.readouterr()
    assert await cli("case", "show", case_id) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "[sealed]" in out
    assert "[erased]" not in out
    assert f"The record is behind stream {settings.stream}: 1 event(s) of case {case_id}" in out
    assert await cli("case", "show", case_id, "--json") == 0
    freshness = json.loads(capsys.readouterr().out)["freshness"]
    assert (freshness["behind"], freshness["behind_at_least"]) == (1, False)
    assert freshness["record_position"] == doc["freshness"]["record_position"]


async def test_every_reading_command_prints_one_json_document_on_stdout(
    demo: Any, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_id = demo.records[0].case_id
    replayed = tmp_path / "r.db"
    capsys.readouterr()

    def document() -> Any:
        return json.loads(capsys.readouterr().out)  # the whole of stdout, or it fails

    assert await cli("verify", "--case", case_id, "--json") == 0
    verdict = document()
    assert (verdict["status"], verdict["counts"]["events"]) == ("verified", demo.events)

    assert await cli("export", "--out", str(tmp_path / "a"), "--json") == 0
    exported = document()
    assert exported["archive"] == str(tmp_path / "a")
    assert exported["manifest"]["events"]["count"] == demo.events

    assert await cli("replay", "--database", f"sqlite:///{replayed}", "--json") == 0
    replay = document()
    assert (replay["read"], replay["applied"], replay["skipped"]) == (demo.events, demo.events, 0)
    sealed = sum(len(r.personal) for r in demo.records)
    assert replay["personal"]["states"] == {"sealed": sealed}

    assert await cli("record", "digest", "--database", f"sqlite:///{replayed}", "--json") == 0
    digest = document()
    assert digest["digest"] == replay["record_digest"]["digest"]
    assert digest["cases"] == 1
    assert await cli("record", "digest", "--json") == 0  # the live record: the same
    assert document()["digest"] == digest["digest"]

    assert await cli("keys", "list", "--json") == 0
    keys = document()
    assert "kemlu" in {k["agency"] for k in keys["signing"]}
    assert "kemlu" in {k["agency"] for k in keys["exchange"]}
    assert all(set(k) == {"agency", "kid", "algorithm"} for k in keys["exchange"])

    assert await cli("trace", case_id, "--json") == 0
    traces = document()["traces"]
    spans = [s for t in traces for s in t["spans"]]
    assert spans
    assert {s["attributes"][CASE_ID] for s in spans} == {case_id}

    assert await cli("dlq", "list", "--json") == 0
    assert document() == []


async def test_dlq_show_masks_what_the_contract_does_not_know_and_escapes_the_rest(
    demo: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agency's consumer quarantined a case.opened that broke its contract with a
    child's name in a field of its own, a terminal escape and a U+202E in a region's name,
    and a header of its own; the operator looks at it."""
    case_id = demo.records[0].case_id
    body = {
        "specversion": "1.0",
        "id": str(uuid7()),
        "source": "kemlu",
        "type": "case.opened",
        "time": datetime.now(UTC).isoformat(),
        "subject": case_id,
        "datacontenttype": "application/json",
        "dataschema": "lintas:schemas/case.opened/v3.json",
        "dataversion": 3,
        "target": "kp2mi",
        "child_name": "Dewi Lestari",
        "data": {
            "situation": "left_behind",
            "location": {
                "country": "ID",
                "subdivision": "ID-JI\u202e\x1b[2J",
                "name": "Gresik Dewi Lestari",
            },
            "jurisdiction": {"country": "ID"},
            "risk_level": "low",
            "child": FAKE_SEALED,
            "child_name": "Dewi Lestari",
            "Dewi Lestari": "2015-06-01",
        },
    }
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-test", settings=settings, identity="kp2mi")
        try:
            entry_id = await put(
                nc.jetstream(**js_options("kp2mi")),
                settings,
                QuarantineEntry(
                    consumer="agency-kp2mi",
                    stream=settings.stream,
                    stream_seq=999,
                    subject=f"lintas.kemlu.kp2mi.case.opened.{case_id}",
                    attempts=1,
                    reason="case.opened v3, field 'data.child_name': extra inputs not permitted",
                    body=json.dumps(body).encode(),
                    original_headers={"Nats-Msg-Id": body["id"], "X-Child": "Dewi Lestari"},
                ),
            )
        finally:
            await nc.close()

    capsys.readouterr()
    assert await cli("dlq", "show", str(entry_id)) == 0
    out = capsys.readouterr().out
    assert "Dewi" not in out
    assert "\u202e" not in out
    assert "\x1b" not in out
    assert "2015-06-01" not in out
    assert f'"child_name": "{UNKNOWN}"' in out
    assert f'"child": "{PERSONAL}"' in out
    assert '"subdivision": "ID-JI\\u202e\\u001b[2J"' in out  # known: shown, escaped
    # v3's free-text place name: whatever it holds is not shown (v4 carries codes only)
    assert f'"name": "{FREE_TEXT}"' in out
    assert "Gresik" not in out

    assert await cli("dlq", "show", str(entry_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["headers"] == {"Nats-Msg-Id": body["id"], "X-Child": UNKNOWN}
    assert shown["body"]["child_name"] == UNKNOWN
    assert shown["body"]["data"]["child_name"] == UNKNOWN
    assert shown["body"]["data"]["[unknown field 1]"] == UNKNOWN
    assert shown["body"]["data"]["child"] == PERSONAL
    # The subdivision is a field the contract knows: shown, with its controls escaped in
    # the text (JSON reads them back); v3's free-text place name is not shown at all.
    assert shown["body"]["data"]["location"]["subdivision"] == "ID-JI\u202e\x1b[2J"
    assert shown["body"]["data"]["location"]["name"] == FREE_TEXT


async def test_dlq_retry_as_the_operator_applies_once_and_keeps_a_forgery(
    demo: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The record's consumer quarantined two case.opened: one signed by kemlu (a bug since
    fixed, say), one with no signature. The operator (the only identity the command
    connects as) lists them, retries each by id, then all: the signed one is applied once
    and leaves the quarantine, the unsigned one stays; a missing id is one line and 1."""
    data = {
        "situation": "neglected",
        "location": {"country": "ID"},
        "jurisdiction": {"country": "ID"},
        "risk_level": "low",
    }
    signed_case, unsigned_case = new_case_id(), new_case_id()

    def opened(case_id: str) -> Any:
        return make_event(
            build_data("case.opened", data), source="kemlu", target="kp2mi", case_id=case_id
        ).envelope

    good = Signer.load(settings, "kemlu").sign(opened(signed_case))
    bad = opened(unsigned_case)
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-test", settings=settings, identity="platform")
        try:
            js = nc.jetstream(**js_options("platform"))
            ids = [
                await put(
                    js,
                    settings,
                    QuarantineEntry(
                        consumer="record",
                        stream=settings.stream,
                        stream_seq=seq,
                        subject=envelope.nats_subject,
                        attempts=1,
                        reason="a bug",
                        body=encode(envelope),
                    ),
                )
                for seq, envelope in ((100_001, good), (100_002, bad))
            ]
        finally:
            await nc.close()

    capsys.readouterr()
    assert await cli("dlq", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["id"], e["stream_seq"]) for e in listed] == [(ids[0], 100_001), (ids[1], 100_002)]

    assert await cli("dlq", "retry", str(ids[0])) == 0
    captured = capsys.readouterr()
    assert "cannot read the public-key bucket" not in captured.out  # the operator may
    assert f"retried {ids[0]} (record seq 100001): case.opened applied to record" in " ".join(
        captured.out.split()
    )
    assert await cli("case", "show", signed_case, "--json") == 0
    assert json.loads(capsys.readouterr().out)["case_id"] == signed_case

    assert await cli("dlq", "retry", "--all") == 1
    kept = " ".join(capsys.readouterr().out.split())
    assert f"kept {ids[1]} (record seq 100002)" in kept
    assert "0 retried, 1 still quarantined" in kept
    assert await cli("dlq", "list", "--json") == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [ids[1]]

    assert await cli("dlq", "retry", str(ids[0])) == 1  # gone from the quarantine
    assert _said(capsys.readouterr()) == f"no quarantine entry {ids[0]}"
    assert await cli("dlq", "show", str(ids[0])) == 1
    assert _said(capsys.readouterr()) == f"no quarantine entry {ids[0]}"
