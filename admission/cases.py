"""What admission knows of one case: its head, the ids it holds, its consent book and the
authority policy's state, folded from the case's admitted events.

Admission is the single writer of each case (one per partition), so what it folded stays
true until it writes the next event itself; a case it has not seen (or evicted) is read
back from the log. Only events that keep their contract, carry their source's signature
and keep the authority policy count:
anything else on the log was not admitted (it predates admission, or was written around
it) and is ignored here, as every reader ignores it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from lintas.contracts import (
    ContractError,
    Event,
    SignatureError,
    authority,
    case_filter,
    decode,
    gate,
    message_hash,
)
from lintas.contracts.admission import Head
from lintas.infra.keys.signing import Verifier
from lintas.infra.reads import DirectReads

__all__ = ["CaseState", "Cases", "after", "load"]


@dataclass(frozen=True, slots=True)
class CaseState:
    head: Head = field(default_factory=Head)
    ids: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    """Each admitted event id of the case: its sequence, hash and source."""
    book: gate.ConsentBook = field(default_factory=gate.ConsentBook)
    policy: authority.CaseState = field(default_factory=authority.start)


def after(state: CaseState, event: Event, seq: int, digest: str) -> CaseState:
    """The state once ``event`` is stored at ``seq`` with hash ``digest``."""
    return replace(
        state,
        head=Head(seq=seq, hash=digest),
        ids={**state.ids, event.id: (seq, digest, event.source)},
        book=gate.fold(state.book, event, seq),
        policy=authority.apply(state.policy, event),
    )


async def _signed(verifier: Verifier, raw: bytes, event: Event, asked: float) -> bool:
    try:
        await verifier.check(raw, event.envelope, asked=asked)
    except SignatureError:
        return False
    return True


async def load(reads: DirectReads, verifier: Verifier, case_id: str, batch: int = 256) -> CaseState:
    """The case as its log holds it now."""
    state = CaseState()
    asked = time.monotonic()  # a key id unknown then is learned by one read, for the walk
    cursor, last = 1, (await reads.head(case_id)).seq
    while cursor <= last:
        found = await reads.between(case_filter(case_id), cursor, last, batch)
        if not found:
            break
        for stored in found:
            digest = message_hash(stored.data)
            try:
                event = decode(stored.data, subject=stored.subject)
            except ContractError:
                # Not an event: it still holds its place in the chain.
                state = replace(state, head=Head(seq=stored.seq, hash=digest))
                continue
            if not await _signed(verifier, stored.data, event, asked) or authority.judge(
                state.policy, event
            ):
                # Written around admission (before it, or by a writer that broke in): it
                # holds its place and its id, and decides nothing, as for every reader.
                state = replace(
                    state,
                    head=Head(seq=stored.seq, hash=digest),
                    ids={**state.ids, event.id: (stored.seq, digest, event.source)},
                )
                continue
            state = after(state, event, stored.seq, digest)
        cursor = found[-1].seq + 1
    return state


class Cases:
    """The states of the cases admission saw last, at most ``size`` of them."""

    def __init__(self, reads: DirectReads, verifier: Verifier, size: int = 10_000) -> None:
        self._reads = reads
        self._verifier = verifier
        self._size = size
        self._states: OrderedDict[str, CaseState] = OrderedDict()

    async def get(self, case_id: str) -> CaseState:
        state = self._states.get(case_id)
        if state is None:
            state = await load(self._reads, self._verifier, case_id)
            self.put(case_id, state)
        else:
            self._states.move_to_end(case_id)
        return state

    def put(self, case_id: str, state: CaseState) -> None:
        self._states[case_id] = state
        self._states.move_to_end(case_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    async def stale(self, case_id: str) -> bool:
        """Whether the log's head of the case is not the one held (something was written
        past this instance: a writer of the partition before it); then forgotten."""
        held = self._states.get(case_id)
        if held is None:
            return False
        if (await self._reads.head(case_id)).seq == held.head.seq:
            return False
        self.forget(case_id)
        return True

    def forget(self, case_id: str) -> None:
        """After a write that found the case moved on: read it again next time."""
        self._states.pop(case_id, None)
