"""Every event type and version, registered once; lookups by ``(type, version)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from ._base import EventData
from .errors import UnknownEventType, UnknownVersion

__all__ = ["all_models", "latest", "lookup", "register", "versions"]

_MODELS: dict[tuple[str, int], type[EventData]] = {}

M = TypeVar("M", bound=type[EventData])


def register(model: M) -> M:
    """Class decorator: add one event version to the registry; a second time is a bug."""
    key = (model.TYPE, model.VERSION)
    if key in _MODELS:
        raise RuntimeError(f"{model.TYPE} v{model.VERSION} is registered twice")
    _MODELS[key] = model
    return model


def lookup(event_type: str, version: int) -> type[EventData]:
    try:
        return _MODELS[(event_type, version)]
    except KeyError:
        known = versions(event_type)  # raises UnknownEventType first
        raise UnknownVersion(
            f"unknown version; this build knows {', '.join(f'v{v}' for v in known)}",
            event_type=event_type,
            version=version,
        ) from None


def versions(event_type: str) -> list[int]:
    found = sorted(v for (t, v) in _MODELS if t == event_type)
    if not found:
        raise UnknownEventType("unknown event type", event_type=event_type)
    return found


def latest(event_type: str) -> type[EventData]:
    return _MODELS[(event_type, versions(event_type)[-1])]


def all_models() -> Iterator[type[EventData]]:
    yield from (m for _, m in sorted(_MODELS.items()))
