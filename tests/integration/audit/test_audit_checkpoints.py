"""Checkpoints: signed checkpoints over ranges of the stream, checked by ``lintas verify``.

A checkpoint commits to a range's last sequence, its count and the chained digest of its
messages, so removing the tail of the log (with a rewritten manifest) is caught.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, read_checkpoints, verify_stream
from lintas.audit.checkpoints import ZERO_DIGEST, Checkpoint
from lintas.contracts import message_hash
from lintas.infra.keys.signing import load_registry
from lintas.infra.nats.topology import checkpoints_stream
from lintas.infra.settings import Settings
from tests.support.audit import (
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


async def test_a_checkpoint_covers_the_log_and_verify_checks_it(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    assert (
        f"checkpointed stream {cli_env.stream} seq 1..{len(log)} (28 messages) as checkpoint 1"
        in _out(capsys)
    )
    [checkpoint] = await read_checkpoints(js, cli_env)
    assert (checkpoint.first_seq, checkpoint.last_seq, checkpoint.count, checkpoint.signed_by) == (
        1,
        28,
        28,
        "sealer",
    )
    # The digest, as documented: chained over message_hash of every message, from zeros.
    digest = ZERO_DIGEST
    for sent in log:
        step = f"{digest}\n{message_hash(json.dumps(sent.doc).encode())}"
        digest = "sha256:" + hashlib.sha256(step.encode()).hexdigest()
    assert checkpoint.digest == digest
    assert checkpoint.prev_digest == ZERO_DIGEST
    assert await cli("verify") == 0
    out = _out(capsys)
    assert "checkpoints: 1 (stream seq 1..28), 1 recomputed" in out
    assert "hash chains and sequence hold" in out
    assert await cli("verify", "--case", log[0].case_id) == 0
    assert "signatures and ranges checked" in _out(capsys)


async def test_a_second_checkpoint_covers_only_the_new_events_and_nothing_new_checkpoints_nothing(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    assert await cli("checkpoint") == 0
    assert "nothing to checkpoint" in _out(capsys)
    assert (await js.stream_info(checkpoints_stream(cli_env))).state.messages == 1
    more = await ChainedAgencies(js, cli_env).cases(1, steps=3)
    assert await cli("checkpoint") == 0
    assert "seq 29..31 (3 messages) as checkpoint 2, signed by sealer" in _out(capsys)
    first, second = await read_checkpoints(js, cli_env)
    assert (second.first_seq, second.last_seq, second.count) == (29, 31, 3)
    assert second.prev_digest == first.digest
    assert [s.seq for s in more] == [29, 30, 31]
    assert await cli("checkpoint") == 0
    assert await cli("checkpoint") == 0
    assert (await js.stream_info(checkpoints_stream(cli_env))).state.messages == 2
    assert await cli("verify") == 0
    assert "checkpoints: 2 (stream seq 1..31), 2 recomputed" in _out(capsys)


async def test_a_checkpoint_with_a_bad_signature_is_named(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    [checkpoint] = await read_checkpoints(js, cli_env)
    forged = dict(checkpoint.doc, count=23)  # altered after signing
    registry = load_registry(cli_env)
    reader = StreamReader(js, cli_env.stream)
    cut = await reader.cut()
    verdict = await verify_stream(
        reader.events(cut), cut, registry, checkpoints=[Checkpoint.from_doc(1, forged)]
    )
    assert verdict.finding is not None
    assert (
        "checkpoint 1 (stream seq 1..28), checkpointed by sealer: signature: the signature does "
        "not" in (str(verdict.finding))
    )
    # ... and one that says it is kemlu's: no agency makes a checkpoint.
    claimed = dict(checkpoint.doc, signed_by="kemlu")
    verdict = await verify_stream(
        reader.events(cut), cut, registry, checkpoints=[Checkpoint.from_doc(1, claimed)]
    )
    assert verdict.finding is not None
    assert verdict.finding.code == "checkpoint-signer"
    assert "is signed by kemlu, not by the sealer" in str(verdict.finding)


async def test_a_stream_shorter_than_its_checkpoints_is_named(
    js: JetStreamContext, log: list[Sent], cli_env: Settings
) -> None:
    """The stream denies delete and purge; a stream rebuilt without its last events (here:
    read only up to 20) is still caught by the checkpoint over 1..28."""
    assert await cli("checkpoint") == 0
    checkpoints = await read_checkpoints(js, cli_env)
    reader = StreamReader(js, cli_env.stream)
    cut = await reader.cut()
    short = type(cut)(cut.stream, 1, 20, 20)
    verdict = await verify_stream(
        reader.events(short), short, load_registry(cli_env), checkpoints=checkpoints
    )
    assert verdict.finding is not None
    assert "the stream ends at 20 but checkpoint 1 covers up to 28" in str(verdict.finding)


async def test_deleting_the_tail_of_an_archive_with_its_manifest_is_caught_by_the_checkpoint(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without a checkpoint, removing the last events and rewriting the manifest went unnoticed
    # until the manifest was signed.
    uncheckpointed = Tamper(await export(tmp_path, name="uncheckpointed"))
    _cut_tail(uncheckpointed, 3)
    assert "[manifest-signature]" in await verify_fails(
        capsys, "--archive", str(uncheckpointed.path), "--keys", str(await keys_file(tmp_path))
    )
    # With a checkpoint over the log, the archive carries it and verify names the cut.
    assert await cli("checkpoint") == 0
    archive = await export(tmp_path, name="checkpointed")
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["checkpoints"]["count"] == 1
    assert len((archive / "checkpoints.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()
    assert await verify_archive_cli(tmp_path, archive) == 0
    assert "checkpoints: 1 (stream seq 1..28), 1 recomputed" in _out(capsys)
    tarball = await export(tmp_path, name="checkpointed.tar.gz")
    assert await verify_archive_cli(tmp_path, tarball) == 0
    tamper = Tamper(archive)
    _cut_tail(tamper, 3)
    out = await verify_fails(capsys, "--archive", str(archive))
    assert "the archive ends at 25 but checkpoint 1 covers up to 28" in out


async def test_a_checkpoint_altered_in_an_archive_is_named(
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    archive = await export(tmp_path)
    line = json.loads((archive / "checkpoints.jsonl").read_text())
    line["checkpoint"]["last_seq"] = 27
    (archive / "checkpoints.jsonl").write_text(json.dumps(line) + "\n")
    out = await verify_fails(capsys, "--archive", str(archive))
    assert (
        "checkpoints.jsonl: checkpoint 1 (stream seq 1..27), checkpointed by sealer: signature:"
        in out
    )


async def test_a_partial_export_carries_the_checkpoints_it_overlaps(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    await ChainedAgencies(js, cli_env).cases(1, steps=2)
    assert await cli("checkpoint") == 0
    case = await export(tmp_path, "--case", log[0].case_id)
    # 1..28, which its events overlap, and the newest (29..30), whose tree its proofs are
    # against.
    assert len((case / "checkpoints.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert await verify_archive_cli(tmp_path, case) == 0
    assert "0 recomputed, 2 not checkable here" in _out(capsys)
