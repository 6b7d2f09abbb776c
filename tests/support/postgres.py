"""A throwaway PostgreSQL database per test, from ``LINTAS_TEST_POSTGRES_URL``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import Session

__all__ = ["POSTGRES_ENV", "lock_waiters", "postgres_database"]

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


def lock_waiters(session: Session, pid: int) -> int:
    """How many other backends of this database wait on a lock (``pid`` excluded): how a
    test sees that a second transaction is queued behind the first, without sleeping."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> :pid"
    )
    return int(session.execute(query, {"pid": pid}).scalar_one())
