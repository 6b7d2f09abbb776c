"""Alembic's environment for the outbox's migrations: run on the connection that
:func:`lintas.producers._schema.ensure_outbox_table` opened, inside its transaction."""

from __future__ import annotations

from alembic import context

from lintas.producers._schema import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
