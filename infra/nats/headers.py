"""Message headers read without the standard library's email parser.

nats-py reads every received message's headers with :class:`email.parser.BytesParser`:
about 18 µs a message here, as much as the rest of the client's work on it, and a third
of the replay reader's CPU (PERFORMANCE.md). JetStream's headers are simple lines,
``Name: value\\r\\n``, ended by an empty line. Such a block, ASCII throughout, is read
here by splitting its lines, in about a sixth of the time; anything else (a folded line,
a line with no name, bytes beyond ASCII, the server's status lines) goes to the email
parser as before. The fast path takes only blocks both read the same way, so a client's
``msg.headers`` are what nats-py would have given.

nats-py keeps its parser as the client's ``_hdr_parser`` (2.x): :func:`read_headers_fast`
replaces it on one client, and leaves a client without one alone.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesParser
from typing import Any

__all__ = ["read_headers_fast"]

# Lines as the email parser reads a header (a name of printable ASCII but ':' and space,
# then ':'), values of printable ASCII and tabs, then the empty line, and nothing after.
_SIMPLE = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[\t\x20-\x7e]*\r\n)*\r\n")


class _HeaderParser:
    """What nats-py asks of its header parser: ``parsebytes(raw).items()``."""

    def __init__(self, fallback: BytesParser) -> None:
        self._fallback = fallback

    def parsebytes(self, raw: bytes) -> dict[str, str] | Message:
        if _SIMPLE.fullmatch(raw) is None:
            return self._fallback.parsebytes(raw)
        # Later lines of one name win, as in nats-py's own dicts of the email parser's
        # items; values as that parser gives them (leading blanks off), which nats-py
        # strips further where it strips them.
        headers: dict[str, str] = {}
        for line in raw.decode("ascii").split("\r\n"):
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name] = value.lstrip(" \t")
        return headers


def read_headers_fast(nc: Any) -> None:
    """Have the nats-py client ``nc`` read simple header blocks without the email parser."""
    current = getattr(nc, "_hdr_parser", None)
    if isinstance(current, BytesParser):
        nc._hdr_parser = _HeaderParser(current)
