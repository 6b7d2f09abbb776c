"""The platform's own reads of the stream go to its leader, which alone is sure to hold
every acknowledged message (a direct get may be answered by a replica that lags)."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from lintas.infra.reads import DirectReads

pytestmark = pytest.mark.nats


async def test_reads_between_two_sequences_are_answered_by_the_leader(
    js: JetStreamContext,
) -> None:
    # Without direct gets nothing but the leader can answer: a read by direct get would
    # find no responder and time out.
    await js.add_stream(StreamConfig(name="LEADER_ONLY", subjects=["lo.>"], allow_direct=False))
    for n in range(5):
        await js.publish(f"lo.{'a' if n % 2 == 0 else 'b'}", f"m{n}".encode())
    reads = DirectReads(js, "LEADER_ONLY")
    found = await reads.between("lo.a", 1, 5, 10)
    assert [(m.seq, m.subject, m.data) for m in found] == [
        (1, "lo.a", b"m0"),
        (3, "lo.a", b"m2"),
        (5, "lo.a", b"m4"),
    ]
    assert [m.seq for m in await reads.between("lo.b", 3, 3, 10)] == []
    assert [m.seq for m in await reads.between("lo.>", 2, 4, 2)] == [2, 3]
