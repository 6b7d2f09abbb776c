"""Helpers shared by the unit tests: build events with explicit times, no broker.

And one case's consent story, minute by minute, which the folds, the projections' writes,
the consumer edge and a replay shard are all tested on: opened, consent given, a referral
it covers, consent withdrawn, a referral after that, erased.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lintas.contracts import BROADCAST, Event, build_data, make_event, new_case_id
from lintas.infra.privacy.sealing import seal_data
from tests.support.samples import SAMPLES, TEST_KEY

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """``T0`` plus ``minutes``: every test event gets an explicit, readable time."""
    return T0 + timedelta(minutes=minutes)


def ev(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    target: str,
    case_id: str,
    time: datetime,
    event_id: str | None = None,
) -> Event:
    """An event as published: personal fields sealed with the test key."""
    return make_event(
        seal_data(build_data(event_type, data), TEST_KEY, 1, case_id=case_id),
        source=source,
        target=target,
        case_id=case_id,
        time=time,
        event_id=event_id,
    )


CASE = new_case_id()


def _e(
    event_type: str, source: str, target: str, minutes: float, data: dict[str, Any] | None = None
) -> Event:
    """An event of ``CASE`` at ``minutes``, its data ``SAMPLES``' unless given."""
    return ev(
        event_type,
        SAMPLES[event_type] if data is None else data,
        source=source,
        target=target,
        case_id=CASE,
        time=at(minutes),
    )


OPENED = _e("case.opened", "kemlu", "kp2mi", 0)
CONSENT = _e(
    "consent.recorded",
    "kemlu",
    BROADCAST,
    1,
    {
        "consent_id": "c-1",
        "given_by": "parent",
        "child_assent": True,
        "scopes": ["services", "disclosure_to_agencies"],
        "agencies": ["kp2mi", "kemensos"],
    },
)
REFERRAL = _e(
    "referral.requested", "kp2mi", "kemensos", 2, {"referral_id": "r-1", "service": "shelter"}
)
WITHDRAWN = _e(
    "consent.withdrawn",
    "kemlu",
    BROADCAST,
    3,
    {
        "consent_id": "c-1",
        "reason": "the parent changed her mind",
        "notified": ["kemensos", "kp2mi"],
    },
)
LATE_REFERRAL = _e(
    "referral.requested", "kp2mi", "kemensos", 4, {"referral_id": "r-2", "service": "shelter"}
)
ERASED = _e("case.erased", "kemlu", BROADCAST, 5)  # by the case's owner, its opener
