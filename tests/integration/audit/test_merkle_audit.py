"""Proofs instead of trust (issue 23, item 3): checkpoints commit to the Merkle tree of the whole
log and every case's head, so a one-case export proves itself exactly what the log held for
the case, and an auditor who kept a checkpoint proves that the log only grew since.

On real archives and a real bus; the secured bus, as the auditor, at the end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from lintas.audit import read_checkpoints
from lintas.audit.logtree import CaseHead, LogTree, hash_text, head_leaf
from lintas.audit.merkle import Tree
from lintas.audit.stream import StreamReader
from lintas.demo import PATHWAYS, run_demo
from lintas.infra.keys.signing import SEALER, Signer
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.nats.topology import checkpoints_stream
from lintas.infra.settings import Settings
from tests.support.audit import ChainedAgencies, Sent, Tamper, cli, export, keys_file
from tests.support.helpers import declare_record

pytestmark = pytest.mark.nats

CASES = 4  # x 7 steps = 28 events


@pytest.fixture
async def log(js: JetStreamContext, settings: Settings) -> list[Sent]:
    await declare_record(js, settings)
    return await ChainedAgencies(js, settings).cases(CASES)


async def _verdict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = await cli("verify", *argv, "--json")
    return status, json.loads(capsys.readouterr().out)


def _codes(doc: dict[str, Any]) -> list[str]:
    return [p["code"] for p in doc["problems"]]


def _notes(doc: dict[str, Any]) -> str:
    return " ".join(doc["notes"])


async def test_a_checkpoint_commits_to_the_tree_of_the_whole_log_and_every_case_head(
    js: JetStreamContext, log: list[Sent], cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("checkpoint") == 0
    [checkpoint] = await read_checkpoints(js, cli_env)
    assert checkpoint.doc["version"] == 2
    # Recomputed here from the stream, as documented: one leaf per message, heads by case.
    tree = LogTree()
    reader = StreamReader(js, cli_env.stream)
    async for stored in reader.events(await reader.cut()):
        tree.add(stored)
    assert (checkpoint.tree_size, checkpoint.root_hash) == (28, tree.root())
    assert (checkpoint.cases_size, checkpoint.cases_root) == (CASES, tree.cases_root())
    more = await ChainedAgencies(js, cli_env).cases(1, steps=2)
    assert await cli("checkpoint") == 0
    status, doc = await _verdict(capsys)
    assert status == 0, doc["problems"]
    assert "2 recomputed, 2 Merkle roots recomputed" in _notes(doc)
    # Events after the last checkpoint: counted as not yet covered.
    await ChainedAgencies(js, cli_env).cases(1, steps=3)
    status, doc = await _verdict(capsys)
    assert status == 0
    assert doc["counts"]["uncovered"] == 3
    # The newest checkpoint, as --json names it.
    newest = (await read_checkpoints(js, cli_env))[-1]
    assert newest.root_hash is not None
    assert newest.cases_root is not None
    assert doc["checkpoint"] == {
        "seq": 2,
        "first_seq": 29,
        "last_seq": 30,
        "tree_size": 30,
        "root_hash": "sha256:" + newest.root_hash.hex(),
        "cases_size": CASES + 1,
        "cases_root": "sha256:" + newest.cases_root.hex(),
        "uncovered": 3,
    }
    assert f"not yet covered by a checkpoint: 3 messages after stream seq {more[-1].seq}" in (
        _notes(doc)
    )


async def test_a_one_case_export_verifies_alone_as_exactly_what_the_log_held_for_the_case(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    case_id = log[0].case_id
    archive = await export(tmp_path, "--case", case_id)
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["format"] == "lintas-archive/3"
    head = manifest["proofs"]["case_head"]
    assert head["seq"] == max(s.seq for s in log if s.case_id == case_id)
    # Its neighbours in the sorted heads tree, or the tree's edge.
    others = sorted({s.case_id for s in log} - {case_id})
    before, after = [c for c in others if c < case_id], [c for c in others if c > case_id]

    def case_of(neighbour: dict[str, Any] | None) -> list[str]:
        return [] if neighbour is None else [neighbour["entry"].split(" ")[0]]

    assert case_of(head["before"]) == before[-1:]
    assert case_of(head["after"]) == after[:1]
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, "--archive", str(archive), "--keys", str(keys))
    assert status == 0, doc["problems"]
    notes = _notes(doc)
    assert "7 messages proved in the log's tree of 28 messages" in notes
    assert doc["checkpoint"]["tree_size"] == 28
    assert doc["checkpoint"]["root_hash"] == manifest["proofs"]["checkpoint"]["root_hash"]
    assert doc["checkpoint"]["uncovered"] == 0
    assert f"case {case_id}: exactly what the log held for it up to stream seq 28" in notes
    assert "not a complete log" in notes


async def test_a_dropped_last_event_of_the_case_is_caught_even_under_a_re_signed_manifest(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its chain cannot show a dropped *last* event; the case's head in the checkpoint does.
    The manifest is re-signed with the sealer's own key: only the proofs are left to catch it."""
    assert await cli("checkpoint") == 0
    case_id = log[0].case_id
    archive = Tamper(await export(tmp_path, "--case", case_id))
    dropped = json.loads(archive.lines.pop())["seq"]  # case.closed
    archive.save(fix_manifest=True)
    proofs = [x for x in (archive.path / "proofs.jsonl").read_bytes().splitlines(keepends=True)]
    kept = b"".join(x for x in proofs if json.loads(x)["seq"] != dropped)
    (archive.path / "proofs.jsonl").write_bytes(kept)
    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["proofs"]["sha256"] = "sha256:" + hashlib.sha256(kept).hexdigest()
    (archive.path / "manifest.json").write_text(json.dumps(manifest))
    archive.sign_manifest(Signer.load(cli_env, SEALER))
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, "--archive", str(archive.path), "--keys", str(keys))
    assert status == 1
    assert _codes(doc) == ["inclusion"]
    assert (
        f"commits to case {case_id}'s last message up to it at stream seq {dropped}"
        in (doc["problems"][0]["message"])
    )
    assert "events of the case were dropped" in doc["problems"][0]["message"]


