"""A rebuild holds a projection's tables alone; consumers and ``dlq retry`` share them.

On real SQLite (a lock file, held by another real process) and PostgreSQL (session advisory
locks, on connections of their own): a consumer's process holding the tables keeps a
rebuild out, a rebuild keeps a consumer from starting and a retry from writing, two
consumers share, and what a holder lets go (or a holder process that dies) frees them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.quarantine import QuarantineEntry
from lintas.consumers.retry import retry_entry
from lintas.infra.db import TablesBusy, hold_tables
from lintas.infra.settings import Settings
from tests.support.postgres import POSTGRES_ENV, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path, agencies=["dukcapil"])
        return
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        yield Settings(data_dir=tmp_path, agencies=["dukcapil"], database_url=url)


def _engine(databases: Databases) -> Engine:
    return databases.for_consumer("worklist-dukcapil")[0]


def test_consumers_share_the_tables_and_keep_a_rebuild_out(settings: Settings) -> None:
    first, second, rebuild = Databases(settings), Databases(settings), Databases(settings)
    try:
        first.hold("worklist-dukcapil", "worklist")
        second.hold("worklist-dukcapil", "worklist")  # another instance of the consumer
        with pytest.raises(TablesBusy, match="in use"):
            hold_tables(_engine(rebuild), "worklist", exclusive=True)
        # Another projection of the same database is not held.
        hold_tables(_engine(rebuild), "watchdog", exclusive=True)()
        first.dispose()
        with pytest.raises(TablesBusy):
            hold_tables(_engine(rebuild), "worklist", exclusive=True)
        second.dispose()
        hold_tables(_engine(rebuild), "worklist", exclusive=True)()
    finally:
        for databases in (first, second, rebuild):
            databases.dispose()


def test_a_rebuild_keeps_consumers_and_retries_out(settings: Settings) -> None:
    rebuild, consumer = Databases(settings), Databases(settings)
    release = hold_tables(_engine(rebuild), "worklist", exclusive=True)
    try:
        broker = create_broker("nats://127.0.0.1:1", settings, "dukcapil")
        with pytest.raises(TablesBusy, match="being rebuilt"):
            attach_agency(broker, consumer, settings, "dukcapil")
        with pytest.raises(TablesBusy):
            hold_tables(_engine(consumer), "worklist", exclusive=True)  # nor a second rebuild
        entry = QuarantineEntry(
            consumer="agency-dukcapil",
            stream=settings.stream,
            stream_seq=3,
            subject="lintas.document.dukcapil.C0",
            attempts=1,
            reason="test",
            body=b"{}",
        )
        outcome = retry_entry(entry, consumer, verifier=None)
        assert not outcome.applied
        assert "being rebuilt" in outcome.detail
    finally:
        release()
        rebuild.dispose()
        consumer.dispose()
    consumer.hold("worklist-dukcapil", "worklist")  # free again
    consumer.dispose()


_HOLDER = """
import sys
from lintas.consumers.app import Databases
from lintas.infra.settings import Settings
shared = {"database_url": sys.argv[2]} if len(sys.argv) > 2 else {}
databases = Databases(Settings(data_dir=sys.argv[1], agencies=["dukcapil"], **shared))
databases.hold("worklist-dukcapil", "worklist")
print("held", flush=True)
sys.stdin.readline()
"""


def test_a_consumer_process_that_dies_frees_the_tables(settings: Settings) -> None:
    args = [sys.executable, "-c", _HOLDER, str(settings.data_dir)]
    if settings.database_url:
        args.append(settings.database_url)
    holder = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rebuild = Databases(settings)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TablesBusy):
            hold_tables(_engine(rebuild), "worklist", exclusive=True)
        holder.kill()  # no release: the OS (SQLite's lock file) or the server lets go
        holder.wait(timeout=30)
        hold_tables(_engine(rebuild), "worklist", exclusive=True)()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        rebuild.dispose()
