"""The canonical JSON of :mod:`lintas.contracts.canonical` (RFC 8785), written by orjson
where orjson writes the same bytes: for the processes that check or make a signature, or
digest a record, for every event or case.

``contracts`` stays a leaf (stdlib and pydantic only), so its own fast path is the
standard library's C encoder: about 10 µs for an envelope of 0.8 KB here, and 290 µs
for a case's record. orjson writes the same document in a seventh of that. Both are
taken only for a document :func:`~lintas.contracts.canonical.parsed_plain` says holds
no fraction, whose member names are ASCII: there RFC 8785, ``json.dumps(sort_keys=True,
ensure_ascii=False, separators=(",", ":"))`` and ``orjson.dumps(option=OPT_SORT_KEYS)``
agree (names sort the same by code point, UTF-8 byte and UTF-16 unit; strings escape
``"``, ``\\`` and U+0000..U+001F alike, with the same short forms; integers are
decimal). What orjson refuses (an integer beyond 64 bits, a lone surrogate, nesting past
its limit), and any other value, goes to :func:`lintas.contracts.canonical_json`. The
tests compare the two on generated documents. The record digest
(:mod:`lintas.audit.replay`) parses stored records with orjson and writes them so on
the same grounds, for records it has checked hold only what that agreement covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from lintas.contracts import canonical as _contract

__all__ = ["canonical_json", "signing_input"]


def canonical_json(value: Any) -> bytes:
    """:func:`lintas.contracts.canonical_json` of ``value``, the same bytes."""
    if _contract.parsed_plain(value):
        try:
            out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # beyond what orjson writes
            pass
        else:
            if out.isascii() or _contract.ascii_names(value):
                return out
    return _contract.canonical_json(value)


def signing_input(envelope: Mapping[str, Any]) -> bytes:
    """:func:`lintas.contracts.signing_input` of ``envelope``, the same bytes."""
    return canonical_json(_contract.signing_members(envelope))
