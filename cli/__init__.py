"""lintas.cli: the ``lintas`` command, the composition root of every lintas process.

Settings are read here, once; clients and servers are created here, never at import.
"""

from ._main import main

__all__ = ["main"]
