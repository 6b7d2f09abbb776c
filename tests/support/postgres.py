"""A throwaway PostgreSQL database per test, from ``LINTAS_TEST_POSTGRES_URL``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine.url import make_url

__all__ = ["POSTGRES_ENV", "postgres_database"]

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
