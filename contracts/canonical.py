"""Canonical JSON for signing and hashing: the JSON Canonicalization Scheme (RFC 8785),
for the JSON lintas envelopes contain.

Exactly: object members sorted by their names' UTF-16 code units; no insignificant
whitespace; strings as ECMAScript's ``JSON.stringify`` writes them (only ``"``, ``\\``
and U+0000..U+001F escaped, with the short forms ``\\b \\f \\n \\r \\t``, everything else
as UTF-8); ``true``, ``false``, ``null``; integers in decimal. Lintas contracts carry no
floating-point numbers, so a float is refused rather than risk a second serialisation of
it (RFC 8785 section 3.2.2.3 prescribes ECMAScript's shortest round-trip form).

A signature covers the canonical form of the envelope without its ``signature`` member,
so any system that implements RFC 8785 can verify a lintas event, and lintas verifies
what was sent (the parsed bytes), not its own re-encoding of it.

Speed: for a document read by :func:`parse_message` that holds no fraction and whose
member names are all ASCII, RFC 8785 and ``json.dumps(sort_keys=True, ensure_ascii=False,
separators=(",", ":"))`` write the same bytes (ASCII names sort the same by code point and
by UTF-16 unit, and strings are escaped by the same rule), so such a document is written by
the C encoder. Any other value takes the general encoder above.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ascii_names",
    "canonical_json",
    "event_hash",
    "message_hash",
    "parse_message",
    "parsed_plain",
    "plain",
    "signing_input",
    "signing_members",
]

SIGNATURE_MEMBER = "signature"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError("lintas canonical JSON has no fractional numbers")
        out.append(str(int(value)))
    elif isinstance(value, str):
        # json.dumps with ensure_ascii=False escapes exactly what JSON.stringify does.
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, key in enumerate(sorted(value, key=lambda k: str(k).encode("utf-16-be"))):
            if not isinstance(key, str):
                raise TypeError(f"object member names must be strings, not {type(key).__name__}")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


class _Plain(dict[str, Any]):
    """An object :func:`parse_message` read, with no fraction anywhere inside it: its
    canonical form is the C encoder's sorted, compact output when its member names are
    ASCII (checked after encoding, and only when the output is not ASCII throughout)."""

    __slots__ = ()


class _NotPlain(Exception):
    pass


def _not_plain(_: str) -> Any:
    raise _NotPlain


# One decoder, not one per call (json.loads with arguments builds a new one each time).
_PLAIN_DECODER = json.JSONDecoder(parse_float=_not_plain, parse_constant=_not_plain)


def ascii_names(value: Any) -> bool:
    """Whether every object member name anywhere in ``value`` is ASCII."""
    if isinstance(value, dict):
        return all(k.isascii() and ascii_names(v) for k, v in value.items())
    if isinstance(value, list):
        return all(ascii_names(v) for v in value)
    return True


def parsed_plain(value: Any) -> bool:
    """Whether ``value`` is an object :func:`parse_message` read with no fraction anywhere
    inside: its canonical form is a sorted, compact JSON encoder's output when its member
    names are ASCII (:func:`ascii_names`), as :func:`canonical_json` uses. A parsed
    document is read, never changed: a value put into it later would be written by that
    encoder however it pleases, not checked as here."""
    return type(value) is _Plain


_PLAIN_SCALARS = (str, int, bool, type(None))


def _plain_inside(value: Any) -> bool:
    # Exact types only: a subclass (an IntEnum, say) may be written otherwise by the C
    # encoder than by the general one.
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _plain_inside(v) for k, v in value.items())
    if kind is list:
        return all(_plain_inside(v) for v in value)
    return kind in _PLAIN_SCALARS


def plain(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """``value`` as :func:`parse_message` would read its JSON when it holds only what that
    reading gives (dicts, lists, strings, integers, booleans, null: no fraction, no
    subclass), so that its canonical form takes the fast path; else ``value`` itself. For a
    document built in code rather than parsed (a receipt, a checkpoint) that is signed, and
    is not changed afterwards."""
    if type(value) is dict and _plain_inside(value):
        return _Plain(value)
    return value


def canonical_json(value: Any) -> bytes:
    if type(value) is _Plain:
        text = json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        if text.isascii() or ascii_names(value):
            return text.encode()
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode()


def signing_members(envelope: Mapping[str, Any]) -> Mapping[str, Any]:
    """The members a signature covers: all but ``signature`` (still :func:`parsed_plain`
    when the envelope is)."""
    members = {k: v for k, v in envelope.items() if k != SIGNATURE_MEMBER}
    return _Plain(members) if type(envelope) is _Plain else members


def signing_input(envelope: Mapping[str, Any]) -> bytes:
    """What a signature covers: the envelope's canonical form without ``signature``."""
    return canonical_json(signing_members(envelope))


def event_hash(envelope: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical form of a whole stored envelope, signature included: what
    the next message of the same case carries as ``prevhash`` (see :func:`message_hash`)."""
    return "sha256:" + hashlib.sha256(canonical_json(envelope)).hexdigest()


_UNPARSED: Any = object()


def parse_message(raw: bytes) -> Any:
    """The JSON a stored message holds, or None when it holds none."""
    try:
        doc = _PLAIN_DECODER.decode(raw.decode())
        return _Plain(doc) if type(doc) is dict else doc
    except (_NotPlain, UnicodeDecodeError):
        pass  # a fraction, or not UTF-8 (json.loads also reads UTF-16 and UTF-32)
    except (ValueError, RecursionError):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def message_hash(raw: bytes, parsed: Any = _UNPARSED) -> str:
    """``prevhash`` of a stored message: :func:`event_hash` of it when it is a JSON object
    (so an archive may re-serialise it), else SHA-256 of its bytes (a message that is no
    event at all still holds its place in the chain, and ``verify`` reports it).

    ``parsed`` is :func:`parse_message` of ``raw`` when the caller has it already."""
    doc = parse_message(raw) if parsed is _UNPARSED else parsed
    if isinstance(doc, dict):
        try:
            return event_hash(doc)
        except (TypeError, ValueError):
            pass  # JSON, but not what an envelope holds (a fraction): hash the bytes
    return "sha256:" + hashlib.sha256(raw).hexdigest()
