"""A hostile holder of an archive, one attack per hole of issue 23, each now refused or caught
by ``lintas verify --keys`` with the platform's registry kept apart (``lintas keys export``).

An archive re-signed throughout with keys it ships itself is
``test_audit_verify.py::test_verify_with_a_trusted_registry_rejects_an_archive_resigned_by_others``
(exit 4 on its own word, 1 with ``--keys``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from lintas.audit import ArchiveReader, verify_archive
from lintas.audit.checkpoints import ZERO_DIGEST, chain_digest
from lintas.contracts import canonical_json
from lintas.infra.keys.signing import (
    Registry,
    Signer,
    ensure_agency_key,
    fingerprint,
    read_registry_file,
    spoken,
)
from lintas.infra.settings import Settings
from tests.support.audit import ChainedAgencies, Sent, Tamper, cli, export, keys_file
from tests.support.helpers import declare_record

pytestmark = pytest.mark.nats

CASES = 4  # x 7 steps = 28 events, step by step across the cases
VILLAGE = "desa-3525010001"


@pytest.fixture
async def log(js: JetStreamContext, settings: Settings) -> list[Sent]:
    await declare_record(js, settings)
    return await ChainedAgencies(js, settings).cases(CASES)


async def _verdict(
    capsys: pytest.CaptureFixture[str], archive: Path, keys: Path
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = await cli("verify", "--archive", str(archive), "--keys", str(keys), "--json")
    return status, json.loads(capsys.readouterr().out)


def _codes(doc: dict[str, Any]) -> list[str]:
    return [p["code"] for p in doc["problems"]]


# -- the trust anchor -----------------------------------------------------------------------


async def test_keys_export_writes_the_registry_and_verify_names_its_fingerprint(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = await export(tmp_path)  # makes the sealer's key, to sign the manifest
    capsys.readouterr()
    keys = tmp_path / "lintas-keys.json"
    assert await cli("keys", "export", "--out", str(keys)) == 0
    out = capsys.readouterr().out
    registry = read_registry_file(keys)
    printed = fingerprint(registry)
    assert keys.read_bytes() == canonical_json(registry.to_json()) + b"\n"
    assert printed == "sha256:" + hashlib.sha256(keys.read_bytes()[:-1]).hexdigest()
    assert printed in out
    assert spoken(printed) in out  # sixteen groups of four, to read out over the phone
    assert re.fullmatch(
        r"([0-9a-f]{4} ){7}[0-9a-f]{4}\n([0-9a-f]{4} ){7}[0-9a-f]{4}", spoken(printed)
    )
    assert {"sealer", "kemlu", "kp2mi", "dukcapil", "kemensos"} <= {
        e.agency for e in registry.entries()
    }
    assert await cli("keys", "export", "--out", str(keys)) == 1  # never overwritten
    # verify names the fingerprint of what it was given, however the file is spaced.
    spaced = tmp_path / "spaced.json"
    spaced.write_text(json.dumps(json.loads(keys.read_bytes()), indent=4))
    capsys.readouterr()
    assert await cli("verify", "--archive", str(archive), "--keys", str(spaced)) == 0
    assert printed in " ".join(capsys.readouterr().out.split())
    # Another registry has another fingerprint.
    ensure_agency_key(cli_env, VILLAGE)
    assert fingerprint(Registry(read_registry_file(keys).entries())) == printed
    other = await keys_file(tmp_path)
    assert fingerprint(read_registry_file(other)) != printed


# -- checkpoints only by the sealer --------------------------------------------------------


async def test_a_case_dropped_and_checkpointed_afresh_with_a_villages_key_is_refused(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A village's key is in the registry, rightly. Its holder drops a whole case from an
    archive, renumbers the rest, and checkpoints it afresh with that key: refused."""
    ensure_agency_key(cli_env, VILLAGE)
    assert await cli("checkpoint") == 0
    archive = Tamper(await export(tmp_path))
    keys = await keys_file(tmp_path)
    dropped = log[0].case_id
    kept = [json.loads(x) for x in archive.lines if dropped not in json.loads(x)["subject"]]
    digest = ZERO_DIGEST
    archive.lines = []
    for seq, line in enumerate(kept, start=1):
        line["seq"] = seq
        raw = json.dumps(line, separators=(",", ":")).encode()
        archive.lines.append(raw + b"\n")
        digest = chain_digest(digest, json.dumps(line["event"], separators=(",", ":")).encode())
    village = Signer.load(cli_env, VILLAGE)
    resealed = village.sign_document(
        {
            "type": "lintas.checkpoint",
            "stream": cli_env.stream,
            "first_seq": 1,
            "last_seq": len(kept),
            "count": len(kept),
            "prev_digest": ZERO_DIGEST,
            "digest": digest,
            "signed_at": "2025-03-10T00:00:00+00:00",
            "signed_by": VILLAGE,
        }
    )
    checkpoints = json.dumps({"seq": 1, "checkpoint": resealed}) + "\n"
    (archive.path / "checkpoints.jsonl").write_text(checkpoints)
    archive.save(fix_manifest=True)
    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["cut"]["last_seq"] = len(kept)
    manifest["checkpoints"].update(
        sha256="sha256:" + hashlib.sha256(checkpoints.encode()).hexdigest(),
        last={"seq": 1, "last_seq": len(kept), "digest": digest},
    )
    (archive.path / "manifest.json").write_text(json.dumps(manifest))
    archive.sign_manifest(village)  # the best the village can do: the manifest is no agency's
    status, doc = await _verdict(capsys, archive.path, keys)
    assert status == 1
    assert "checkpoint-signer" in _codes(doc)
    assert any(f"signed by {VILLAGE}, not by the sealer" in p["message"] for p in doc["problems"])
    assert "manifest-signature" in _codes(doc)


