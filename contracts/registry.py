"""Every event type and version, registered once, and the upcasters between versions.

Lookups are by ``(type, version)``. A registered version is never edited (the contracts
check holds each one to its published schema); a change makes a new version, with a pure
upcaster from the one before, so an old event is read as the newest version everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from lintas.contracts._base import EventData
from lintas.contracts.errors import UnknownEventType, UnknownVersion

__all__ = [
    "Upcaster",
    "all_models",
    "latest",
    "lookup",
    "register",
    "register_upcaster",
    "upcast",
    "upcasters",
    "versions",
]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_MODELS: dict[tuple[str, int], type[EventData]] = {}
# Each type's versions in order: asked of every event decoded, so kept, not recomputed.
_VERSIONS: dict[str, list[int]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

M = TypeVar("M", bound=type[EventData])
U = TypeVar("U", bound=Upcaster)


def register(model: M) -> M:
    """Class decorator: add one event version to the registry; a second time is a bug."""
    key = (model.TYPE, model.VERSION)
    if key in _MODELS:
        raise RuntimeError(f"{model.TYPE} v{model.VERSION} is registered twice")
    _MODELS[key] = model
    _VERSIONS[model.TYPE] = sorted([*_VERSIONS.get(model.TYPE, []), model.VERSION])
    return model


def register_upcaster(event_type: str, from_version: int) -> Callable[[U], U]:
    """Decorator: the pure function turning ``data`` of ``from_version`` into the next."""

    def decorate(function: U) -> U:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise RuntimeError(f"{event_type} v{from_version} has two upcasters")
        _UPCASTERS[key] = function
        return function

    return decorate


def lookup(event_type: str, version: int) -> type[EventData]:
    try:
        return _MODELS[(event_type, version)]
    except KeyError:
        known = versions(event_type)  # raises UnknownEventType first
        if version > known[-1]:
            message = (
                f"is newer than this build of lintas knows (up to v{known[-1]}): "
                "upgrade this consumer to read it"
            )
        else:
            message = f"is not a version of this type (known: {', '.join(f'v{v}' for v in known)})"
        raise UnknownVersion(message, event_type=event_type, version=version) from None


def versions(event_type: str) -> list[int]:
    found = _VERSIONS.get(event_type)
    if not found:
        raise UnknownEventType("unknown event type", event_type=event_type)
    return list(found)


def _newest(event_type: str) -> int:
    found = _VERSIONS.get(event_type)
    if not found:
        raise UnknownEventType("unknown event type", event_type=event_type)
    return found[-1]


def latest(event_type: str) -> type[EventData]:
    return _MODELS[(event_type, _newest(event_type))]


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Run the upcasters from ``version`` up to the newest version, in order."""
    newest = _newest(event_type)
    for step in range(version, newest):
        data = _UPCASTERS[(event_type, step)](data)
    return data


def all_models() -> Iterator[type[EventData]]:
    yield from (m for _, m in sorted(_MODELS.items()))


def upcasters() -> dict[tuple[str, int], Upcaster]:
    return dict(_UPCASTERS)
