"""``lintas contracts check`` / ``docs`` on a temporary copy of the committed documents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lintas.cli import main
from lintas.cli._contracts import DEFAULT_ASYNCAPI
from lintas.contracts.schemadocs import SCHEMA_DIR


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    schemas = tmp_path / "contracts" / "schemas"
    shutil.copytree(SCHEMA_DIR, schemas)
    asyncapi = tmp_path / "docs" / "asyncapi.json"
    asyncapi.parent.mkdir()
    shutil.copy(DEFAULT_ASYNCAPI, asyncapi)
    shutil.copy(DEFAULT_ASYNCAPI.parent / "AUTHORITY.md", asyncapi.parent / "AUTHORITY.md")
    return schemas, asyncapi


def _run(action: str, paths: tuple[Path, Path]) -> int:
    schemas, asyncapi = paths
    return main(["contracts", action, "--schemas", str(schemas), "--asyncapi", str(asyncapi)])


def test_the_committed_documents_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "check"]) == 0
    assert "AsyncAPI current" in capsys.readouterr().out


def test_check_fails_on_a_stale_asyncapi_and_docs_repairs_it(
    copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    schemas, asyncapi = copy
    asyncapi.write_text(asyncapi.read_text().replace('"3.0.0"', '"2.6.0"'))
    (schemas / "case.opened" / "v2.json").unlink()
    assert _run("check", copy) == 1
    out = capsys.readouterr().err
    assert "(a) case.opened/v2.json is missing" in out
    assert "asyncapi.json differs from the contracts" in out
    assert _run("docs", copy) == 0
    assert "wrote case.opened/v2.json" in capsys.readouterr().out
    assert _run("check", copy) == 0


def test_docs_refuses_to_rewrite_a_published_version(
    copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    schemas, _ = copy
    lock = schemas / "published.json"
    lock.write_text(
        lock.read_text().replace('"case.closed/v1": "sha256:', '"case.closed/v1": "sha256:0')
    )
    before = (schemas / "case.closed" / "v1.json").read_text()
    assert _run("docs", copy) == 1
    assert "published versions would change: case.closed/v1" in capsys.readouterr().err
    assert (schemas / "case.closed" / "v1.json").read_text() == before
    assert _run("check", copy) == 1
    assert "(b) case.closed/v1 changed after publication" in capsys.readouterr().err


def test_check_fails_on_a_stale_authority_table_and_docs_repairs_it(
    copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, asyncapi = copy
    table = asyncapi.parent / "AUTHORITY.md"
    table.write_text(table.read_text().replace("| `case.erased` | the owner |", "| x | y |"))
    assert _run("check", copy) == 1
    assert "AUTHORITY.md differs from the authority policy" in capsys.readouterr().err
    assert _run("docs", copy) == 0
    assert "AUTHORITY.md" in capsys.readouterr().out
    assert _run("check", copy) == 0
