"""verify judges the authority policy: each event it refuses is a problem
``authority:<code>`` naming the event; a case begun before a partial log is judged alone."""

from __future__ import annotations

from typing import Any

from lintas.audit import PROBLEMS, LogChecker
from lintas.audit.authority import authority
from lintas.audit.check import CASE_PASSES
from lintas.contracts import new_case_id
from lintas.contracts.authority import CODES
from tests.support.audit import REGISTRY, Log


def _checked(log: Log, **kwargs: Any) -> LogChecker:
    checker = LogChecker(REGISTRY, **{"contiguous_from": 1, "case_passes": CASE_PASSES, **kwargs})
    for stored in log.events:
        checker.check(stored)
    checker.finish()
    return checker


def test_every_policy_code_is_a_problem_code_and_verify_runs_the_policy() -> None:
    assert {f"authority:{code}" for code in CODES} <= set(PROBLEMS)
    assert authority in CASE_PASSES


def test_honest_cases_hold() -> None:
    log = Log()
    for minutes in (0, 10):
        log.case(new_case_id(), minutes=minutes)
    assert _checked(log).problems == []


def test_an_erasure_by_a_non_owner_is_named_with_its_seq_id_case_and_reason() -> None:
    log = Log()
    case = new_case_id()
    log.case(case)  # kemlu opens, kp2mi takes it over
    erased = log.add("case.erased", case, source="kemlu", target="all", minutes=5)
    log.add("case.closed", case, source="kp2mi", target="all", minutes=6)  # the owner: holds
    [problem] = _checked(log).problems
    assert problem.code == "authority:not_owner"
    assert problem.event is not None
    assert (problem.event.seq, problem.event.case_id) == (erased.seq, case)
    assert problem.event.event_id is not None
    assert problem.event.event_id in erased.body.decode()
    assert "case.erased from kemlu" in problem.message
    assert "comes only from the owner" in problem.message
    assert problem.to_json()["code"] == "authority:not_owner"


def test_a_reopening_of_an_open_case_is_refused() -> None:
    """A reopening of a case never closed is refused and not applied."""
    log = Log()
    case = new_case_id()
    log.case(case)
    log.add("case.reopened", case, source="kp2mi", target="all", minutes=5)
    codes = [p.code for p in _checked(log).problems]
    assert codes == ["authority:case_not_closed"]


def test_a_case_begun_before_a_partial_log_is_judged_alone() -> None:
    """Its opening is not here: nothing is refused for that (no case_not_opened), but what
    no state allows still is (a review not from KPAI)."""
    log = Log()
    case = new_case_id()
    log.case(case)
    log.add("oversight.reviewed", case, source="kemlu", target="kp2mi", minutes=5)
    partial = Log()
    partial.events = log.events[1:]  # the opening left out, as an export --from leaves it
    checker = _checked(partial, contiguous_from=None, anchors=True)
    assert checker.anchored == 1
    assert [p.code for p in checker.problems] == ["authority:kpai_only"]
