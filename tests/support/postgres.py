"""A throwaway PostgreSQL database per test, from ``LINTAS_TEST_POSTGRES_URL``."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import Session

__all__ = ["POSTGRES_ENV", "postgres_database", "queued_behind"]

POSTGRES_ENV = "LINTAS_TEST_POSTGRES_URL"


@contextmanager
def postgres_database(prefix: str = "lintas_test") -> Iterator[str | None]:
    """A new, empty PostgreSQL database, dropped afterwards (None without PostgreSQL)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        yield None
        return
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _lock_waiters(session: Session, pid: int) -> int:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> :pid"
    )
    return int(session.execute(query, {"pid": pid}).scalar_one())


def queued_behind(engine: Engine, holder: Session, other: Callable[[], None]) -> None:
    """Run ``other`` (another instance's transaction) while ``holder``'s uncommitted one
    holds its locks; once ``other`` waits on them (seen in pg_stat_activity, not slept
    for), commit ``holder``. ``other`` must then finish without an error."""
    holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            other()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    with Session(engine) as watcher:
        deadline = time.monotonic() + 10
        while thread.is_alive() and not _lock_waiters(watcher, holder_pid):
            assert time.monotonic() < deadline, "the other instance neither finished nor waited"
            watcher.rollback()  # a fresh snapshot of pg_stat_activity each time
            time.sleep(0.01)  # a poll interval, not a synchronisation: the wait is above
    holder.commit()
    holder.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not failed, failed
