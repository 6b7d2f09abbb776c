"""Identifiers: UUIDv7 event ids and pseudonymous case ids.

Case ids are ``C`` followed by the 26-character Crockford base32 form of a UUIDv7: they
sort by creation time, fit a subject token, and say nothing about the child.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid

__all__ = ["derived_uuid7", "is_case_id", "is_uuid7", "new_case_id", "uuid7"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CASE_ID = re.compile(r"C[0-9A-HJKMNP-TV-Z]{26}")
# A UUID's canonical text (lowercase, hyphenated) with version 7 and the RFC 4122
# variant: what uuid.UUID(value) parses to version 7 and prints back as ``value``.
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _assemble(ms: int, rand_a: int, rand_b: int) -> uuid.UUID:
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76 | (rand_a & 0xFFF) << 64
    value |= 0b10 << 62 | (rand_b & 0x3FFF_FFFF_FFFF_FFFF)
    return uuid.UUID(int=value)


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562), monotonic within this process.

    ``rand_a`` holds a counter seeded randomly each millisecond (RFC 9562 method 1), so
    ids made in the same millisecond still sort in creation order.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms = _last_ms
        counter = _counter
    return _assemble(ms, counter, int.from_bytes(os.urandom(8), "big"))


def derived_uuid7(seed: str, ms: int) -> uuid.UUID:
    """A UUIDv7 fixed by ``seed`` and a timestamp: the same inputs give the same id.

    For idempotent reactions: an event published in response to another, with an id
    derived from the cause, is deduplicated by JetStream if it is published twice.
    """
    digest = hashlib.sha256(seed.encode()).digest()
    return _assemble(ms, int.from_bytes(digest[:2], "big"), int.from_bytes(digest[2:10], "big"))


def is_uuid7(value: str) -> bool:
    # Exact canonical form: the id is the Nats-Msg-Id, and JetStream dedups by exact string.
    # A pattern, not uuid.UUID: checked for every event read, in a seventh of the time.
    return isinstance(value, str) and _UUID7.fullmatch(value) is not None


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_case_id() -> str:
    return "C" + _base32(uuid7().int, 26)


def is_case_id(value: str) -> bool:
    return bool(_CASE_ID.fullmatch(value))
