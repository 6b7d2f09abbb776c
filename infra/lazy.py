"""Package names imported on first use (PEP 562 module ``__getattr__``).

A package ``__init__`` that imports every module it re-exports makes whoever needs one
small module of it pay for them all. A replay worker process needs the record's fold
(``lintas.consumers.record``); with an eager ``lintas.consumers`` it imported FastStream and
every agency consumer too, a third of its start-up, twice per replay (one per worker).

A lazy package keeps its public surface as it was (``__all__``, ``from pkg import Name``,
``pkg.Name``, ``dir(pkg)``); a name's module is imported the first time the name is asked
for, and the name is then bound in the package, so later lookups are plain attribute
reads. Type checkers read the package's imports under ``TYPE_CHECKING`` instead, and
must not see the module ``__getattr__`` (with it, any name would pass)::

    if TYPE_CHECKING:
        from lintas.infra.app import Databases
    _HOMES = {"Databases": "app"}
    if not TYPE_CHECKING:
        __getattr__, __dir__ = lazy_exports(__name__, _HOMES)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``homes`` maps each name the package exports to the module that defines it, relative
    to the package (``"app"`` for ``package.app``); a submodule exported as itself maps to
    ``""``. A name not in ``homes`` is an :class:`AttributeError`, so ``from package
    import submodule`` still imports a submodule not listed.
    """
    namespace = vars(sys.modules[package])

    def getattr_(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{home or name}")
        value = getattr(module, name) if home else module
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *homes})

    return getattr_, dir_
