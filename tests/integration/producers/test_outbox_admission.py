"""The outbox relay on a secured bus, as an agency's system runs it: every row goes through
admission, connected as the agency. A row admission refuses for good is set aside, with
its code and field and none of its data, and the rows behind it flow; a refusal of the
sender's setup (its clock here) holds the outbox, with its code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from lintas.cli import main
from lintas.contracts import new_case_id
from lintas.infra.db import create_db_engine
from lintas.infra.keys.signing import Signer, Verifier, load_registry
from lintas.infra.nats.bus import read_service
from lintas.infra.nats.topology import intake_stream
from lintas.infra.reads import ServiceReads
from lintas.producers import (
    Admission,
    Outbox,
    OutboxRecord,
    OutboxRelay,
    Refused,
    ensure_outbox_table,
)
from lintas.producers.outbox import dead_letters
from tests.support.attack import Platform, platform_running
from tests.support.audit import OPENED

pytestmark = pytest.mark.nats


async def _relay(platform: Platform, engine: Engine) -> OutboxRelay:
    settings = platform.settings
    kemlu = await platform.client("kemlu")
    return OutboxRelay(
        engine,
        kemlu.js(),
        stream=settings.stream,
        signer=Signer.load(settings, "kemlu"),
        reads=ServiceReads(kemlu.conn, "kemlu"),
        verifier=Verifier(load_registry(settings)),
        admission=Admission(kemlu.conn, kemlu.js(), intake_stream(settings)),
    )


def _rows(engine: Engine) -> list[OutboxRecord]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxRecord).order_by(OutboxRecord.position)).all())


async def test_a_row_refused_for_good_is_set_aside_and_the_rows_behind_it_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        platform_running(tmp_path) as platform,
        read_service(platform.settings, platform.hub.url),
    ):
        engine = create_db_engine(f"sqlite:///{tmp_path / 'kemlu.db'}")
        ensure_outbox_table(engine)
        outbox = Outbox("kemlu")
        case_id, now = new_case_id(), datetime.now(UTC)
        with Session(engine) as session:
            outbox.add(session, "case.opened", OPENED, case_id=case_id, target="kp2mi", time=now)
            # kemlu answers a referral nobody asked of it: the authority policy refuses it.
            refused = outbox.add(
                session,
                "referral.accepted",
                {"referral_id": "never-asked"},
                case_id=case_id,
                target="kp2mi",
                time=now,
            )
            # Older than admission ever takes: its time is in the event, so for good too.
            stale = outbox.add(
                session,
                "document.requested",
                {"request_id": "doc-old", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=now - timedelta(days=40),
            )
            behind = outbox.add(
                session,
                "document.requested",
                {"request_id": "doc-1", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=now,
            )
            session.commit()
        relay = await _relay(platform, engine)

        assert await relay.run_once() == 2  # the first row and the one behind the refused
        assert await platform.log_size() == 2
        assert await platform.in_log(behind.id)
        assert not await platform.in_log(refused.id)
        rows = _rows(engine)
        assert len(rows) == 2
        assert all(row.sent_at is not None for row in rows)
        assert refused.id not in {row.id for row in rows}  # its body went with it
        dead = dead_letters(engine)
        assert [(d.id, d.code, d.field, d.attempts) for d in dead] == [
            (refused.id, dead[0].code, dead[0].field, 1),
            (stale.id, "time_skew", "time", 1),
        ]
        assert dead[0].code in {"not_asked", "no_such_request"}
        assert dead[0].subject == refused.envelope.nats_subject
        assert await relay.run_once() == 0  # nothing holds, nothing left
        assert await relay.pending() == 0

        # The operator sees them, without the bus and without any of the events' data.
        capsys.readouterr()
        assert main(["dlq", "outbox", f"sqlite:///{tmp_path / 'kemlu.db'}", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert [(d["id"], d["code"]) for d in shown] == [(d.id, d.code) for d in dead]
        assert "never-asked" not in json.dumps(shown)
        assert main(["dlq", "outbox", f"sqlite:///{tmp_path / 'kemlu.db'}"]) == 0
        assert "Outbox dead letters: 2" in capsys.readouterr().out
        engine.dispose()


async def test_a_refusal_of_the_senders_clock_holds_the_outbox_with_its_code(
    tmp_path: Path,
) -> None:
    async with (
        platform_running(tmp_path) as platform,
        read_service(platform.settings, platform.hub.url),
    ):
        engine = create_db_engine(f"sqlite:///{tmp_path / 'kemlu.db'}")
        ensure_outbox_table(engine)
        outbox = Outbox("kemlu")
        case_id, now = new_case_id(), datetime.now(UTC)
        with Session(engine) as session:
            outbox.add(session, "case.opened", OPENED, case_id=case_id, target="kp2mi", time=now)
            # A clock an hour ahead: admitted once the platform's clock gets there.
            ahead = outbox.add(
                session,
                "document.requested",
                {"request_id": "doc-1", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=now + timedelta(hours=1),
            )
            session.commit()
        relay = await _relay(platform, engine)
        with pytest.raises(Refused) as caught:
            await relay.run_once()
        assert caught.value.code == "time_skew"
        assert await platform.log_size() == 1
        assert not await platform.in_log(ahead.id)
        rows = _rows(engine)
        assert [row.sent_at is not None for row in rows] == [True, False]
        assert rows[1].last_error is not None
        assert "time_skew" in rows[1].last_error
        assert dead_letters(engine) == []
        # The next round tries the same row again, and gets the same answer: nothing moves.
        with pytest.raises(Refused):
            await relay.run_once()
        assert await platform.log_size() == 1
        engine.dispose()
