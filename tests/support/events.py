"""Helpers shared by the unit tests: build events with explicit times, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lintas.contracts import Event, build_data, make_event, new_case_id
from lintas.infra.privacy.sealing import seal_data
from tests.support.samples import TEST_KEY

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
