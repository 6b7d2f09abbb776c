"""What a process imports before it does anything: the command line's parser, a replay
worker. Neither pays for FastStream (nor the parser for SQLAlchemy) it does not use."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded(code: str, *modules: str) -> list[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; {code}; print(sorted(m for m in {modules!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return eval(done.stdout.strip().splitlines()[-1])  # the list literal printed last


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["verify", "--help"],
        ["case", "show", "--help"],
        ["nonsense"],
        ["demo", "-x"],
    ],
)
def test_help_and_argument_errors_import_neither_faststream_nor_sqlalchemy(
    argv: list[str],
) -> None:
    code = f"from lintas.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    loaded = _loaded(
        f"exec({code!r})", "faststream", "sqlalchemy", "sqlmodel", "nats", "lintas.consumers.app"
    )
    assert loaded == []


def test_a_replay_worker_imports_neither_faststream_nor_the_commands() -> None:
    # What a worker process imports: the shard module (its functions are pickled by
    # reference) and, when spawned from the `lintas` script, the script's `lintas.cli`.
    loaded = _loaded("import lintas.cli, lintas.audit._shards", "faststream", "lintas.cli._main")
    assert loaded == []


def test_the_pure_folds_import_no_broker_and_no_database() -> None:
    loaded = _loaded("import lintas.consumers", "faststream", "sqlalchemy", "nats")
    assert loaded == []
