"""infra.headers: simple header blocks read without the email parser, into exactly what
nats-py makes of the email parser's reading; anything else goes to the email parser."""

from __future__ import annotations

import random
from email.parser import BytesParser
from typing import Any

import pytest

from lintas.infra.nats.headers import read_headers_fast


class _Client:
    """What read_headers_fast looks at on a nats-py client."""

    def __init__(self) -> None:
        self._hdr_parser: Any = BytesParser()


def _as_nats_py(parser: Any, raw: bytes) -> tuple[object, object]:
    """nats-py's two readings of a parser's answer (Client._process_headers), in order:
    stripped (a message's headers), and as given (those after a status line)."""
    items = list(parser.parsebytes(raw).items())
    try:
        stripped: object = list({k.strip(): v.strip() for k, v in items}.items())
    except AttributeError as exc:  # a value beyond ASCII comes as a Header: nats-py's
        stripped = f"error: {exc}"  # error callback is told
    return stripped, [(k, str(v)) for k, v in dict(items).items()]


class _Refuse(BytesParser):
    def parsebytes(self, text: bytes, headersonly: bool = False) -> Any:
        raise AssertionError(f"fell back for {text!r}")


def _fast(fallback: BytesParser | None = None) -> Any:
    client = _Client()
    if fallback is not None:
        client._hdr_parser = fallback
    read_headers_fast(client)
    assert client._hdr_parser.__class__.__name__ == "_HeaderParser"
    return client._hdr_parser


SIMPLE = [
    b"\r\n",
    b"Nats-Msg-Id: 01a2444f-5227-718e-b6b9-58fdde9ddf32\r\n\r\n",
    b"Nats-Stream: LINTAS\r\nNats-Subject: lintas.a.b.case.opened.C1\r\nNats-Sequence: 7\r\n"
    b"Nats-Time-Stamp: 2026-12-05T03:46:20.937045Z\r\nNats-Last-Sequence: 6\r\n\r\n",
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    b"K:\r\n\r\n",
    b"K:v\r\n\r\n",
    b"K:  padded\t \r\n\r\n",
    b"K:\t tab first\r\n\r\n",
    b"Twice: first\r\nTwice: second\r\n\r\n",
    b"From: someone\r\n\r\n",
    b"Colons: a:b:c\r\n\r\n",
]

OTHER = [
    b"",  # no empty line
    b"K: v\r\n",  # no empty line
    b"K: v",
    b"K: v\n\n",  # bare line feeds
    b"K: v\r\n\r\nbody\r\n",  # something after the headers
    b"K: v\r\n continued\r\n\r\n",  # a folded line
    b"Bad Name: v\r\n\r\n",  # a space in the name ends the email parser's headers
    b": no name\r\n\r\n",
    b"no colon\r\n\r\n",
    b"K: caf\xc3\xa9\r\n\r\n",  # beyond ASCII
    b"K: a\rb\r\n\r\n",
    b"From someone\r\nK: v\r\n\r\n",
    b"Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024",  # a status's
]


@pytest.mark.parametrize("raw", SIMPLE + OTHER)
def test_reads_what_the_email_parser_reads(raw: bytes) -> None:
    assert _as_nats_py(_fast(), raw) == _as_nats_py(BytesParser(), raw)


@pytest.mark.parametrize("raw", SIMPLE)
def test_simple_blocks_never_reach_the_email_parser(raw: bytes) -> None:
    _as_nats_py(_fast(_Refuse()), raw)


@pytest.mark.parametrize("raw", OTHER)
def test_anything_else_goes_to_the_email_parser(raw: bytes) -> None:
    with pytest.raises(AssertionError, match="fell back"):
        _as_nats_py(_fast(_Refuse()), raw)


class _Counting(BytesParser):
    asked = 0

    def parsebytes(self, text: bytes, headersonly: bool = False) -> Any:
        self.asked += 1
        return super().parsebytes(text, headersonly)


def test_random_blocks_read_as_the_email_parser_reads() -> None:
    rng = random.Random(8785)
    alphabet = [b"a", b"Z", b"-", b"0", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xc3\xa9"]
    fallback = _Counting()
    fast, blocks = _fast(fallback), 5000
    for _ in range(blocks):
        lines = []
        for _ in range(rng.randrange(4)):
            name = b"".join(rng.choice(alphabet[:4]) for _ in range(rng.randrange(1, 4)))
            value = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
            if rng.random() < 0.7:
                value = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\xc3\xa9", b"")
            lines.append(name + b":" + value + b"\r\n")
        raw = b"".join(lines) + rng.choice([b"\r\n", b"\r\n", b"", b"\n"])
        assert _as_nats_py(fast, raw) == _as_nats_py(BytesParser(), raw), raw
    # Both ways were taken, often: the comparison covered the fast path and the other.
    assert 1000 < fallback.asked < blocks - 1000


def test_a_client_without_the_email_parser_is_left_alone() -> None:
    client = _Client()
    client._hdr_parser = other = object()
    read_headers_fast(client)
    assert client._hdr_parser is other
    read_headers_fast(object())  # no parser at all: nothing to replace


def test_installing_twice_wraps_once() -> None:
    client = _Client()
    read_headers_fast(client)
    installed = client._hdr_parser
    read_headers_fast(client)
    assert client._hdr_parser is installed
