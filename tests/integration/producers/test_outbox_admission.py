"""The outbox relay on a secured bus, as an agency's system runs it: every row goes through
admission, connected as the agency; a row admission refuses holds the outbox, with its code."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

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
from tests.support.attack import platform_running
from tests.support.audit import OPENED

pytestmark = pytest.mark.nats


async def test_the_relay_sends_through_admission_and_a_refused_row_holds_with_its_code(
    tmp_path: Path,
) -> None:
    async with (
        platform_running(tmp_path) as platform,
        read_service(platform.settings, platform.hub.url),
    ):
        settings = platform.settings
        kemlu = await platform.client("kemlu")
        engine = create_db_engine(f"sqlite:///{tmp_path / 'kemlu.db'}")
        ensure_outbox_table(engine)
        outbox = Outbox("kemlu")
        case_id, now = new_case_id(), datetime.now(UTC)
        with Session(engine) as session:
            outbox.add(session, "case.opened", OPENED, case_id=case_id, target="kp2mi", time=now)
            outbox.add(
                session,
                "document.requested",
                {"request_id": "doc-1", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=now,
            )
            # kemlu answers a referral nobody asked of it: the authority policy refuses it.
            refused = outbox.add(
                session,
                "referral.accepted",
                {"referral_id": "never-asked"},
                case_id=case_id,
                target="kp2mi",
                time=now,
            )
            session.commit()
        relay = OutboxRelay(
            engine,
            kemlu.js(),
            stream=settings.stream,
            signer=Signer.load(settings, "kemlu"),
            reads=ServiceReads(kemlu.conn, "kemlu"),
            verifier=Verifier(load_registry(settings)),
            admission=Admission(kemlu.conn, kemlu.js(), intake_stream(settings)),
        )
        with pytest.raises(Refused) as caught:
            await relay.run_once()
        assert caught.value.code in {"not_asked", "no_such_request"}
        assert await platform.log_size() == 2  # the two rows before it, admitted
        assert not await platform.in_log(refused.id)
        with Session(engine) as session:
            rows = session.exec(select(OutboxRecord).order_by(OutboxRecord.position)).all()
        assert [row.sent_at is not None for row in rows] == [True, True, False]
        assert rows[2].last_error is not None
        assert caught.value.code in rows[2].last_error
        # The next round tries the same row again, and gets the same answer: nothing moves.
        with pytest.raises(Refused):
            await relay.run_once()
        assert await platform.log_size() == 2
        engine.dispose()
