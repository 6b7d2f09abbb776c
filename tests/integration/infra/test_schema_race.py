"""Two processes starting at once on one empty PostgreSQL database both make the same
tables. ``CREATE TABLE`` checks the catalog first, then writes it: two at once both find
nothing, and the second fails on the catalog's own unique index (``pg_type``) or on
``already exists``. Each round below starts two real processes on a fresh schema, released
together; every one of them must make or find the tables without an error."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine.url import make_url

from tests.support.postgres import POSTGRES_ENV, postgres_database

pytestmark = pytest.mark.postgres

ROUNDS = 6


def _start(url: str, schemas: list[str], barrier: object, errors: object) -> None:
    """One process's starts, one per schema, each released with the other process's: the
    tables a consumer makes, as it makes them."""
    from lintas.consumers.projections import RecordProjection, WorklistProjection
    from lintas.consumers.rebuild import prepare
    from lintas.infra.db import create_db_engine, ensure_tables

    for schema in schemas:
        engine = create_db_engine(url + f"?options=-csearch_path%3D{schema}")
        try:
            barrier.wait(timeout=60)  # type: ignore[attr-defined]
            ensure_tables(engine, *WorklistProjection.tables)
            prepare(engine, RecordProjection(), "LINTAS", ["record"])
            prepare(engine, WorklistProjection("kp2mi"), "LINTAS", ["kp2mi"])
        except Exception as exc:
            first = str(exc).splitlines()[0]
            errors.put(f"{schema}: {type(exc).__name__}: {first}")  # type: ignore[attr-defined]
        finally:
            engine.dispose()


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        yield url


def test_two_processes_making_the_tables_at_once_both_start(database: str) -> None:
    assert "?" not in database
    admin = create_engine(make_url(database), isolation_level="AUTOCOMMIT")
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    try:
        schemas = [f"s_{uuid.uuid4().hex[:10]}" for _ in range(ROUNDS)]
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        barrier = context.Barrier(2)
        processes = [
            context.Process(target=_start, args=(database, schemas, barrier, errors))
            for _ in range(2)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
            assert process.exitcode == 0
        found: list[str] = []
        while not errors.empty():
            found.append(errors.get())
        assert found == []
        with admin.connect() as conn:
            for schema in schemas:
                tables = set(inspect(conn).get_table_names(schema=schema))
                assert {"lintas_tracking", "record_case", "worklist_item"} <= tables
    finally:
        admin.dispose()
