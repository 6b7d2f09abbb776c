"""Each projection's schema version is pinned with its tables: a table changed without a bump
of ``schema_version`` fails here, so a deployment rebuilds what older code built instead of
running new code over old tables (docs/OPERATIONS.md, projections rebuilt from the log).

When this fails: bump the projection's ``schema_version``, then write the new version and
fingerprint below."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Table

from lintas.consumers.projections import Projection, RecordProjection, WorklistProjection
from lintas.consumers.watchdog import WatchdogProjection

PINNED: dict[str, tuple[int, str]] = {
    "record": (2, "1451620cc7cb3998"),
    "worklist": (1, "9f5e0cbf50525a7f"),
    "watchdog": (1, "1e7c8443120e5112"),
}

PROJECTIONS: list[type[Projection]] = [RecordProjection, WorklistProjection, WatchdogProjection]


def fingerprint(projection: type[Projection]) -> str:
    """The tables' names, columns (type, nullable, key) and indexes, hashed."""
    lines = []
    for model in projection.tables:
        table: Table = model.__table__  # type: ignore[attr-defined]
        lines.append(f"table {table.name}")
        for column in table.columns:
            lines.append(
                f"  {column.name} {column.type!r} null={column.nullable} key={column.primary_key}"
            )
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            lines.append(f"  index {index.name} {[c.name for c in index.columns]} {index.unique}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_tables_change_only_with_the_schema_version(projection: type[Projection]) -> None:
    version, pinned = PINNED[projection.name]
    assert (projection.schema_version, fingerprint(projection)) == (version, pinned), (
        f"{projection.__name__}'s tables changed: bump its schema_version and pin it here"
    )


def test_every_projection_is_pinned() -> None:
    assert {p.name for p in PROJECTIONS} == set(PINNED)