# -- the signed manifest -------------------------------------------------------------------


@pytest.mark.parametrize("strip", [False, True], ids=["kept-signature", "signature-removed"])
async def test_a_manifest_made_partial_to_hide_a_deleted_case_is_caught(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    strip: bool,
) -> None:
    """A ``to`` of 2100 makes the filter "partial" (sequences need not run without a gap);
    a whole case deleted then went unnoticed."""
    archive = Tamper(await export(tmp_path))
    keys = await keys_file(tmp_path)
    gone = log[1].case_id
    archive.lines = [x for x in archive.lines if gone not in json.loads(x)["subject"]]
    archive.save(fix_manifest=True)
    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["filters"]["to"] = "2100-01-01T00:00:00+00:00"
    if strip:
        for member in ("signature", "keyid"):
            manifest.pop(member)
    (archive.path / "manifest.json").write_text(json.dumps(manifest))
    status, doc = await _verdict(capsys, archive.path, keys)
    assert status == 1
    [problem] = [p for p in doc["problems"] if p["code"] == "manifest-signature"]
    assert ("is not signed" if strip else "signature does not match") in problem["message"]


async def test_events_after_the_last_checkpoint_are_counted_and_cutting_them_is_caught(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    await ChainedAgencies(js, cli_env).cases(1, steps=3)  # seq 29..31: no checkpoint yet
    archive = Tamper(await export(tmp_path))
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, archive.path, keys)
    assert (status, doc["status"], doc["counts"]["uncovered"]) == (0, "verified", 3)
    assert any(
        "not yet covered by a checkpoint: 3 messages after stream seq 28" in n for n in doc["notes"]
    )
    del archive.lines[-3:]  # what no checkpoint vouches for yet, and the manifest rewritten
    archive.save(fix_manifest=True)
    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["cut"]["last_seq"] = 28
    (archive.path / "manifest.json").write_text(json.dumps(manifest))
    status, doc = await _verdict(capsys, archive.path, keys)
    assert status == 1
    assert "manifest-signature" in _codes(doc)


