"""The walking skeleton end to end: the demo on the embedded default, then the CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session

from lintas.cli import main
from lintas.consumers.app import Databases
from lintas.consumers.projections import load_worklist
from lintas.demo import PATHWAYS, DemoRefused, agencies, check_record, run_demo
from lintas.infra.bootstrap import connect
from lintas.infra.nats.bus import open_bus
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import deployment_consumers
from lintas.infra.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def _expected_asks() -> Counter[str]:
    """Hand-offs each agency is asked for, when every pathway runs twice."""
    asks: Counter[str] = Counter()
    for pathway in PATHWAYS:
        for handoff in pathway.handoffs:
            asks[handoff.asked] += 2
    return asks


async def test_demo_records_every_handoff_in_order_with_the_right_owner(
    settings: Settings,
) -> None:
    cases = 2 * len(PATHWAYS)
    progress: list[tuple[int, int, int]] = []
    result = await run_demo(settings, cases, progress=lambda *p: progress.append(p), timeout_s=120)

    assert len(result.records) == cases
    assert Counter(r.situation for r in result.records) == Counter(
        {p.situation: 2 for p in PATHWAYS}
    )
    for record in result.records:
        assert check_record(record) == []
    assert progress[-1][:2] == (cases, cases)
    assert result.events == sum(len(r.timeline) for r in result.records)
    # The consent gate in action: every pathway shares under a consent or an override,
    # every personal field travels sealed, and a referral no consent covers is refused.
    assert result.gate_refusal is not None
    assert "needs consent for scope 'services'" in result.gate_refusal
    for record in result.records:
        assert record.consents, record.case_id
        assert {p.state for p in record.personal} == {"sealed"}
        assert all(e.refused is None for e in record.timeline)

    sabah = next(r for r in result.records if r.situation == "undocumented_abroad")
    assert sabah.whereabouts == "home: desa-3525012001 (community parenting)"
    assert [d.kind for d in sabah.documents] == [
        "citizenship_confirmation",
        "splp",
        "nik",
        "akta_kelahiran",
        "kk",
    ]

    # The watchdog followed every referral, document request and rehabilitation hand-off;
    # the staff answered each long before its deadline, so it sent nothing.
    tracked = [
        (h.requester, h.asked, h.handoff)
        for p in PATHWAYS
        for h in p.handoffs
        if h.handoff in ("referral", "document", "rehabilitation")
    ]
    assert Counter((d.requester, d.asked, d.handoff) for d in result.deadlines) == Counter(
        tracked * 2
    )
    assert {d.status for d in result.deadlines} == {"answered"}
    assert [d for d in result.deadlines if d.overdue_seq or d.escalated_seq] == []

    databases = Databases(settings)
    try:
        for agency in agencies():
            engine, _ = databases.for_consumer(f"worklist-{agency}")
            with Session(engine) as session:
                items = load_worklist(session, agency)
            assert len(items) == _expected_asks()[agency], agency
            assert {i.status for i in items} <= {"completed"}, agency
            assert all(i.requested_at is not None for i in items), agency
    finally:
        databases.dispose()


def test_cli_demo_then_case_show(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["demo", "--cases", "3"]) == 0
    out = capsys.readouterr().out
    assert "all 3 coordination records match their pathways" in out
    assert "0 overdue, 0 escalated to KPAI" in out
    assert "Median time per hand-off" in out
    case_id = out.rsplit("lintas case show ", 1)[1].split()[0]

    # A second run over the same store and consumers declares nothing new, and works.
    assert main(["demo", "--cases", "3"]) == 0
    capsys.readouterr()

    assert main(["case", "show", case_id]) == 0
    shown = capsys.readouterr().out
    assert case_id in shown
    assert "case.closed" in shown
    assert "document.issued" in shown
    assert not (Path(settings.data_dir) / "nats.url").exists(), "embedded server left behind"


def test_cli_case_show_errors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    assert main(["case", "show", "not-a-case"]) == 2
    assert "not a lintas case id" in capsys.readouterr().err
    assert main(["case", "show", "C" + "0" * 26]) == 3  # no such case, as everywhere
    assert "no case C00000000000000000000000000: stream LINTAS holds no event of it" in " ".join(
        capsys.readouterr().err.split()
    )
    assert main(["run", "nobody"]) == 2
    assert "not an agency id" in capsys.readouterr().err
    # The watchdog signs what it sends: without its key it does not start.
    assert main(["run", "watchdog"]) == 1
    assert "lintas keys init watchdog" in capsys.readouterr().err


async def test_the_demo_leaves_no_staff_consumer_behind(settings: Settings) -> None:
    await run_demo(settings, 1, timeout_s=120)
    async with open_bus(settings) as url:  # as `lintas status` reads it afterwards
        nc = await connect(url, "lintas-test", settings=settings, identity="operator")
        try:
            left = {c.name for c in await nc.jetstream().consumers_info(settings.stream)}
        finally:
            await nc.close()
    assert {spec.name for spec in deployment_consumers(agencies())} <= left
    assert {name for name in left if name.startswith("staff-")} == set()


async def test_demo_refuses_a_configured_bus_and_publishes_nothing(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    configured = settings.model_copy(update={"nats_url": nats_server.url})
    with pytest.raises(DemoRefused, match="LINTAS_NATS_URL"):
        await run_demo(configured, 1)
    streams = await js.streams_info()
    assert streams == [], "the demo declared or published something on a real bus"


async def test_demo_refuses_a_data_dir_another_process_serves(settings: Settings) -> None:
    async with open_bus(settings) as url:  # as `lintas up` would hold it
        with pytest.raises(DemoRefused, match=url):
            await run_demo(settings, 1)


async def test_the_demo_runs_every_agency_as_itself_on_an_authorizing_bus(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo exercises the deployment's permissions: each agency publishes and consumes
    on its own connection, with its own generated nkey, which the server's config lists."""
    from lintas.consumers import app
    from lintas.contracts import WATCHDOG
    from lintas.infra import bootstrap
    from lintas.infra.nats.credentials import public_key, seed_path
    from lintas.infra.nats.identities import accounts_path

    used: list[str | None] = []
    real_connect, real_broker = bootstrap.connect, app.create_broker

    async def connect(url: str, name: str, **kwargs: Any) -> Any:
        used.append(kwargs.get("identity"))
        return await real_connect(url, name, **kwargs)

    def create_broker(
        url: str, settings: Settings | None = None, identity: Any = None, **kwargs: Any
    ) -> Any:
        used.append(identity)
        return real_broker(url, settings, identity, **kwargs)

    monkeypatch.setattr(bootstrap, "connect", connect)
    monkeypatch.setattr(app, "create_broker", create_broker)
    result = await run_demo(settings, 1, timeout_s=120)
    assert len(result.records) == 1
    # The platform twice (declarations, record), every agency twice (publisher, consumers),
    # the watchdog's ticker once.
    assert Counter(used) == Counter({"platform": 2, WATCHDOG: 1, **{a: 2 for a in agencies()}})
    config = accounts_path(settings).read_text()
    for identity in ("platform", *agencies()):
        assert public_key(seed_path(settings, identity)) in config
