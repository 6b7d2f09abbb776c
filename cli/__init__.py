"""lintas.cli: the ``lintas`` command, the composition root of every lintas process.

Settings are read here, once; clients and servers are created here, never at import.
"""

from __future__ import annotations

# Aliased so that the package exports nothing but `main`.
from collections.abc import Sequence as _Sequence

__all__ = ["main"]


def main(argv: _Sequence[str] | None = None) -> int:
    """Run the ``lintas`` command with ``argv`` (default: the process's arguments)."""
    # Imported here, not with the package: a process that `multiprocessing` spawns from
    # the `lintas` script (a replay's workers) runs the script again, and needs none of it.
    from lintas.cli._main import main as run

    return run(argv)
