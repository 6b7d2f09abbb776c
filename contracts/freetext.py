"""Where a version's data can carry free text in clear, read from its JSON Schema.

A text field is *constrained* when its schema gives a ``pattern``, an ``enum`` or
``const`` (a Literal), or a ``format`` (a date): it cannot hold a child's name or birth
date. A sealed field is encrypted. Every other text field is *free text in clear*, unless
:data:`ALLOWED` names it with the reason it is safe. The current version of every event
type has none (``tests/unit/contracts/test_free_text.py``); admission refuses a new write
of an older version that carries a value in one (:func:`lintas.contracts.admission
.clear_refusal`): an agency cannot skip the codes by sending the version before them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from lintas.contracts._base import SEALED_KEY, EventData

__all__ = ["ALLOWED", "carried", "free_text_paths", "unconstrained_paths"]

_AGENCY = (
    "an agency id: the model checks it against the agency-id grammar "
    "(lintas.contracts.agencies.is_agency_id), which its JSON Schema cannot show"
)
ALLOWED: Final[Mapping[tuple[str, str], str]] = {
    ("case.opened", "home_village"): _AGENCY,
    ("case.assigned", "owner"): _AGENCY,
    ("consent.recorded", "agencies[]"): _AGENCY,
    ("consent.overridden", "agencies[]"): _AGENCY,
    ("consent.withdrawn", "notified[]"): _AGENCY,
    ("document.overdue", "requester"): _AGENCY,
    ("referral.overdue", "requester"): _AGENCY,
    ("rehabilitation.handoff_overdue", "requester"): _AGENCY,
    ("rehabilitation.reintegration_handoff", "village"): _AGENCY,
    ("oversight.escalated", "overdue.requester"): _AGENCY,
    ("oversight.escalated", "overdue.asked"): _AGENCY,
}
"""(event type, field path) of unconstrained text fields that are safe in clear, and why.
A path names nested fields with dots and the items of a list with ``[]``."""

_CONSTRAINTS = ("pattern", "enum", "const", "format")
_CACHE: dict[type[EventData], tuple[str, ...]] = {}


def _walk(node: Mapping[str, Any], path: str, defs: Mapping[str, Any]) -> Iterator[str]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        node = defs[ref.rpartition("/")[2]]
    if SEALED_KEY in node:
        return  # encrypted on the wire: no text in clear, whatever its plaintext
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, ()):
            yield from _walk(branch, path, defs)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        for name, child in sorted(node.get("properties", {}).items()):
            yield from _walk(child, f"{path}.{name}" if path else name, defs)
    elif kind == "array":
        yield from _walk(node.get("items", {}), f"{path}[]", defs)
    elif kind == "string" and not any(key in node for key in _CONSTRAINTS):
        yield path


def unconstrained_paths(model: type[EventData]) -> tuple[str, ...]:
    """The paths of ``model``'s text fields in clear that no schema constraint bounds,
    the allowed ones included."""
    schema = model.model_json_schema()
    return tuple(dict.fromkeys(_walk(schema, "", schema.get("$defs", {}))))


def free_text_paths(model: type[EventData]) -> tuple[str, ...]:
    """The paths of ``model``'s text fields that are free text in clear (not allowed)."""
    found = _CACHE.get(model)
    if found is None:
        found = tuple(p for p in unconstrained_paths(model) if (model.TYPE, p) not in ALLOWED)
        _CACHE[model] = found
    return found


def _values(data: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield data
        return
    head, rest = parts[0], parts[1:]
    name, brackets, _ = head.partition("[]")
    if not isinstance(data, Mapping) or data.get(name) is None:
        return
    value = data[name]
    if brackets:
        for item in value if isinstance(value, list) else ():
            yield from _values(item, rest)
    else:
        yield from _values(value, rest)


def carried(model: type[EventData], data: Mapping[str, Any]) -> list[str]:
    """The free-text paths of ``model`` that ``data`` (as sent, at that version) fills."""
    return [
        path
        for path in free_text_paths(model)
        if any(value is not None for value in _values(data, path.split(".")))
    ]
