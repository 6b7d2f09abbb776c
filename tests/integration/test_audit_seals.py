"""Seals: signed checkpoints over ranges of the stream, checked by ``lintas verify``.

A seal commits to a range's last sequence, its count and the chained digest of its
messages, so removing the tail of the log (with a rewritten manifest) is caught.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, read_seals, verify_stream
from lintas.audit.seals import ZERO_DIGEST, Seal
from lintas.contracts import message_hash
from lintas.infra.keys.signing import load_registry
from lintas.infra.nats.seals import seals_stream
from lintas.infra.settings import Settings
from tests.integration.test_audit_verify import Tamper, _export, _verify_fails
from tests.support.audit import ChainedAgencies, Sent, cli, cli_env_fixture  # noqa: F401
from tests.support.helpers import declare_record

pytestmark = pytest.mark.nats

CASES = 4  # x 7 steps = 28 events


@pytest.fixture
async def log(js: JetStreamContext, settings: Settings) -> list[Sent]:
    await declare_record(js, settings)
    return await ChainedAgencies(js, settings).cases(CASES)


def _cut_tail(archive: Tamper, events: int) -> None:
    """Remove the last ``events`` and rewrite the (unsigned) manifest, its cut included."""
    del archive.lines[-events:]
    archive.save(fix_manifest=True)
    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["cut"]["last_seq"] = manifest["events"]["last_seq"]
    (archive.path / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().out.split())


async def test_a_seal_covers_the_log_and_verify_checks_it(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("seal") == 0
    assert f"sealed stream {cli_env.stream} seq 1..{len(log)} (28 messages) as seal 1" in _out(
        capsys
    )
    [seal] = await read_seals(js, cli_env)
    assert (seal.first_seq, seal.last_seq, seal.count, seal.sealed_by) == (1, 28, 28, "kp2mi")
    # The digest, as documented: chained over message_hash of every message, from zeros.
    digest = ZERO_DIGEST
    for sent in log:
        step = f"{digest}\n{message_hash(json.dumps(sent.doc).encode())}"
        digest = "sha256:" + hashlib.sha256(step.encode()).hexdigest()
    assert seal.digest == digest
    assert seal.prev_digest == ZERO_DIGEST
    assert await cli("verify") == 0
    out = _out(capsys)
    assert "seals: 1 (stream seq 1..28), 1 recomputed" in out
    assert "hash chains and sequence hold" in out
    assert await cli("verify", "--case", log[0].case_id) == 0
    assert "signatures and ranges checked" in _out(capsys)


async def test_a_second_seal_covers_only_the_new_events_and_nothing_new_seals_nothing(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("seal") == 0
    assert await cli("seal", "--agency", "kemlu") == 0
    assert "nothing to seal" in _out(capsys)
    assert (await js.stream_info(seals_stream(cli_env))).state.messages == 1
    more = await ChainedAgencies(js, cli_env).cases(1, steps=3)
    assert await cli("seal", "--agency", "kemlu") == 0
    assert "seq 29..31 (3 messages) as seal 2, signed by kemlu" in _out(capsys)
    first, second = await read_seals(js, cli_env)
    assert (second.first_seq, second.last_seq, second.count) == (29, 31, 3)
    assert second.prev_digest == first.digest
    assert [s.seq for s in more] == [29, 30, 31]
    assert await cli("seal") == 0
    assert await cli("seal") == 0
    assert (await js.stream_info(seals_stream(cli_env))).state.messages == 2
    assert await cli("verify") == 0
    assert "seals: 2 (stream seq 1..31), 2 recomputed" in _out(capsys)


async def test_a_seal_with_a_bad_signature_is_named(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("seal") == 0
    [seal] = await read_seals(js, cli_env)
    forged = dict(seal.doc, count=23)  # altered after signing
    registry = load_registry(cli_env)
    reader = StreamReader(js, cli_env.stream)
    cut = await reader.cut()
    verdict = await verify_stream(
        reader.events(cut), cut, registry, seals=[Seal.from_doc(1, forged)]
    )
    assert verdict.finding is not None
    assert "seal 1 (stream seq 1..28), sealed by kp2mi: signature: the signature does not" in (
        str(verdict.finding)
    )
    # ... and one that says it is kemlu's, signed with kp2mi's key.
    claimed = dict(seal.doc, sealed_by="kemlu")
    verdict = await verify_stream(
        reader.events(cut), cut, registry, seals=[Seal.from_doc(1, claimed)]
    )
    assert "says it is kemlu's but is signed with kp2mi's key" in str(verdict.finding)


async def test_a_stream_shorter_than_its_seals_is_named(
    js: JetStreamContext, log: list[Sent], cli_env: Settings
) -> None:
    """The stream denies delete and purge; a stream rebuilt without its last events (here:
    read only up to 20) is still caught by the seal over 1..28."""
    assert await cli("seal") == 0
    seals = await read_seals(js, cli_env)
    reader = StreamReader(js, cli_env.stream)
    cut = await reader.cut()
    short = type(cut)(cut.stream, 1, 20, 20)
    verdict = await verify_stream(reader.events(short), short, load_registry(cli_env), seals=seals)
    assert verdict.finding is not None
    assert "the stream ends at 20 but seal 1 covers up to 28" in str(verdict.finding)


async def test_deleting_the_tail_of_an_archive_with_its_manifest_is_caught_by_the_seal(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without a seal, removing the last events and rewriting the manifest went unnoticed.
    unsealed = Tamper(await _export(tmp_path, name="unsealed"))
    _cut_tail(unsealed, 3)
    assert await cli("verify", "--archive", str(unsealed.path)) == 0
    # With a seal over the log, the archive carries it and verify names the cut.
    assert await cli("seal") == 0
    archive = await _export(tmp_path, name="sealed")
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["seals"]["count"] == 1
    assert len((archive / "seals.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()
    assert await cli("verify", "--archive", str(archive)) == 0
    assert "seals: 1 (stream seq 1..28), 1 recomputed" in _out(capsys)
    tarball = await _export(tmp_path, name="sealed.tar.gz")
    assert await cli("verify", "--archive", str(tarball)) == 0
    tamper = Tamper(archive)
    _cut_tail(tamper, 3)
    out = await _verify_fails(capsys, "--archive", str(archive))
    assert "the archive ends at 25 but seal 1 covers up to 28" in out


async def test_a_seal_altered_in_an_archive_is_named(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("seal") == 0
    archive = await _export(tmp_path)
    line = json.loads((archive / "seals.jsonl").read_text())
    line["seal"]["last_seq"] = 27
    (archive / "seals.jsonl").write_text(json.dumps(line) + "\n")
    out = await _verify_fails(capsys, "--archive", str(archive))
    assert "seals.jsonl: seal 1 (stream seq 1..27), sealed by kp2mi: signature:" in out


async def test_a_partial_export_carries_the_seals_it_overlaps(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("seal") == 0
    await ChainedAgencies(js, cli_env).cases(1, steps=2)
    assert await cli("seal") == 0
    case = await _export(tmp_path, "--case", log[0].case_id)
    assert len((case / "seals.jsonl").read_text().splitlines()) == 1  # 1..28 only
    capsys.readouterr()
    assert await cli("verify", "--archive", str(case)) == 0
    assert "0 recomputed, 1 not checkable here" in _out(capsys)
