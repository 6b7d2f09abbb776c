"""``lintas verify`` and ``lintas export`` on a real stream, and tampering with archives.

Each tampering is detected, and every problem is listed, naming the event (stream seq, event
id, case) and what is wrong with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from lintas.audit import ArchiveReader, StreamReader, verify_archive, verify_stream
from lintas.contracts import canonical_json, event_hash, new_case_id, signing_input
from lintas.infra.keys.signing import SEALER, Signer, key_id, load_registry, private_key_path
from lintas.infra.settings import Settings
from tests.support.audit import (
    T0,
    ChainedAgencies,
    Sent,
    Tamper,
    cli,
    export,
    keys_file,
    verify_archive_cli,
    verify_fails,
)
from tests.support.helpers import declare_record

pytestmark = pytest.mark.nats

CASES = 4  # x 7 steps = 28 events, interleaved: case k's events are k+1, k+5, k+9, ...


@pytest.fixture
async def log(js: JetStreamContext, settings: Settings) -> list[Sent]:
    await declare_record(js, settings)
    return await ChainedAgencies(js, settings).cases(CASES)


def _line(seq: int, subject: str, doc: dict[str, Any]) -> bytes:
    head = json.dumps({"seq": seq, "subject": subject}, separators=(",", ":"))[:-1]
    return f'{head},"event":{json.dumps(doc, separators=(",", ":"))}}}\n'.encode()


def _names(out: str, sent: Sent) -> None:
    """The message names the event: its stream seq, id and case."""
    assert f"stream seq {sent.seq}, event {sent.doc['id']}, case {sent.case_id}" in out, out


# -- the stream -------------------------------------------------------------------------------


async def test_verify_passes_on_an_intact_stream_and_one_case(
    log: list[Sent], cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("verify") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{len(log)} events of {CASES} cases (stream seq 1..{len(log)})" in out
    assert "hash chains and sequence hold" in out
    assert await cli("verify", "--case", log[0].case_id) == 0
    assert "7 events of 1 case " in " ".join(capsys.readouterr().out.split())
    nobody = new_case_id()
    assert await cli("verify", "--case", nobody) == 3  # no such case: nothing failed
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no case {nobody}: stream {cli_env.stream} holds no event of it" in " ".join(
        captured.err.split()
    )


async def test_verify_names_the_first_forged_event_in_the_stream(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An event claiming to be kemlu's, signed with kp2mi's key, chained correctly.
    victim = log[-1]
    forged = dict(log[0].doc, id="0195f000-0000-7000-8000-000000000001")
    forged.update(subject=victim.case_id, prevhash=event_hash(victim.doc))
    forged["keyid"] = Signer.load(cli_env, "kp2mi").keyid
    subject = f"lintas.kemlu.kp2mi.case.opened.{victim.case_id}"
    ack = await js.publish(subject, json.dumps(forged).encode(), stream=cli_env.stream)
    out = await verify_fails(capsys)
    assert f"stream seq {ack.seq}, event {forged['id']}, case {victim.case_id}" in out
    assert "signed with kp2mi's key" in out
    assert f"1 problem ({len(log) + 1} events of {CASES} cases checked)" in out
    assert "[signature] stream seq" in out
    # ... and a read of another case does not see it.
    assert await cli("verify", "--case", log[0].case_id) == 0


async def test_a_case_read_costs_the_case_not_the_stream(
    js: JetStreamContext, log: list[Sent], settings: Settings
) -> None:
    calls: list[dict[str, Any]] = []

    class Counting:
        async def stream_info(self, name: str) -> Any:
            return await js.stream_info(name)

        async def get_msg(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return await js.get_msg(*args, **kwargs)

    case_id = log[1].case_id
    reader = StreamReader(Counting(), settings.stream, case_id=case_id)
    cut = await reader.cut()
    seqs = [e.seq for e in [x async for x in reader.events(cut)]]
    assert seqs == [s.seq for s in log if s.case_id == case_id]
    # One get per event, then "nothing more" (asked of a replica, then confirmed by the
    # leader): 28 events in the stream, 7 in the case, 9 requests, each on the case filter.
    assert len(calls) == len(seqs) + 2
    assert {c["subject"] for c in calls} == {f"lintas.*.*.*.*.{case_id}"}


async def test_the_whole_stream_is_read_in_order_up_to_the_cut(
    js: JetStreamContext, log: list[Sent], settings: Settings
) -> None:
    consumers = (await js.stream_info(settings.stream)).state.consumer_count
    reader = StreamReader(js, settings.stream)
    cut = await reader.cut()
    # Published after the cut: the next audit's, not this one's.
    await ChainedAgencies(js, settings).cases(1)
    read = [e async for e in reader.events(cut)]
    assert [e.seq for e in read] == list(range(1, len(log) + 1))
    assert [json.loads(e.body) for e in read] == [s.doc for s in log]
    assert all(e.stored is not None for e in read)
    # Read again, it ends at the new cut, and no reader's consumer is left behind.
    cut = await reader.cut()
    assert [e.seq async for e in reader.events(cut)] == list(range(1, cut.last_seq + 1))
    assert (await js.stream_info(settings.stream)).state.consumer_count == consumers


# -- export and the intact archive ------------------------------------------------------------


async def test_an_exported_archive_verifies_offline(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = await export(tmp_path)
    tarball = await export(tmp_path, name="evidence.tar.gz")
    assert (directory / "events.jsonl").stat().st_mode & 0o077 == 0  # personal data: owner only
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["events"]["count"] == len(log)
    assert (manifest["events"]["first_seq"], manifest["events"]["last_seq"]) == (1, len(log))
    assert manifest["filters"]["case"] is None
    assert set(manifest["keys"]["agencies"]) == {"kemlu", "kp2mi", "dukcapil", "kemensos"}
    # One line per event: seq, subject, and the body byte for byte as stored.
    first = (directory / "events.jsonl").read_bytes().splitlines()[0]
    assert first.endswith(
        b',"event":' + json.dumps(log[0].doc, separators=(",", ":")).encode() + b"}"
    )
    keys = await keys_file(tmp_path)
    # Offline: no bus at all.
    monkeypatch.setenv("LINTAS_NATS_URL", "nats://127.0.0.1:1")
    capsys.readouterr()
    for archive in (directory, tarball):
        assert await cli("verify", "--archive", str(archive), "--keys", str(keys)) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"{len(log)} events of {CASES} cases" in out
        assert "keys: the registry given (" in out
        assert "fingerprint sha256:" in out
        # Without the registry kept apart, all holds, by the archive's own keys: exit 4.
        assert await cli("verify", "--archive", str(archive)) == 4
        out = " ".join(capsys.readouterr().out.split())
        assert "NOT AUTHENTICATED" in out
        assert "5 keys, 5 of them also in this data dir's registry" in out
    assert (
        await cli(
            "verify", "--archive", str(directory), "--case", log[2].case_id, "--keys", str(keys)
        )
        == 0
    )
    assert "7 events of 1 case " in " ".join(capsys.readouterr().out.split())


async def test_export_refuses_to_overwrite(
    log: list[Sent], cli_env: Settings, tmp_path: Path
) -> None:
    out = await export(tmp_path)
    assert await cli("export", "--out", str(out)) == 1


async def test_a_case_export_is_checked_from_the_cases_first_event(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case_id = log[1].case_id
    archive = await export(tmp_path, "--case", case_id)
    assert await verify_archive_cli(tmp_path, archive) == 0
    mine = [s for s in log if s.case_id == case_id]
    tamper = Tamper(archive)
    assert len(tamper.lines) == len(mine)
    del tamper.lines[0]  # the case.opened, with the manifest rewritten to match
    tamper.save(fix_manifest=True)
    out = await verify_fails(capsys, "--archive", str(archive))
    _names(out, mine[1])
    assert "first event of its case in the log but carries a prevhash" in out


async def test_a_window_export_anchors_the_cases_that_began_before_it(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Cases open one day apart, each lasting 5 hours: from day 1 + 3h, case 1 is half over.
    start = (T0.replace(day=2, hour=11)).isoformat()
    archive = await export(tmp_path, "--from", start)
    assert await verify_archive_cli(tmp_path, archive) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 case began before this partial log" in out
    assert log[1].case_id in out  # named as anchored
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["filters"]["from"] == start
    # Within the window the chain is still checked: swap two later events of case 1.
    tamper = Tamper(archive)
    case1 = [
        json.loads(x)["seq"] for x in tamper.lines if log[1].case_id in json.loads(x)["subject"]
    ]
    a, b = tamper.index(case1[0]), tamper.index(case1[1])
    la, lb = tamper.line(case1[0]), tamper.line(case1[1])
    tamper.lines[a] = _line(la["seq"], lb["subject"], lb["event"])
    tamper.lines[b] = _line(lb["seq"], la["subject"], la["event"])
    tamper.save(fix_manifest=True)
    out = await verify_fails(capsys, "--archive", str(archive))
    assert "prevhash does not match" in out


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture
async def archive(log: list[Sent], cli_env: Settings, tmp_path: Path) -> Tamper:
    return Tamper(await export(tmp_path))


def _at(log: list[Sent], seq: int) -> Sent:
    return next(s for s in log if s.seq == seq)


async def test_flipping_one_byte_of_an_event_is_detected(
    log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    index = archive.index(13)  # a document.issued
    line = bytearray(archive.lines[index])
    at = line.index(b'"doc-1"') + 1
    line[at] ^= 0x20  # d -> D: still valid, no longer what was signed
    archive.lines[index] = bytes(line)
    archive.save()
    out = await verify_fails(capsys, "--archive", str(archive.path))
    _names(out, _at(log, 13))
    assert "signature does not match" in out
    # ...and the bytes no longer match the manifest: every problem is listed.
    assert "[signature]" in out
    assert "[archive-manifest] events.jsonl does not match the SHA-256" in out


async def test_deleting_an_event_in_the_middle_is_detected(
    log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    del archive.lines[archive.index(10)]
    archive.save(fix_manifest=True)  # even with the manifest made to match
    out = await verify_fails(capsys, "--archive", str(archive.path))
    _names(out, _at(log, 11))
    assert "stream sequence 10 missing before this event" in out


async def test_deleting_an_event_and_renumbering_is_caught_by_the_chain(
    log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    removed = 10
    lines = [json.loads(x) for i, x in enumerate(archive.lines) if i != archive.index(removed)]
    archive.lines = [_line(n, x["subject"], x["event"]) for n, x in enumerate(lines, start=1)]
    archive.save(fix_manifest=True)
    out = await verify_fails(capsys, "--archive", str(archive.path))
    # The case's next event (4 later in the interleaving) no longer follows its previous.
    victim = _at(log, removed + CASES)
    assert f"event {victim.doc['id']}, case {victim.case_id}" in out
    assert "prevhash does not match the case's previous event" in out


async def test_deleting_the_last_events_is_detected_by_the_manifest(
    log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    del archive.lines[-3:]
    archive.save()
    out = await verify_fails(capsys, "--archive", str(archive.path))
    _names(out, log[-4])
    assert f"manifest lists {len(log)} events up to stream seq {len(log)}: 3 missing" in out


@pytest.mark.parametrize("how", ["lines", "events"])
async def test_swapping_two_events_of_a_case_is_detected(
    how: str, log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    case_id = log[0].case_id
    a, b = (s.seq for s in log if s.case_id == case_id and s.doc["type"].startswith("doc"))
    ia, ib = archive.index(a), archive.index(b)
    if how == "lines":  # the lines as they are: stream order breaks
        archive.lines[ia], archive.lines[ib] = archive.lines[ib], archive.lines[ia]
        archive.save()
        out = await verify_fails(capsys, "--archive", str(archive.path))
        _names(out, _at(log, b))
        assert f"stream sequence {a}..{b - 1} missing before this event (removed or moved?)" in out
    else:  # the events, keeping each line's sequence number: the chain breaks
        la, lb = archive.line(a), archive.line(b)
        archive.lines[ia] = _line(a, lb["subject"], lb["event"])
        archive.lines[ib] = _line(b, la["subject"], la["event"])
        archive.save(fix_manifest=True)
        out = await verify_fails(capsys, "--archive", str(archive.path))
        assert f"stream seq {a}, event {_at(log, b).doc['id']}, case {case_id}" in out
        before = max(s.seq for s in log if s.case_id == case_id and s.seq < a)  # its consent
        assert (
            f"prevhash does not match the case's previous event in the log (stream seq {before})"
            in out
        )


async def test_inserting_an_event_signed_with_another_agencys_key_is_detected(
    log: list[Sent], archive: Tamper, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """kp2mi's key signs an event that says it is kemlu's, chained onto the case's last
    event; the manifest is rewritten to match: only the signature can tell."""
    victim = log[-1]
    key = serialization.load_pem_private_key(
        private_key_path(cli_env, "kp2mi").read_bytes(), password=None
    )
    assert isinstance(key, Ed25519PrivateKey)
    forged = dict(log[0].doc, id="0195f000-0000-7000-8000-000000000002", subject=victim.case_id)
    forged.update(prevhash=event_hash(victim.doc), keyid=key_id("kp2mi", key.public_key()))
    forged.pop("signature")
    signature = key.sign(signing_input(forged))
    forged["signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    seq = len(log) + 1
    archive.lines.append(_line(seq, f"lintas.kemlu.kp2mi.case.opened.{victim.case_id}", forged))
    archive.save(fix_manifest=True)
    out = await verify_fails(capsys, "--archive", str(archive.path))
    assert f"stream seq {seq}, event {forged['id']}, case {victim.case_id}" in out
    assert "claims to come from kemlu but is signed with kp2mi's key" in out


@pytest.mark.parametrize("consistent", [False, True])
async def test_changing_a_public_key_in_the_archive_is_detected(
    consistent: bool,
    log: list[Sent],
    archive: Tamper,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The attacker's key replaces kemlu's: as is (its key id no longer matches), or with its
    own key id and the manifest rewritten. Either way kemlu's first event cannot verify."""
    keys = json.loads((archive.path / "keys.json").read_text())
    theirs = Ed25519PrivateKey.generate().public_key()
    raw = theirs.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    entry = keys["agencies"]["kemlu"][0]
    entry["public_key"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if consistent:
        entry["keyid"] = key_id("kemlu", theirs)
    (archive.path / "keys.json").write_text(json.dumps(keys))
    archive.save(fix_manifest=consistent)
    out = await verify_fails(capsys, "--archive", str(archive.path))
    _names(out, log[0])  # seq 1: kemlu opens the first case
    assert f"key {log[0].doc['keyid']} is not in the registry" in out
    if not consistent:
        assert "does not match its key" in out
        assert "does not match the SHA-256 in the manifest" in out


async def test_verify_with_a_trusted_registry_rejects_an_archive_resigned_by_others(
    log: list[Sent],
    archive: Tamper,
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An archive re-signed throughout by someone with keys of their own, who also ships
    those keys, passes on its own word; ``--keys`` with the registry the auditor trusts
    names its first event."""
    impostors = {
        a: Ed25519PrivateKey.generate() for a in ("kemlu", "kp2mi", "dukcapil", "kemensos", SEALER)
    }
    heads: dict[str, str] = {}
    lines = []
    for raw in archive.lines:
        line = json.loads(raw)
        doc = dict(line["event"])
        key = impostors[doc["source"]]
        doc.update(
            keyid=key_id(doc["source"], key.public_key()), prevhash=heads.get(doc["subject"])
        )
        doc.pop("signature")
        doc = {k: v for k, v in doc.items() if v is not None}
        doc["signature"] = (
            base64.urlsafe_b64encode(key.sign(signing_input(doc))).rstrip(b"=").decode()
        )
        heads[doc["subject"]] = "sha256:" + hashlib.sha256(canonical_json(doc)).hexdigest()
        lines.append(_line(line["seq"], line["subject"], doc))
    archive.lines = lines
    keys: dict[str, Any] = {"agencies": {}}
    for agency, key in impostors.items():
        raw_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        keys["agencies"][agency] = [
            {
                "keyid": key_id(agency, key.public_key()),
                "public_key": base64.urlsafe_b64encode(raw_key).rstrip(b"=").decode(),
                "valid_from": "2000-01-01T00:00:00+00:00",
                "valid_until": None,
            }
        ]
    (archive.path / "keys.json").write_text(json.dumps(keys))
    archive.save(fix_manifest=True)
    archive.sign_manifest(Signer(SEALER, impostors[SEALER]))
    capsys.readouterr()
    # It holds on its own word, and verify says that proves nothing: exit 4, not 0.
    status = await cli("verify", "--archive", str(archive.path))
    out = " ".join(capsys.readouterr().out.split())
    assert status == 4, out
    assert "0 of them also in this data dir's registry" in out
    assert "authenticity NOT established" in out
    trusted = await keys_file(tmp_path)
    out = await verify_fails(capsys, "--archive", str(archive.path), "--keys", str(trusted))
    assert f"stream seq 1, event {log[0].doc['id']}, case {log[0].case_id}" in out
    assert "is not in the registry" in out


async def test_keys_are_never_printed_or_logged(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets: list[str] = []
    for agency in ("kemlu", "kp2mi", "dukcapil", "kemensos"):
        pem = private_key_path(cli_env, agency).read_text()
        secrets += [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    publics = [
        item["public_key"]
        for items in load_registry(cli_env).to_json()["agencies"].values()
        for item in items
    ]
    with capture_logs() as logs:
        archive = await export(tmp_path)
        assert await cli("verify") == 0
        assert await verify_archive_cli(tmp_path, archive) == 0
        assert (
            await cli(
                "replay", "--archive", str(archive), "--database", f"sqlite:///{tmp_path / 'r.db'}"
            )
            == 0
        )
        assert await cli("record", "digest") == 0
    out = capsys.readouterr()
    printed = out.out + out.err + repr(logs)
    for secret in secrets + publics:
        assert secret not in printed
    archived = b"".join(p.read_bytes() for p in archive.iterdir())
    for secret in secrets:
        assert secret.encode() not in archived  # the archive holds public keys only


def _reader_verdict(path: Path, check: Callable[..., Any]) -> Any:
    with ArchiveReader(path) as reader:
        return check(reader)


async def test_library_verdicts_match_the_cli(
    js: JetStreamContext, log: list[Sent], cli_env: Settings, tmp_path: Path
) -> None:
    archive = await export(tmp_path)
    verdict = _reader_verdict(archive, verify_archive)
    assert verdict.ok
    assert not verdict.authenticated  # the archive's own keys
    assert verdict.events == len(log)
    reader = StreamReader(js, cli_env.stream)
    cut = await reader.cut()
    verdict = await verify_stream(reader.events(cut), cut, load_registry(cli_env))
    assert verdict.ok
    assert (verdict.first_seq, verdict.last_seq) == (1, len(log))
    assert re.fullmatch(r"stream \w+ up to seq \d+", verdict.source)


async def test_bytes_no_signature_covers_are_caught_by_the_manifest_digest(
    log: list[Sent], archive: Tamper, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stream's own timestamp is not signed: changing it leaves every event valid, and
    the archive still does not match its manifest."""
    index = archive.index(5)
    line = json.loads(archive.lines[index])
    assert line["stored"]  # the stream's timestamp, kept in the archive
    archive.lines[index] = archive.lines[index].replace(
        line["stored"].encode(), b"2000-01-01T00:00:00+00:00"
    )
    archive.save()
    out = await verify_fails(capsys, "--archive", str(archive.path))
    assert "1 problem" in out
    assert "[archive-manifest] events.jsonl does not match the SHA-256 in the manifest" in out
