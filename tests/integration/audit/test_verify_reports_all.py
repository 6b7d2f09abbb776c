"""``lintas verify`` reports everything: messages that are no event are counted and passed
over, every problem after them is still found, ``--json`` is a stable document, and the exit
status tells verified (0) from problems found (1) from could not verify (2)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from lintas.audit import NOT_EVENTS, PROBLEMS
from lintas.contracts import decode, encode, event_hash, uuid7
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.topology import stream_config
from lintas.infra.settings import Settings
from tests.support.audit import T0, ChainedAgencies, Sent, cli
from tests.support.cluster import refused_port
from tests.support.helpers import declare_record

pytestmark = pytest.mark.nats

PROBLEM_KEYS = {"code", "seq", "event_id", "case", "message"}


async def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = await cli("verify", *args)
    return status, capsys.readouterr().out


async def _stale_chain(js: JetStreamContext, settings: Settings, stale: Sent, like: Sent) -> int:
    """A correctly signed event of ``like``'s case chained to ``stale``, an earlier event of
    the case than its last: what removing the events in between leaves behind."""
    event = decode(json.dumps(like.doc).encode())
    envelope = event.envelope.model_copy(
        update={"id": str(uuid7()), "prevhash": event_hash(stale.doc), "signature": None}
    )
    signer = Signer.load(settings, envelope.source)
    body = encode(signer.sign(envelope))
    ack = await js.publish(envelope.nats_subject, body, stream=settings.stream)
    return ack.seq


async def test_junk_is_counted_and_passed_over_and_a_later_break_still_found(
    js: JetStreamContext, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_env
    await declare_record(js, settings)
    agencies = ChainedAgencies(js, settings)
    log = await agencies.cases(2, steps=3)  # seq 1..6; case a: 1, 3, 5; case b: 2, 4, 6
    a, b = log[0].case_id, log[1].case_id
    junk = [
        (f"lintas.kemlu.kp2mi.case.opened.{a}", b""),  # empty, on a case's subject
        (f"lintas.kemlu.kp2mi.case.opened.{b}", b"{not json"),
        ("lintas.kemlu.anything", json.dumps({"hello": "world"}).encode()),  # JSON, no event
    ]
    junk_seqs = [(await js.publish(s, body, stream=settings.stream)).seq for s, body in junk]
    assert junk_seqs == [7, 8, 9]
    # The publishers chain on past the junk (a's head is now the empty message)...
    # (closed by kemlu, its owner: verify judges the authority policy too)
    after = await agencies.publish(
        "kemlu", "kp2mi", "case.closed", {"reason": "reintegrated"}, case_id=a, time=T0
    )
    # ...and later an event of b is chained to b's first event: its later ones "removed".
    broken = await _stale_chain(js, settings, stale=log[1], like=log[5])
    assert (after.seq, broken) == (10, 11)

    status, out = await _verify(capsys)
    assert status == 1, out
    text = " ".join(out.split())
    assert (
        "3 messages admission could never have written (no event, not verified, skipped by "
        "every consumer): seq 7 (not json), seq 8 (not json), seq 9 (not an envelope)"
    ) in text
    assert "FAILED stream LINTAS up to seq 11: 1 problem (8 events of 2 cases checked)" in text
    assert "[chain-break] stream seq 11, event " in text
    assert (
        f"case {b}: prevhash does not match the case's previous event in the log (stream seq 6)"
        in text
    )

    status, out = await _verify(capsys, "--json")
    assert status == 1
    doc = json.loads(out)
    assert doc["format"] == "lintas-verify/1"
    assert doc["status"] == "problems"
    assert doc["counts"] == {
        "messages": 11,
        "events": 8,
        "cases": 2,
        "not_events": 3,
        "problems": 1,
        "anchored_cases": 0,
        "uncovered": 11,  # no checkpoint yet
    }
    assert [(p["code"], p["seq"], p["case"]) for p in doc["not_events"]] == [
        ("not-json", 7, a),
        ("not-json", 8, b),
        ("not-an-envelope", 9, None),
    ]
    [problem] = doc["problems"]
    assert set(problem) == PROBLEM_KEYS
    assert (problem["code"], problem["seq"], problem["case"]) == ("chain-break", 11, b)
    assert {p["code"] for p in doc["not_events"]} <= set(NOT_EVENTS)
    assert problem["code"] in PROBLEMS


async def test_a_clean_stream_exits_0_and_its_json_has_the_documented_shape(
    js: JetStreamContext, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await declare_record(js, cli_env)
    log = await ChainedAgencies(js, cli_env).cases(2, steps=2)
    status, out = await _verify(capsys, "--json")
    assert status == 0, out
    doc = json.loads(out)
    assert set(doc) == {
        "format",
        "source",
        "status",
        "authenticated",
        "counts",
        "first_seq",
        "last_seq",
        "checkpoint",
        "problems",
        "not_events",
        "notes",
    }
    assert (doc["status"], doc["problems"], doc["not_events"]) == ("verified", [], [])
    assert (doc["counts"]["events"], doc["first_seq"], doc["last_seq"]) == (4, 1, len(log))


async def test_a_stream_that_can_drop_events_is_a_problem_and_its_losses_are_named(
    js: JetStreamContext, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await declare_record(js, cli_env)
    await ChainedAgencies(js, cli_env).cases(2, steps=3)
    # What the platform could do before it was denied: a limit (here on an open bus).
    await js.update_stream(replace(stream_config(cli_env), max_msgs=4))
    status, out = await _verify(capsys, "--json")
    assert status == 1
    problems = [(p["code"], p["seq"]) for p in json.loads(out)["problems"]]
    assert problems[0] == ("stream-config", None)
    assert ("sequence-gap", 3) in problems  # 1..2 dropped by the limit
    status, out = await _verify(capsys)
    text = " ".join(out.split())
    assert "[stream-config] stream LINTAS can lose events: max_msgs=4 with discard=old" in text
    assert "stream sequence 1..2 missing before this event" in text


async def test_could_not_verify_exits_2(
    cli_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with refused_port() as port:
        monkeypatch.setenv("LINTAS_NATS_URL", f"nats://127.0.0.1:{port}")
        capsys.readouterr()
        status = await cli("verify")
        said = capsys.readouterr()
        assert status == 2, said
        assert "could not verify" in said.err  # a failure is said on stderr
        status, out = await _verify(capsys, "--json")
        assert status == 2
        assert json.loads(out)["status"] == "unverified"
        status, out = await _verify(capsys, "--archive", str(tmp_path / "no-such-archive"))
        assert status == 2, out
