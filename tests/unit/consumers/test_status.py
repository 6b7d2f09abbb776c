"""The status snapshot from bus samples and projections, without a bus."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from lintas.cli._watch import render_status
from lintas.consumers.status import (
    BusSample,
    ConsumerSample,
    OpenHandoffs,
    Projections,
    WatchdogStatus,
    build_status,
)
from lintas.infra.reads import StreamState
from lintas.infra.settings import Settings

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _sample(at: float, last_seq: int, acked: dict[str, int], **pending: int) -> BusSample:
    return BusSample(
        monotonic=at,
        stream=StreamState(messages=last_seq, bytes=100 * last_seq, first_seq=1, last_seq=last_seq),
        consumers={
            name: ConsumerSample(name, pending.get(name.replace("-", "_"), 0), 0, count, 0.0)
            for name, count in acked.items()
        },
        quarantined={"agency-kp2mi": 2, "record": 1},
    )


def test_rates_come_from_two_samples_and_agencies_from_settings_and_the_bus() -> None:
    settings = Settings(data_dir="/nonexistent")
    before = _sample(10.0, 100, {"agency-kp2mi": 40, "sent-kp2mi": 10, "record": 100})
    after = _sample(
        12.0,
        130,
        {"agency-kp2mi": 50, "sent-kp2mi": 14, "record": 130, "agency-my-jkm": 3},
        agency_kp2mi=5,
    )
    projections = Projections(
        open={"kp2mi": OpenHandoffs(total=1, by_age={"under_1d": 1})},
        overdue={"kp2mi": 0},
        escalated={"kp2mi": 1},
        watchdog=WatchdogStatus(followed=3, open=1, overdue=1, escalated=1),
    )
    status = build_status(settings, after, before, projections, ["kp2mi", "kpai"], NOW)

    assert status.sample_s == 2.0
    assert status.stream.events_per_second == 15.0
    assert list(status.agencies) == ["kp2mi", "kpai", "my-jkm"]
    kp2mi = status.agencies["kp2mi"]
    assert (kp2mi.pending, kp2mi.events_per_second, kp2mi.quarantined) == (5, 7.0, 2)
    assert (kp2mi.escalated, kp2mi.open) == (1, projections.open["kp2mi"])
    # A consumer that was not there in the first sample has no rate yet.
    assert status.agencies["my-jkm"].events_per_second is None
    kpai = status.agencies["kpai"]
    assert (kpai.consumers, kpai.pending, kpai.open, kpai.escalated) == ([], None, None, 0)
    assert status.quarantined == 3
    assert status.consumers["record"].events_per_second == 15.0

    doc = status.to_json()
    assert doc["schema"] == "lintas.status/1"
    assert doc["at"] == "2025-03-01T08:00:00Z"


def test_one_sample_gives_no_rates_and_the_view_renders() -> None:
    settings = Settings(data_dir="/nonexistent")
    only = _sample(1.0, 7, {"agency-kp2mi": 7, "watchdog": 7})
    status = build_status(settings, only, None, Projections(), ["kp2mi"], NOW)
    assert status.sample_s is None
    assert status.stream.events_per_second is None
    assert status.agencies["kp2mi"].events_per_second is None
    assert status.watchdog is None
    assert status.agencies["kp2mi"].escalated is None  # no watchdog: unknown, not zero
    render_status(status)  # renders with every optional part missing


def test_a_stream_state_not_read_is_unknown_never_zero() -> None:
    """The operator's read service did not answer: the stream's numbers and its rate are
    null in the JSON and ``-`` on screen, and the line under the tables says why."""
    settings = Settings(data_dir="/nonexistent")
    before = _sample(1.0, 7, {"agency-kp2mi": 7})
    unread = BusSample(
        monotonic=2.0,
        stream=None,
        consumers=before.consumers,
        quarantined={},
        problems=("stream state not read (no read service answers)",),
    )
    status = build_status(settings, unread, before, Projections(), ["kp2mi"], NOW)
    stream = status.to_json()["stream"]
    assert stream == {
        "name": "LINTAS",
        "messages": None,
        "last_seq": None,
        "events_per_second": None,
        "first_seq": None,
        "bytes": None,
    }
    assert status.problems == ["stream state not read (no read service answers)"]
    shown = Console(width=200, record=True, color_system=None)
    shown.print(render_status(status))
    text = shown.export_text()
    assert "LINTAS: - events" in text
    assert "stream state not read (no read service answers)" in text

    read = build_status(settings, before, None, Projections(), ["kp2mi"], NOW)
    assert read.to_json()["stream"] == {
        "name": "LINTAS",
        "messages": 7,
        "last_seq": 7,
        "events_per_second": None,
        "first_seq": 1,
        "bytes": 700,
    }