async def test_an_altered_event_of_a_case_export_fails_its_inclusion_proof(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another case's event put in place of one of this case's, manifest and positions
    re-signed to match: the tree says the log never held it there."""
    assert await cli("checkpoint") == 0
    archive = Tamper(await export(tmp_path, "--case", log[0].case_id))
    other = await export(tmp_path, "--case", log[1].case_id, name="other")
    swapped = (other / "events.jsonl").read_bytes().splitlines(keepends=True)[2]
    archive.lines[2] = swapped.replace(
        f'"seq":{json.loads(swapped)["seq"]}'.encode(),
        f'"seq":{json.loads(archive.lines[2])["seq"]}'.encode(),
    )
    archive.save(fix_manifest=True)
    archive.sign_manifest(Signer.load(cli_env, SEALER))
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, "--archive", str(archive.path), "--keys", str(keys))
    assert status == 1
    assert "inclusion" in _codes(doc)


async def test_a_one_case_export_tampered_to_look_complete_is_never_called_a_complete_log(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    archive = await export(tmp_path, "--case", log[0].case_id)
    manifest = json.loads((archive / "manifest.json").read_text())
    manifest["filters"]["case"] = None  # "the whole log"
    (archive / "manifest.json").write_text(json.dumps(manifest))
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, "--archive", str(archive), "--keys", str(keys))
    assert (status, doc["status"]) == (1, "problems")
    assert "manifest-signature" in _codes(doc)
    assert "sequence-gap" in _codes(doc)  # a whole log must run 1.. without a gap
    # Even signed by the sealer itself, it is a log with holes, not a complete one.
    Tamper(archive).sign_manifest(Signer.load(cli_env, SEALER))
    status, doc = await _verdict(capsys, "--archive", str(archive), "--keys", str(keys))
    assert status == 1
    assert "manifest-signature" not in _codes(doc)
    assert "sequence-gap" in _codes(doc)


def _sha(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("neighbours", ["as proved", "left out"])
async def test_a_sealer_checkpointing_two_heads_for_one_case_cannot_hide_its_last_events(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    neighbours: str,
) -> None:
    """The sealer's own key signs a checkpoint whose heads tree holds the case twice, its
    real head and a stale one (the sort kept: ties side by side); the archive ends at the
    stale head, its last two events gone, its proofs and manifest re-made and re-signed to
    match. The head's own proof holds; its neighbours in the tree give it away."""
    assert await cli("checkpoint") == 0
    [honest] = await read_checkpoints(js, cli_env)
    case_id = log[0].case_id
    archive = Tamper(await export(tmp_path, "--case", case_id))
    *kept_lines, _, _ = archive.lines
    stale = json.loads(kept_lines[-1])["seq"]
    archive.lines = kept_lines
    archive.save(fix_manifest=True)

    tree = LogTree()
    reader = StreamReader(js, cli_env.stream)
    async for stored in reader.events(await reader.cut()):
        tree.add(stored)
        if stored.seq == stale:
            stale_head = CaseHead(case_id, stored.seq, tree.heads[case_id][1])
    heads = sorted([*tree.case_heads(), stale_head], key=lambda h: (h.case_id, h.seq))
    forged_tree = Tree(head_leaf(h) for h in heads)
    sealer = Signer.load(cli_env, SEALER)
    forged = sealer.sign_document(
        honest.doc | {"cases_size": len(heads), "cases_root": hash_text(forged_tree.root())}
    )
    checkpoints = (json.dumps({"seq": honest.seq, "checkpoint": forged}) + "\n").encode()
    (archive.path / "checkpoints.jsonl").write_bytes(checkpoints)
    proofs = (archive.path / "proofs.jsonl").read_bytes().splitlines(keepends=True)
    proofs_raw = b"".join(x for x in proofs if json.loads(x)["seq"] <= stale)
    (archive.path / "proofs.jsonl").write_bytes(proofs_raw)

    index = heads.index(stale_head)

    def proved(at: int) -> dict[str, Any]:
        path = [p.hex() for p in forged_tree.inclusion_proof(at)]
        return {"entry": heads[at].data().decode(), "path": path}

    manifest = json.loads((archive.path / "manifest.json").read_text())
    manifest["checkpoints"]["sha256"] = _sha(checkpoints)
    manifest["proofs"]["sha256"] = _sha(proofs_raw)
    manifest["proofs"]["case_head"] = {
        "case": case_id,
        "seq": stale_head.seq,
        "hash": stale_head.hash,
        "index": index,
        "cases_size": len(heads),
        "path": [p.hex() for p in forged_tree.inclusion_proof(index)],
        "before": proved(index - 1) if index > 0 else None,
        "after": proved(index + 1) if neighbours == "as proved" else None,
    }
    (archive.path / "manifest.json").write_text(json.dumps(manifest))
    archive.sign_manifest(sealer)

    keys = await keys_file(tmp_path)
    status, doc = await _verdict(capsys, "--archive", str(archive.path), "--keys", str(keys))
    assert status == 1, doc["notes"]
    assert _codes(doc) == ["inclusion"]
    message = doc["problems"][0]["message"]
    assert f"may commit to another head of case {case_id}" in message
    if neighbours == "as proved":
        assert f"the entry after its head (index {index + 1}) is of case {case_id}" in message
    else:
        assert f"the manifest proves no entry after its head (index {index + 1})" in message


async def _rebuild_log(js: JetStreamContext, settings: Settings, bodies: list[Sent]) -> None:
    """What only the platform's operator could do: the streams deleted and made again,
    then the given events written back as they were."""
    await js.delete_stream(settings.stream)
    await js.delete_stream(checkpoints_stream(settings))
    await declare_record(js, settings)
    for sent in bodies:
        subject = (
            f"lintas.{sent.doc['source']}.{sent.doc['target']}."
            f"{sent.doc['type'].removeprefix('id.go.lintas.')}.{sent.case_id}"
        )
        await js.publish(subject, json.dumps(sent.doc).encode(), stream=settings.stream)


async def test_since_passes_on_a_log_that_grew_and_fails_on_one_that_lost_or_rewrote_events(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    kept = tmp_path / "kept-checkpoint.json"
    capsys.readouterr()
    assert await cli("verify", "--save-checkpoint", str(kept)) == 0
    assert "kept checkpoint 1 (stream seq 1..28) (tree size 28" in " ".join(
        capsys.readouterr().err.split()
    )
    assert json.loads(kept.read_text())["checkpoint"]["tree_size"] == 28

    # The log grew: the newest checkpoint's tree extends the kept one.
    grown = await ChainedAgencies(js, cli_env).cases(1, steps=3)
    assert await cli("checkpoint") == 0
    status, doc = await _verdict(capsys, "--since", str(kept))
    assert status == 0, doc["problems"]
    assert "consistency: the log only grew since the checkpoint kept (checkpoint 1" in (_notes(doc))
    # A whole-log archive is checked the same way, offline.
    archive = await export(tmp_path)
    keys = await keys_file(tmp_path)
    status, doc = await _verdict(
        capsys, "--archive", str(archive), "--keys", str(keys), "--since", str(kept)
    )
    assert status == 0, doc["problems"]

    # The log lost its events after seq 20 and was checkpointed afresh by the sealer: it
    # verifies by itself, but not against the checkpoint kept.
    everything = [*log, *grown]
    await _rebuild_log(js, cli_env, everything[:20])
    assert await cli("checkpoint") == 0
    capsys.readouterr()
    assert await cli("verify") == 0
    status, doc = await _verdict(capsys, "--since", str(kept))
    assert status == 5
    assert _codes(doc) == ["consistency"]
    assert "the events after seq 20 were removed since" in doc["problems"][0]["message"]

    # Rewritten before it (another log of as many events and more): the same.
    await js.delete_stream(cli_env.stream)
    await js.delete_stream(checkpoints_stream(cli_env))
    await declare_record(js, cli_env)
    await ChainedAgencies(js, cli_env).cases(CASES + 1)
    assert await cli("checkpoint") == 0
    capsys.readouterr()
    assert await cli("verify") == 0
    capsys.readouterr()
    assert await cli("verify", "--since", str(kept)) == 5
    out = " ".join(capsys.readouterr().out.split())
    assert "[consistency]" in out
    assert "the log was rewritten at or before seq 28" in out


async def test_verify_json_names_no_checkpoint_when_there_is_none(
    log: list[Sent], cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, doc = await _verdict(capsys)
    assert status == 0, doc["problems"]
    assert doc["checkpoint"] is None
    assert doc["counts"]["uncovered"] == 28


async def test_a_partial_export_since_a_kept_checkpoint_carries_its_consistency_proof(
    js: JetStreamContext,
    log: list[Sent],
    cli_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("checkpoint") == 0
    kept = tmp_path / "kept.json"
    assert await cli("verify", "--save-checkpoint", str(kept)) == 0
    grown = await ChainedAgencies(js, cli_env).cases(1, steps=3)
    assert await cli("checkpoint") == 0
    keys = await keys_file(tmp_path)
    case_id = log[0].case_id

    # Without a proof carried, a partial archive cannot be checked --since: exit 2.
    plain = await export(tmp_path, "--case", case_id, name="plain")
    capsys.readouterr()
    assert (
        await cli("verify", "--archive", str(plain), "--keys", str(keys), "--since", str(kept)) == 2
    )
    assert "lintas export --since" in " ".join(capsys.readouterr().err.split())

    archive = await export(tmp_path, "--case", case_id, "--since", str(kept))
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["proofs"]["consistency"]["from"]["tree_size"] == 28
    status, doc = await _verdict(
        capsys, "--archive", str(archive), "--keys", str(keys), "--since", str(kept)
    )
    assert status == 0, doc["problems"]
    assert (
        f"consistency: the log only grew since the checkpoint kept (checkpoint 1 (stream seq "
        f"1..28), 28 messages) up to checkpoint 2 (stream seq 29..{grown[-1].seq})"
    ) in _notes(doc)

    # The proof altered, the manifest re-signed with the sealer's own key: exit 5.
    forged = Tamper(archive)
    path = manifest["proofs"]["consistency"]["path"]
    path[0] = hashlib.sha256(bytes.fromhex(path[0])).hexdigest()
    (archive / "manifest.json").write_text(json.dumps(manifest))
    forged.sign_manifest(Signer.load(cli_env, SEALER))
    status, doc = await _verdict(
        capsys, "--archive", str(archive), "--keys", str(keys), "--since", str(kept)
    )
    assert status == 5
    assert _codes(doc) == ["consistency"]
    assert "the archive's consistency proof fails" in doc["problems"][0]["message"]

    # A whole-log export carries none: it is checked --since as it is.
    capsys.readouterr()
    assert await cli("export", "--out", str(tmp_path / "whole"), "--since", str(kept)) == 2
    assert not (tmp_path / "whole").exists()

    # The log rewritten after the checkpoint kept, checkpointed afresh: no proof, no archive.
    await _rebuild_log(js, cli_env, [*log, *grown][:20])
    assert await cli("checkpoint") == 0
    capsys.readouterr()
    out = tmp_path / "after-rewrite"
    assert await cli("export", "--out", str(out), "--case", case_id, "--since", str(kept)) == 5
    assert "does not extend the checkpoint kept" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


async def test_since_and_case_together_are_refused(
    log: list[Sent], cli_env: Settings, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.json"
    assert await cli("checkpoint") == 0
    assert await cli("verify", "--save-checkpoint", str(kept)) == 0
    assert await cli("verify", "--since", str(kept), "--case", log[0].case_id) == 2


async def test_export_without_the_sealers_key_refuses_to_make_one(
    log: list[Sent], cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_env.data_dir / "keys" / f"{SEALER}.key").unlink()
    capsys.readouterr()
    assert await cli("export", "--out", str(tmp_path / "a")) == 1
    assert "no sealer's key" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "a").exists()
    assert not (cli_env.data_dir / "keys" / f"{SEALER}.key").exists()


async def test_the_auditor_on_a_secured_bus_verifies_with_keys_kept_apart_and_a_kept_checkpoint(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = await run_demo(settings, len(PATHWAYS), timeout_s=120)
    assert uses_credentials(settings, "auditor")
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("LINTAS_NATS_URL", raising=False)
    assert await cli("checkpoint") == 0  # as the platform, with the sealer's key
    keys = await keys_file(tmp_path)
    kept = tmp_path / "kept.json"
    capsys.readouterr()
    # verify --keys FILE on the stream, as the auditor.
    assert await cli("verify", "--keys", str(keys), "--save-checkpoint", str(kept)) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "keys: the registry given" in out
    assert f"{result.events} events of {len(PATHWAYS)} cases" in out
    status, doc = await _verdict(capsys, "--keys", str(keys), "--since", str(kept))
    assert status == 0, doc["problems"]
    case = result.records[0]
    archive = await export(tmp_path, "--case", case.case_id)
    status, doc = await _verdict(capsys, "--archive", str(archive), "--keys", str(keys))
    assert status == 0, doc["problems"]
    assert f"case {case.case_id}: exactly what the log held for it" in _notes(doc)
    # A registry that lacks the platform's keys: nothing verifies by it.
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"agencies": {}}))
    status, doc = await _verdict(capsys, "--keys", str(foreign))
    assert status == 1
    assert "signature" in _codes(doc)
