"""The outbox's table, made and migrated with Alembic.

``lintas_outbox`` lives in an agency's own database, beside its own tables, and outlives
lintas upgrades with rows still to publish: unlike a projection (rebuilt from the log,
:mod:`lintas.consumers.rebuild`) it cannot be dropped, so its schema changes are
migrations. They ship inside the package (``producers/migrations``, so they run from a
wheel) and keep their own version table, ``lintas_outbox_version``, apart from any
``alembic_version`` of the agency's own migrations.

Revision ``0001`` is the table as the code before migrations made it: a database holding
that table and no version table is stamped ``0001`` first, then upgraded like any other.
Revision ``0002`` adds ``lintas_outbox_dead``, where the relay sets aside the rows admission
refused for good (:class:`~lintas.producers.outbox.OutboxDeadLetter`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

__all__ = ["FIRST_REVISION", "MIGRATIONS", "VERSION_TABLE", "ensure_outbox_table", "revision"]

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "lintas_outbox_version"
FIRST_REVISION = "0001"
_TABLE = "lintas_outbox"


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn  # migrations/env.py runs on it
    return config


def ensure_outbox_table(engine: Engine) -> None:
    """Make ``lintas_outbox`` and ``lintas_outbox_dead``, or bring them to the newest
    revision, in one transaction."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two relays starting at once: the second waits, then finds nothing to do.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lintas_outbox'))"))
        tables = set(inspect(conn).get_table_names())
        config = _config(conn)
        if _TABLE in tables and VERSION_TABLE not in tables:
            command.stamp(config, FIRST_REVISION)  # made before migrations were
        command.upgrade(config, "head")


def revision(engine: Engine) -> str | None:
    """The outbox's revision in ``engine``'s database (None: not made, or made before
    migrations were)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
