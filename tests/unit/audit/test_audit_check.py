"""The audit's pure parts: the checker, event lines, the manifest, instants (no broker)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lintas.audit import ArchiveReader, LogChecker, StoredEvent, StreamCut, parse_instant
from lintas.audit.archive import (
    ArchiveError,
    LineError,
    Manifest,
    encode_line,
    export_archive,
    parse_line,
)
from lintas.audit.check import verify_archive, verify_stream
from lintas.contracts import new_case_id
from lintas.infra.keys.signing import SEALER
from tests.support.audit import REGISTRY, SIGNERS, T0, Log


def _run(checker: LogChecker, events: Iterable[StoredEvent]) -> str | None:
    """What is wrong with the first message something is wrong with (problem or no event)."""
    for stored in events:
        if found := checker.check(stored):
            return str(found[0])
    return None


def _checker(**kwargs: Any) -> LogChecker:
    return LogChecker(REGISTRY, **{"contiguous_from": 1, **kwargs})


def test_an_intact_log_passes_and_is_counted() -> None:
    log = Log()
    a, b = new_case_id(), new_case_id()
    log.case(a)
    log.case(b, minutes=10)
    checker = _checker()
    assert _run(checker, log.events) is None
    assert (checker.events, checker.cases, checker.previous_seq) == (6, 2, 6)
    assert checker.end_of(6) is None
    finding = checker.end_of(8)
    assert finding is not None
    assert "stream sequences 7..8 should follow" in str(finding)
    assert f"stream seq 6, event {log.events[-1].ref().event_id}, case {b}" in str(finding)


def test_sequence_gaps_and_disorder_are_named() -> None:
    log = Log()
    log.case(new_case_id())
    gap = _run(_checker(), [log.events[0], log.events[2]])
    assert gap is not None
    assert gap.startswith("stream seq 3, event")
    assert "stream sequence 2 missing before this event" in gap
    log.case(new_case_id())
    back = _run(_checker(contiguous_from=None), [log.events[3], log.events[0]])
    assert back is not None
    assert "stream sequence 1 comes after 4" in back
    # A filtered read needs only increasing sequences.
    assert _run(_checker(contiguous_from=None), [log.events[0], log.events[3]]) is None


def test_a_broken_chain_is_named_with_the_previous_event_of_the_case() -> None:
    log = Log()
    case_id = new_case_id()
    log.case(case_id)
    log.add("case.closed", case_id, source="kp2mi", minutes=5, chain=False)
    finding = _run(_checker(), log.events)
    assert finding is not None
    assert "stream seq 4" in finding
    assert "carries no prevhash, but its case has an earlier event (stream seq 3)" in finding


def test_a_case_that_begins_with_a_prevhash_is_refused_unless_anchors_are_allowed() -> None:
    log = Log()
    case_id = new_case_id()
    log.case(case_id)
    later = log.events[1:]
    strict = _run(_checker(contiguous_from=None), later)
    assert strict is not None
    assert "first event of its case in the log but carries a prevhash" in strict
    anchored = _checker(contiguous_from=None, anchors=True)
    assert _run(anchored, later) is None
    assert (anchored.anchored, anchored.anchored_cases) == (1, [case_id])


def test_contract_and_signature_failures_name_what_they_can() -> None:
    log = Log()
    case_id = new_case_id()
    log.case(case_id)
    opened = log.events[0]
    not_json = StoredEvent(1, opened.subject, opened.body[:-1])
    checker = _checker()
    finding = _run(checker, [not_json])
    assert finding == f"stream seq 1, event ?, case {case_id}: not JSON"
    # No event at all: counted and listed, not a problem of the log.
    assert ([p.code for p in checker.not_events], checker.problems) == (["not-json"], [])
    doc = json.loads(opened.body)
    unsigned = {k: v for k, v in doc.items() if k not in ("signature", "keyid")}
    finding = _run(_checker(), [StoredEvent(1, opened.subject, json.dumps(unsigned).encode())])
    assert finding is not None
    assert f"event {doc['id']}, case {case_id}: signature: " in finding
    assert "is not signed" in finding
    checker = _checker()
    moved = _run(checker, [StoredEvent(1, opened.subject.replace("kemlu", "kpai", 1), opened.body)])
    assert moved is not None
    assert "published on" in moved
    assert [p.code for p in checker.not_events] == ["not-an-envelope"]


def test_an_archive_manifest_filters_the_events_it_may_hold() -> None:
    log = Log()
    a, b = new_case_id(), new_case_id()
    log.case(a)
    log.case(b)
    wrong_case = _run(_checker(contiguous_from=None, case_id=a), log.events)
    assert wrong_case is not None
    assert f"is not of case {a}" in wrong_case
    window = (T0 + timedelta(minutes=1), None)
    early = _run(_checker(contiguous_from=None, anchors=True, window=window), log.events)
    assert early is not None
    assert "lies outside the manifest's window" in early


def test_every_problem_is_listed_and_the_check_carries_on() -> None:
    log = Log()
    a, b = new_case_id(), new_case_id()
    log.case(a)
    log.case(b, minutes=10)
    log.add("case.closed", a, source="kp2mi", minutes=20, chain=False)  # seq 7: unchained
    junk = StoredEvent(9, log.events[0].subject, b"[1, 2]")  # seq 8 removed; 9 is no event
    checker = _checker()
    for stored in [*log.events[:6], log.events[6], junk]:
        checker.check(stored)
    assert checker.end_of(10) is not None
    assert [(p.code, p.event.seq if p.event else None) for p in checker.problems] == [
        ("chain-missing", 7),
        ("sequence-gap", 9),
        ("log-end", 9),
    ]
    assert [(p.code, p.event and p.event.seq) for p in checker.not_events] == [
        ("not-an-envelope", 9)
    ]
    assert (checker.messages, checker.events, checker.cases) == (8, 7, 2)


def test_a_case_pass_is_a_few_lines_and_names_the_event() -> None:
    """The hook the authority policy plugs into: a fold over one case's events, holding a
    state per case (here, how many events it has seen), never the events."""
    log = Log()
    a, b = new_case_id(), new_case_id()
    log.case(a)
    log.case(b, minutes=10)
    seen: list[Any] = []

    def closing_officer(event: Any, state: Any) -> Any:
        seen.append(state)
        found = []
        if event.type == "case.assigned":
            found.append(("authority-test", f"{event.source} may not assign"))
        return (state or 0) + 1, found

    checker = _checker(case_passes=[closing_officer])
    for stored in log.events:
        checker.check(stored)
    checker.finish()
    assert seen == [None, 1, 2, None, 1, 2]
    assert [
        (p.code, p.event and p.event.seq, p.event and p.event.case_id) for p in checker.problems
    ] == [
        ("authority-test", 3, a),
        ("authority-test", 6, b),
    ]


async def test_a_stream_a_limit_emptied_is_not_verified_as_empty() -> None:
    """Six events once, none now: the stream's last sequence still says six."""
    verdict = await verify_stream(_each([]), StreamCut("LINTAS", 7, 6, 0), REGISTRY)
    assert [p.code for p in verdict.problems] == ["log-end"]
    assert "stream sequences 1..6 should follow" in str(verdict.problems[0])