@pytest.mark.parametrize("fix_manifest", [False, True])
async def test_deleting_the_checkpoints_themselves_is_caught(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fix_manifest: bool,
) -> None:
    assert await cli("checkpoint") == 0
    archive = await export(tmp_path)
    keys = await keys_file(tmp_path)
    (archive / "checkpoints.jsonl").write_bytes(b"")
    if fix_manifest:
        manifest = json.loads((archive / "manifest.json").read_text())
        manifest["checkpoints"].update(
            count=0, last=None, sha256="sha256:" + hashlib.sha256(b"").hexdigest()
        )
        (archive / "manifest.json").write_text(json.dumps(manifest))
    status, doc = await _verdict(capsys, archive, keys)
    assert status == 1
    if fix_manifest:
        assert "manifest-signature" in _codes(doc)
    else:
        messages = [p["message"] for p in doc["problems"] if p["code"] == "archive-manifest"]
        assert any("checkpoints were removed or replaced" in m for m in messages)
        assert any("checkpoints.jsonl does not match" in m for m in messages)


# -- verify names the right event ----------------------------------------------------------


async def test_a_swap_of_two_cases_adjacent_events_is_named_where_it_happened(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seq 2 and 3 open cases 2 and 3: swapped, each case's chain still holds, and only the
    checkpoint's end used to notice."""
    assert await cli("checkpoint") == 0
    archive = Tamper(await export(tmp_path))
    keys = await keys_file(tmp_path)
    second, third = archive.line(2), archive.line(3)
    assert second["subject"].rsplit(".", 1)[1] != third["subject"].rsplit(".", 1)[1]
    for seq, line in ((2, third), (3, second)):
        line = dict(line, seq=seq)
        archive.lines[archive.index(seq)] = json.dumps(line, separators=(",", ":")).encode() + b"\n"
    archive.save()
    status, doc = await _verdict(capsys, archive.path, keys)
    assert status == 1
    first, then = doc["problems"][:2]
    assert (first["code"], first["seq"], first["case"]) == ("position", 2, log[2].case_id)
    assert (then["code"], then["seq"], then["case"]) == ("position", 3, log[1].case_id)
    assert "the log held another message at stream seq 2" in first["message"]


async def test_a_duplicate_member_name_is_a_problem(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``"type"`` twice: Python keeps the last (the signed one), other readers the first."""
    archive = Tamper(await export(tmp_path))
    keys = await keys_file(tmp_path)
    index = archive.index(5)
    archive.lines[index] = archive.lines[index].replace(
        b',"event":{', b',"event":{"type":"case.erased",', 1
    )
    archive.save()
    status, doc = await _verdict(capsys, archive.path, keys)
    assert status == 1
    [problem] = [p for p in doc["problems"] if p["code"] == "duplicate-member"]
    assert (problem["seq"], problem["case"]) == (5, log[4].case_id)
    assert "'type' twice" in problem["message"]


# -- bounded memory ------------------------------------------------------------------------


class _Spaces(io.RawIOBase):
    """``size`` bytes of one line that never ends, made as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.head = b'{"seq":1,"subject":"lintas.kemlu.kp2mi.case.opened.C","event":{"a":"'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = (self.head + b"x" * len(buffer))[: min(len(buffer), self.left)]
        self.head = b""
        buffer[: len(chunk)] = chunk
        self.left -= len(chunk)
        return len(chunk)


async def test_a_small_tarball_that_unpacks_to_a_huge_line_is_refused_in_bounded_memory(
    log: list[Sent], cli_env: Settings, tmp_path: Path
) -> None:
    honest = await export(tmp_path)
    bomb = tmp_path / "bomb.tar.gz"
    huge = 200 * 1024 * 1024
    with tarfile.open(bomb, "w:gz", compresslevel=9) as tar:
        for name in ("manifest.json", "keys.json", "checkpoints.jsonl", "positions.txt"):
            tar.add(honest / name, arcname=f"bomb/{name}")
        info = tarfile.TarInfo("bomb/events.jsonl")
        info.size = huge
        tar.addfile(info, io.BufferedReader(_Spaces(huge), buffer_size=1 << 20))
    assert bomb.stat().st_size < 1024 * 1024  # a few hundred KiB on disk
    registry = read_registry_file(await keys_file(tmp_path))
    tracemalloc.start()
    try:
        with ArchiveReader(bomb) as reader:
            verdict = verify_archive(reader, registry=registry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, peak  # never the 200 MB line
    [line] = [p for p in verdict.problems if p.code == "archive-line"]
    assert "events.jsonl line 1 is longer than" in line.message
    shutil.rmtree(honest)
    assert gzip  # the archive format: gzip, read as a stream
