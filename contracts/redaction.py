"""What of an event a person may be shown: the one place that decides it, for every screen
and page that displays event content (``lintas case show``, ``lintas dlq show``, the
HTML audit report).

Two rules, applied together:

* **masked unless known**: a value is shown only where the event's contract (its JSON
  Schema) declares the field and does not mark it ``x-lintas-personal``. A personal field
  shows :data:`PERSONAL`; a field the contract does not know (a message that broke its
  contract with a ``child_name``, say) shows :data:`UNKNOWN`, and its name only when the
  name is a plain identifier. An unknown event type shows no data at all. A free text
  an older version carried in clear (:mod:`lintas.contracts.freetext`: the current
  versions carry codes there) shows :data:`FREE_TEXT`: it may hold anything.
* **printable**: every string shown has its control characters (NUL, ESC, newlines),
  Unicode format characters (U+202E RIGHT-TO-LEFT OVERRIDE and the other bidirectional
  controls, zero-width characters), line and paragraph separators, surrogates and
  unassigned code points written as JSON escapes (``\\u0000``, ``\\u202e``), so that a
  value can neither drive the terminal, forge a line, nor reorder the text around it.
  :func:`printable_json` writes a redacted document so.

:func:`redacted_data` and :func:`redacted_event` mask; whatever shows their result makes
it printable (a table cell, an HTML page, a JSON document each escape differently).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from lintas.contracts._base import PERSONAL_KEY
from lintas.contracts.envelope import Envelope
from lintas.contracts.errors import ContractError
from lintas.contracts.freetext import carried
from lintas.contracts.registry import latest, lookup

__all__ = [
    "FREE_TEXT",
    "PERSONAL",
    "UNKNOWN",
    "UNKNOWN_TYPE",
    "printable",
    "printable_json",
    "redacted_data",
    "redacted_event",
]

PERSONAL: Final = "[personal]"
FREE_TEXT: Final = "[free text of an older version: not shown]"
UNKNOWN: Final = "[not in the contract: not shown]"
UNKNOWN_TYPE: Final = "[not shown: unknown event type]"

# Categories whose characters change how text around them reads, or show as nothing:
# controls, format (bidi overrides, zero-width), separators of lines and paragraphs,
# surrogates, private use, unassigned.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ENVELOPE = frozenset(Envelope.model_fields) - {"data"}


def _escape(char: str) -> str:
    # As JSON writes it, so that printable(json text) is the same JSON, safe to show.
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable(text: str) -> str:
    """``text`` with every character that could hide, reorder or forge what is shown
    written as a JSON escape (``\\u001b``, ``\\u202e``); a backslash stays a backslash."""
    if text.isprintable() and text.isascii():  # the common case, at C speed
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _HIDDEN else char for char in text
    )


def printable_json(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON text that is safe to show and reads back as the same value:
    non-ASCII letters kept, every character :func:`printable` escapes escaped."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    # JSON strings hold no raw newline: the lines are the layout's.
    return "\n".join(printable(line) for line in text.split("\n"))


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 32:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        # A marker beside the reference (a personal field of a nested model) still counts.
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


_JSON_TYPES: Final[Mapping[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _fits(schema: Mapping[str, Any], value: Any) -> bool:
    wanted = schema.get("type")
    kind = _JSON_TYPES.get(type(value))
    if wanted is None:
        return "properties" in schema if kind == "object" else "const" in schema
    types = wanted if isinstance(wanted, list) else [wanted]
    return kind in types or (kind == "integer" and "number" in types)


def _shown(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, defs)
    if schema.get(PERSONAL_KEY):
        return PERSONAL
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        chosen = next((o for o in (_resolve(o, defs) for o in options) if _fits(o, value)), None)
        return _shown(value, chosen, defs) if chosen is not None else _unknown(value)
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return _unknown(value)
        return _fields(value, props, defs)
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict) or not _fits(schema, value):
            return _unknown(value)
        return [_shown(item, items, defs) for item in value]
    return value


def _unknown(value: Any) -> Any:
    """A value whose shape the contract does not declare: nothing of it, but None."""
    return None if value is None else UNKNOWN


def _fields(
    value: Mapping[Any, Any], props: Mapping[str, Any], defs: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unnamed = 0
    for key, item in value.items():
        if isinstance(key, str) and key in props:
            out[key] = _shown(item, props[key], defs)
        elif isinstance(key, str) and _NAME.fullmatch(key):
            out[key] = UNKNOWN
        else:  # a name that is no identifier may itself be the data
            unnamed += 1
            out[f"[unknown field {unnamed}]"] = UNKNOWN
    return out


def redacted_data(event_type: str, version: int | None, data: Any) -> Any:
    """``data`` of an event of ``event_type`` (``version``, or the newest when it is
    unknown), as it may be shown: see the module's rules."""
    try:
        model = lookup(event_type, version) if isinstance(version, int) else latest(event_type)
    except ContractError:
        try:
            model = latest(event_type)
        except ContractError:
            return UNKNOWN_TYPE
    schema = model.model_json_schema()
    shown = _shown(data, schema, schema.get("$defs", {}))
    if isinstance(data, Mapping) and isinstance(shown, dict):
        for path in carried(model, data):
            _mask(shown, path.split("."))
    return shown


def _mask(shown: Any, parts: list[str]) -> None:
    name, brackets, _ = parts[0].partition("[]")
    if not isinstance(shown, dict) or name not in shown:
        return
    if len(parts) == 1 and not brackets:
        if isinstance(shown[name], str) and shown[name] not in (PERSONAL, UNKNOWN):
            shown[name] = FREE_TEXT
        return
    items = shown[name] if brackets and isinstance(shown[name], list) else [shown[name]]
    if brackets and len(parts) == 1:
        shown[name] = [FREE_TEXT if isinstance(i, str) else i for i in items]
        return
    for item in items:
        _mask(item, parts[1:])


def redacted_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    """An envelope document (as it was on the wire, valid or not) as it may be shown: its
    CloudEvents attributes printable, attributes the envelope does not know masked, its
    data by :func:`redacted_data`."""
    out: dict[str, Any] = {}
    unnamed = 0
    for key, value in doc.items():
        if key == "data":
            kind, version = doc.get("type"), doc.get("dataversion")
            out[key] = (
                redacted_data(kind, version if isinstance(version, int) else None, value)
                if isinstance(kind, str)
                else UNKNOWN_TYPE
            )
        elif key in _ENVELOPE and (value is None or isinstance(value, str | int | bool)):
            out[key] = value
        elif isinstance(key, str) and _NAME.fullmatch(key):
            out[key] = UNKNOWN
        else:
            unnamed += 1
            out[f"[unknown field {unnamed}]"] = UNKNOWN
    return out