# -- lines, manifest, instants ------------------------------------------------------------------


def test_a_line_keeps_the_body_byte_for_byte() -> None:
    body = b'{"b": 1,  "a":"\xc3\xa9"}'  # spacing and member order as stored
    stored = StoredEvent(7, 'lintas.x,"event":y', body, T0)
    line = encode_line(stored)
    assert line.endswith(b',"event":' + body + b"}\n")
    assert parse_line(line) == stored
    assert json.loads(line)["event"] == {"b": 1, "a": "é"}


@pytest.mark.parametrize("body", [b"not json", b'{"a":\n1}', b"[1]", b"\xff\xfe"])
def test_a_body_that_cannot_be_spliced_is_kept_as_base64(body: bytes) -> None:
    stored = StoredEvent(3, "lintas.s", body)
    line = encode_line(stored)
    assert b"body_b64" in line
    assert line.count(b"\n") == 1
    assert parse_line(line) == stored


@pytest.mark.parametrize(
    "line", [b"", b"{}", b'{"seq":"1","subject":"s","event":{}}', b'{"seq":1,"event":{}}']
)
def test_a_malformed_line_is_refused(line: bytes) -> None:
    with pytest.raises(LineError):
        parse_line(line)


def test_manifest_round_trip_and_refusal() -> None:
    manifest = Manifest(
        stream="LINTAS",
        created_at=T0.isoformat(),
        cut_first_seq=1,
        cut_last_seq=9,
        count=3,
        first_seq=4,
        last_seq=9,
        events_sha256="sha256:00",
        keys_sha256="sha256:11",
        agencies=("kemlu",),
        time_from=T0,
    )
    again = Manifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again == manifest
    assert again.anchored
    assert not again.whole_log
    with pytest.raises(ArchiveError, match="malformed"):
        Manifest.from_json({"format": "lintas-archive/1"})
    with pytest.raises(ArchiveError, match="format"):
        Manifest.from_json({**manifest.to_json(), "format": "other/9"})


