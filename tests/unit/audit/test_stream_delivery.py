"""A whole-log read takes each message's sequences and stored time off its reply subject,
as nats-py's ``Msg.metadata`` does, without it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from lintas.audit.stream import _delivered

_SEQ = st.integers(min_value=1, max_value=2**63 - 1)
# Nanoseconds from 1970 to 2999: what a server stamps.
_NS = st.integers(min_value=0, max_value=32_503_680_000 * 10**9)


@given(stream_seq=_SEQ, consumer_seq=_SEQ, delivered=_SEQ, ns=_NS, pending=_SEQ)
def test_the_reply_subject_reads_as_nats_py_reads_it(
    stream_seq: int, consumer_seq: int, delivered: int, ns: int, pending: int
) -> None:
    reply = f"$JS.ACK.LINTAS.c0nsumer.{delivered}.{stream_seq}.{consumer_seq}.{ns}.{pending}"
    meta = Msg.Metadata._from_reply(reply)
    assert _delivered(reply) == (
        meta.sequence.stream,
        meta.sequence.consumer,
        meta.num_pending,
        meta.timestamp,
    )


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "_INBOX.abc",
        # With a JetStream domain and account hash (12 tokens): left to Msg.metadata.
        "$JS.ACK.hub.ACCHASH.LINTAS.c.1.5.5.1733384123123456789.0.rnd",
        "$JS.ACK.LINTAS.c.1.5.5.not-a-time.0",
        "$JS.NAK.LINTAS.c.1.5.5.1733384123123456789.0",
    ],
)
def test_any_other_reply_is_left_to_nats_py(reply: str | None) -> None:
    assert _delivered(reply) is None
