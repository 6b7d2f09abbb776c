"""Fixtures for tests that need a database: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import SQLModel

from lintas.infra.db import create_db_engine
from tests.support.postgres import POSTGRES_ENV, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the embedded default (one SQLite file per consumer); else a shared URL."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        yield url


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A fresh PostgreSQL database with every table declared so far (skipped without one)."""
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        engine = create_db_engine(url)
        SQLModel.metadata.create_all(engine)
        yield engine
        engine.dispose()