def test_instants_need_a_zone() -> None:
    assert parse_instant("2025-03-01T08:00:00Z") == T0
    assert parse_instant("2025-03-01T15:00:00+07:00") == T0
    with pytest.raises(ValueError, match="no time zone"):
        parse_instant("2025-03-01T08:00:00")
    with pytest.raises(ValueError, match="not an ISO 8601"):
        parse_instant("yesterday")


# -- an archive written and read back, no bus -------------------------------------------------


async def _each(events: Iterable[StoredEvent]) -> AsyncIterator[StoredEvent]:
    for stored in events:
        yield stored


@pytest.mark.parametrize("name", ["dir", "evidence.tar.gz"])
async def test_an_archive_written_from_any_source_verifies(tmp_path: Path, name: str) -> None:
    log = Log()
    log.case(new_case_id())
    log.case(new_case_id(), minutes=30)
    cut = StreamCut("LINTAS", 1, 6, 6)
    manifest = await export_archive(
        _each(log.events), tmp_path / name, cut=cut, registry=REGISTRY, signer=SIGNERS[SEALER]
    )
    assert (manifest.count, manifest.first_seq, manifest.last_seq) == (6, 1, 6)
    assert manifest.agencies == ("kemlu", "kp2mi")
    with ArchiveReader(tmp_path / name) as reader:
        verdict = verify_archive(reader, registry=REGISTRY)
    assert verdict.ok, verdict.finding
    assert verdict.authenticated
    assert verdict.uncovered == 6  # no checkpoint over it
    with ArchiveReader(tmp_path / name) as reader:
        alone = verify_archive(reader)  # by its own keys: holds, but proves nothing
    assert alone.ok, alone.finding
    assert not alone.authenticated
    assert alone.to_json()["status"] == "unauthenticated"
    assert (verdict.events, verdict.cases) == (6, 2)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left


async def test_a_window_keeps_events_by_event_time(tmp_path: Path) -> None:
    log = Log()
    first, second = new_case_id(), new_case_id()
    log.case(first)
    log.case(second, minutes=30)
    manifest = await export_archive(
        _each(log.events),
        tmp_path / "w",
        cut=StreamCut("LINTAS", 1, 6, 6),
        registry=REGISTRY,
        time_from=T0 + timedelta(minutes=1),
        time_to=T0 + timedelta(minutes=31),
        signer=SIGNERS[SEALER],
    )
    assert (manifest.count, manifest.first_seq, manifest.last_seq) == (4, 2, 5)
    with ArchiveReader(tmp_path / "w") as reader:
        verdict = verify_archive(reader, registry=REGISTRY)
    assert verdict.ok, verdict.finding
    assert verdict.anchored == 1  # the first case began before the window
