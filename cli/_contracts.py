"""``lintas contracts check`` and ``lintas contracts docs``."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

from rich.console import Console

from lintas.cli._errors import fail
from lintas.contracts.asyncapi import asyncapi_document
from lintas.contracts.authority import policy_table
from lintas.contracts.schemadocs import (
    SCHEMA_DIR,
    Problem,
    PublishedVersionChanged,
    check_schemas,
    render,
    write_schemas,
)

__all__ = ["DEFAULT_ASYNCAPI", "contracts_check", "contracts_docs"]

# In a source checkout: <repo>/docs/asyncapi.json beside <repo>/contracts/schemas.
DEFAULT_ASYNCAPI = SCHEMA_DIR.parent.parent / "docs" / "asyncapi.json"


def _asyncapi_text(asyncapi: Path, schemas: Path) -> str:
    base = Path(_relative(schemas, asyncapi.parent))
    return render(asyncapi_document(version("lintas"), schema_base=base.as_posix()))


def _authority_doc(asyncapi: Path) -> Path:
    """The authority policy's table, beside the AsyncAPI document (docs/AUTHORITY.md)."""
    return asyncapi.parent / "AUTHORITY.md"


def _relative(path: Path, start: Path) -> str:
    return str(os.path.relpath(path.resolve(), start.resolve()))


def contracts_check(console: Console, schemas: Path, asyncapi: Path) -> int:
    problems = check_schemas(schemas)
    if not asyncapi.exists():
        problems.append(Problem("a", f"{asyncapi} is missing: run `lintas contracts docs`"))
    elif asyncapi.read_text() != _asyncapi_text(asyncapi, schemas):
        problems.append(
            Problem("a", f"{asyncapi} differs from the contracts: run `lintas contracts docs`")
        )
    authority = _authority_doc(asyncapi)
    if not authority.exists() or authority.read_text() != policy_table():
        problems.append(
            Problem(
                "a", f"{authority} differs from the authority policy: run `lintas contracts docs`"
            )
        )
    for problem in problems:
        fail(f"[red]{problem}[/red]", highlight=False, soft_wrap=True)
    if problems:
        fail(f"contracts check: {len(problems)} problem(s); rules in docs/CONTRACTS.md")
        return 1
    console.print(
        "contracts check: schemas current, published versions unchanged, "
        "every version has its upcaster, AsyncAPI current, authority table current"
    )
    return 0


def contracts_docs(console: Console, schemas: Path, asyncapi: Path) -> int:
    try:
        written = write_schemas(schemas)
    except PublishedVersionChanged as exc:
        fail(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        return 1
    text = _asyncapi_text(asyncapi, schemas)
    if not asyncapi.exists() or asyncapi.read_text() != text:
        asyncapi.parent.mkdir(parents=True, exist_ok=True)
        asyncapi.write_text(text)
        written.append(str(asyncapi))
    authority = _authority_doc(asyncapi)
    if not authority.exists() or authority.read_text() != policy_table():
        authority.write_text(policy_table())
        written.append(str(authority))
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    console.print(f"{len(written)} file(s) changed" if written else "everything was current")
    return 0
