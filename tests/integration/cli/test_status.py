"""``lintas status`` and ``lintas watch`` on a real bus and real projections.

The JSON of ``lintas status --json`` is compared with counts the test takes itself, with
plain SQL on the projection databases and JetStream's own consumer info.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from argparse import Namespace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from rich.console import Console
from sqlalchemy import create_engine, text

from lintas.cli import main
from lintas.cli._watch import run_watch
from lintas.consumers.app import Databases, attach_agency, attach_record, create_broker
from lintas.consumers.quarantine import list_entries
from lintas.consumers.watchdog import attach_watchdog, watchdog_ticker
from lintas.contracts import new_case_id
from lintas.infra.clock import ManualClock
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from lintas.infra.settings import Settings
from tests.support.helpers import consent, signed

pytestmark = pytest.mark.nats

RUNNING = ("kp2mi", "kemenpppa")  # consumers running; dukcapil's are declared, not running
AGENCIES = [*RUNNING, "dukcapil", "kpai"]  # kpai: no consumer on the bus at all


def _env(settings: Settings, url: str) -> dict[str, str]:
    env = {
        "LINTAS_NATS_URL": url,
        "LINTAS_DATA_DIR": str(settings.data_dir),
        "LINTAS_AGENCIES": json.dumps(AGENCIES),
    }
    if settings.database_url:
        env["LINTAS_DATABASE_URL"] = settings.database_url
    return env


async def _drained(js: JetStreamContext, settings: Settings, names: list[str]) -> None:
    """Until the running consumers hold nothing: JetStream has no notification to await."""
    async with asyncio.timeout(20):
        while True:
            infos = [await js.consumer_info(settings.stream, name) for name in names]
            if not any(i.num_pending or i.num_ack_pending for i in infos):
                return
            await asyncio.sleep(0.02)


class Scene:
    """Three referrals to KemenPPPA of different ages, one overdue and escalated; a document
    request to Dukcapil, whose consumers are not running; a forged event."""

    def __init__(self, js: JetStreamContext, settings: Settings, url: str) -> None:
        self.js, self.settings, self.url = js, settings, url
        self.now = datetime.now(UTC).replace(microsecond=0)

    async def play(self) -> None:
        js, settings, now = self.js, self.settings, self.now
        await declare_platform(js, settings, deployment_consumers(AGENCIES[:3]))
        kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
        pppa, watchdog = signed(js, settings, "kemenpppa"), signed(js, settings, "watchdog")
        ages = {"old": timedelta(days=40), "week": timedelta(days=3), "new": timedelta(hours=2)}
        cases = {name: new_case_id() for name in ages}
        for name, age in ages.items():
            await kemlu.publish(
                "case.opened",
                {
                    "situation": "left_behind",
                    "location": {"country": "ID"},
                    "jurisdiction": {"country": "ID"},
                    "risk_level": "low",
                },
                case_id=cases[name],
                target="kp2mi",
                time=now - age,
            )
            # The parent's consent to the referral (the consent gate's).
            await consent(kemlu, cases[name], ["kp2mi", "kemenpppa", "dukcapil"], at=now - age)
            await kp2mi.publish(
                "referral.requested",
                {"referral_id": f"ref-{name}", "service": "psychosocial_assessment"},
                case_id=cases[name],
                target="kemenpppa",
                time=now - age,
            )
        await pppa.publish(
            "referral.accepted",
            {"referral_id": "ref-week"},
            case_id=cases["week"],
            target="kp2mi",
            time=now - timedelta(days=2),
        )
        await pppa.publish(
            "referral.completed",
            {"referral_id": "ref-new", "outcome": "served"},
            case_id=cases["new"],
            target="kp2mi",
            time=now - timedelta(hours=1),
        )
        await kp2mi.publish(
            "document.requested",
            {"request_id": "doc-1", "kind": "nik"},
            case_id=cases["week"],
            target="dukcapil",
            time=now - timedelta(days=1),
        )
        # Not signed: every consumer that reads it quarantines it.
        forged = {"referral_id": "ref-x", "service": "shelter"}
        unsigned = type(kp2mi)(js, "kp2mi", stream=settings.stream)
        await unsigned.publish(
            "referral.requested", forged, case_id=cases["new"], target="kemenpppa"
        )

        databases = Databases(settings)
        broker = create_broker(self.url)
        verifier = Verifier(load_registry(settings))
        attach_record(broker, databases, settings, verifier=verifier)
        attach_watchdog(broker, databases, settings, verifier=verifier)
        for agency in RUNNING:
            attach_agency(broker, databases, settings, agency, verifier=verifier)
        running = ["record", "watchdog", *(f"{p}-{a}" for a in RUNNING for p in ("agency", "sent"))]
        await broker.start()
        try:
            await _drained(js, settings, running)
            # The old referral is long past its default due date (7 days) and its
            # escalation (7 more): the watchdog sends both, one tick after the other.
            ticker = watchdog_ticker(databases, settings, watchdog, clock=ManualClock(now))
            assert len((await ticker.tick()).published) == 1
            await _drained(js, settings, running)
            assert len((await ticker.tick()).published) == 1
            await _drained(js, settings, running)
        finally:
            await broker.stop()
            databases.dispose()


@pytest.fixture
async def scene(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    settings: Settings,
    database_url: str | None,
) -> Scene:
    settings = settings.model_copy(
        update={"database_url": database_url, "agencies": tuple(AGENCIES)}
    )
    scene = Scene(js, settings, nats_server.url)
    await scene.play()
    return scene


def _rows(url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params))
    finally:
        engine.dispose()


def _bucket(age: timedelta) -> str:
    days = age.total_seconds() / 86400
    return (
        "under_1d"
        if days < 1
        else "1d_to_7d"
        if days < 7
        else "7d_to_30d"
        if days < 30
        else "over_30d"
    )


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _status_json(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    for name in list(os.environ):
        if name.startswith("LINTAS_") and not name.startswith("LINTAS_TEST_"):
            monkeypatch.delenv(name)
    for name, value in _env(scene.settings, scene.url).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", "--json", "--sample", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


async def test_status_json_matches_the_projections(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = await _status_json(scene, monkeypatch, capsys)
    settings, js = scene.settings, scene.js
    at = datetime.fromisoformat(doc["at"])
    assert doc["schema"] == "lintas.status/1"
    assert list(doc["agencies"]) == AGENCIES

    # Open hand-offs by age and the overdue among them, straight from each worklist.
    for agency in RUNNING:
        rows = _rows(
            settings.database_url_for(f"worklist-{agency}"),
            "SELECT requested_at, overdue FROM worklist_item "
            "WHERE agency = :agency AND status IN ('requested', 'accepted')",
            agency=agency,
        )
        by_age = dict.fromkeys(("under_1d", "1d_to_7d", "7d_to_30d", "over_30d"), 0)
        for requested_at, _ in rows:
            by_age[_bucket(at - _aware(requested_at))] += 1
        mine = doc["agencies"][agency]
        assert mine["open"] == {"total": len(rows), "by_age": by_age}, agency
        assert mine["overdue"] == sum(bool(overdue) for _, overdue in rows), agency
    pppa = doc["agencies"]["kemenpppa"]
    assert pppa["open"]["by_age"] == {"under_1d": 0, "1d_to_7d": 1, "7d_to_30d": 0, "over_30d": 1}
    assert (pppa["overdue"], pppa["escalated"]) == (1, 1)

    # The watchdog's deadlines.
    deadlines = _rows(
        settings.database_url_for("watchdog"),
        "SELECT asked, status, overdue_seq, escalated_seq FROM watchdog_deadline",
    )
    still_open = [d for d in deadlines if d[1] == "open"]
    assert doc["watchdog"] == {
        "followed": len(deadlines),
        "open": len(still_open),
        "overdue": sum(d[2] is not None for d in still_open),
        "escalated": sum(d[3] is not None for d in still_open),
    }
    assert doc["watchdog"]["followed"] == 4  # three referrals, one document request

    # Pending and lag from JetStream itself: Dukcapil's consumers never ran.
    for agency in AGENCIES[:3]:
        infos = [
            await js.consumer_info(settings.stream, f"{p}-{agency}") for p in ("agency", "sent")
        ]
        mine = doc["agencies"][agency]
        assert mine["pending"] == sum(i.num_pending for i in infos), agency
        assert mine["ack_pending"] == sum(i.num_ack_pending for i in infos), agency
        assert mine["consumers"] == [f"agency-{agency}", f"sent-{agency}"]
    dukcapil = doc["agencies"]["dukcapil"]
    assert dukcapil["pending"] == 1 + 3  # its document request, and the three consents
    # Lag counts from when the bus stored the message (during this test), not the event's
    # own time (a day ago).
    assert 0 < dukcapil["lag_s"] < 120
    assert dukcapil["open"] is None  # no worklist: its consumers never ran
    kpai = doc["agencies"]["kpai"]
    assert (kpai["consumers"], kpai["pending"], kpai["lag_s"], kpai["open"]) == (
        [],
        None,
        None,
        None,
    )
    assert doc["agencies"]["kp2mi"]["lag_s"] == 0.0

    # The quarantine, per agency and in all.
    entries = [e async for e in list_entries(js, settings)]
    assert doc["quarantined"] == len(entries) > 0
    for agency in AGENCIES:
        held = [e for e in entries if e.consumer in (f"agency-{agency}", f"sent-{agency}")]
        assert doc["agencies"][agency]["quarantined"] == len(held), agency
    assert doc["agencies"]["kemenpppa"]["quarantined"] == 1

    info = await js.stream_info(settings.stream)
    assert doc["stream"] == {
        "name": settings.stream,
        "messages": info.state.messages,
        "last_seq": info.state.last_seq,
        "events_per_second": None,
        "first_seq": info.state.first_seq,
        "bytes": info.state.bytes,
    }
    assert doc["problems"] == []
    assert doc["sample_s"] is None
    assert doc["consumers"]["watchdog"]["pending"] == 0


async def test_watch_redraws_the_same_view(scene: Scene) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system=None)
    args = Namespace(interval=0.05)
    settings = scene.settings.model_copy(update={"nats_url": scene.url})
    assert await run_watch(settings, args, console, frames=3) == 0
    shown = out.getvalue()
    assert "kemenpppa" in shown
    assert "escalated to KPAI" in shown
    # Redrawn in place: the cursor goes back up over the previous frame.
    assert shown.count("\x1b[") > 0
    assert shown.count("platform consumers") >= 3


async def test_status_says_when_nothing_has_run_or_the_bus_is_away(
    settings: Settings,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    assert await asyncio.to_thread(main, ["status"]) == 1
    said = capsys.readouterr()
    assert "nothing has run yet" in said.err
    assert said.out == ""  # `lintas status --json | jq` gets JSON or nothing
    assert not settings.data_dir.exists(), "looking must not create a store"

    monkeypatch.setenv("LINTAS_NATS_URL", nats_server.url)  # a bus with no LINTAS stream
    assert await asyncio.to_thread(main, ["status", "--json"]) == 1
    said = capsys.readouterr()
    assert "no stream LINTAS on the bus: nothing has run yet" in said.err
    assert said.out == ""

    monkeypatch.setenv("LINTAS_NATS_URL", "nats://127.0.0.1:1")
    assert await asyncio.to_thread(main, ["watch"]) == 1
    said = capsys.readouterr()
    assert "cannot reach NATS at nats://127.0.0.1:1" in said.err
    assert said.out == ""
