"""What a stored head's headers say about the case's message before it: read from the
header block as the server stored (and checked) it, never from nats-py's dict, which keeps
the last of a repeated key where nats-server checks the first."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from lintas.contracts import case_filter, new_case_id
from lintas.infra.reads import _head_of

CASE = new_case_id()
SEQ = "Nats-Expected-Last-Subject-Sequence"
SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
FILTER = case_filter(CASE)


def _raw(*lines: str, first: str = "NATS/1.0") -> SimpleNamespace:
    block = "\r\n".join([first, *lines]) + "\r\n\r\n"
    hdrs = base64.b64encode(block.encode()).decode()
    return SimpleNamespace(seq=42, data=b'{"id": "x"}', subject="s", hdrs=hdrs, headers={})


def test_a_publish_held_to_the_case_names_the_case_sequence_before_it() -> None:
    raw = _raw("Nats-Msg-Id: x", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}")
    assert _head_of(raw, CASE, visible=True).prior == 17
    assert _head_of(raw, CASE, visible=False).prior == 17
    assert _head_of(_raw(f"{SEQ}: 0", f"{SUBJECT}: {FILTER}"), CASE, visible=True).prior == 0
    assert _head_of(_raw(f"{SEQ}:17", f"{SUBJECT}:{FILTER}"), CASE, visible=True).prior == 17


@pytest.mark.parametrize(
    "lines",
    [
        (),
        ("Nats-Msg-Id: x",),
        # Held to its own subject only (no filter): other subjects of the case unchecked.
        (f"{SEQ}: 17",),
        # Held to a narrower filter, or to another case's.
        (f"{SEQ}: 17", f"{SUBJECT}: lintas.kemlu.all.*.*.{CASE}"),
        (f"{SEQ}: 17", f"{SUBJECT}: {case_filter(new_case_id())}"),
        # Repeated: the server checked the first, nats-py's dict keeps the last.
        (f"{SEQ}: 20", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: 17", f"{SUBJECT}: lintas.kemlu.all.*.*.{CASE}", f"{SUBJECT}: {FILTER}"),
        # A case the server does not read (it did not check it), beside the real one.
        (f"{SEQ.lower()}: 17", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: 17", f"{SUBJECT}: {FILTER}", f"{SEQ.upper()}: 20"),
        # Values the server may read otherwise than int() does.
        (f"{SEQ}: -1", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: 17x", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: 017", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}:\t17", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: 17 ", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: {'9' * 20}", f"{SUBJECT}: {FILTER}"),
        (f"{SEQ}: \u0661\u0667", f"{SUBJECT}: {FILTER}"),  # digits, not ASCII ones
        (f"{SEQ}: 17", f"{SUBJECT}:  {FILTER}"),
        # A key inside another key or a value, or after a bare line feed.
        (f"X-{SEQ}: 20", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}"),
        (f"X: {SEQ}: 20", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}"),
        (f"X: a\n{SEQ}: 20", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}"),
        (f"X: a\r{SEQ}: 20", f"{SEQ}: 17", f"{SUBJECT}: {FILTER}"),
        # Folded or malformed lines.
        (f"{SEQ}: 17", f"{SUBJECT}: {FILTER}", " continued"),
        (f"{SEQ}: 17", f"{SUBJECT}: {FILTER}", "no colon"),
        (f"{SEQ} : 17", f"{SUBJECT}: {FILTER}"),
    ],
)
def test_anything_else_says_nothing(lines: tuple[str, ...]) -> None:
    assert _head_of(_raw(*lines), CASE, visible=True).prior is None


def test_no_header_block_or_a_status_line_says_nothing() -> None:
    bare = SimpleNamespace(seq=42, data=b"{}", subject="s", hdrs=None, headers=None)
    assert _head_of(bare, CASE, visible=True).prior is None
    status = _raw(f"{SEQ}: 17", f"{SUBJECT}: {FILTER}", first="NATS/1.0 404")
    assert _head_of(status, CASE, visible=True).prior is None
    broken = SimpleNamespace(seq=42, data=b"{}", subject="s", hdrs="not base64!", headers={})
    assert _head_of(broken, CASE, visible=True).prior is None
