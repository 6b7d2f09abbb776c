"""The read service's turns: one asker's requests answered a few at a time, the rest
waiting their turn, and refused at once past a bound; other askers are answered meanwhile."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lintas.infra import reads
from lintas.infra.reads import ReadService


class _Msg:
    def __init__(self, agency: str, op: str = "head") -> None:
        self.agency, self.op = agency, op
        self.subject = f"lintas_read.{agency}.{op}"
        self.reply = f"_INBOX.{agency}.x"
        self.data = json.dumps({"case": "x"}).encode()
        self.answer: dict[str, Any] | None = None

    async def respond(self, data: bytes) -> None:
        self.answer = json.loads(data)


def _service() -> tuple[ReadService, asyncio.Event, dict[str, int]]:
    service = ReadService(None, None, "LINTAS")
    release = asyncio.Event()
    running = {"now": 0, "most": 0}

    async def slow(agency: str, request: dict[str, Any]) -> dict[str, Any]:
        if agency == "kp2mi":
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            await release.wait()
            running["now"] -= 1
        return {"seq": 0}

    service._ops["head"] = slow
    return service, release, running


async def test_one_asker_holds_a_few_places_and_another_is_answered_meanwhile() -> None:
    service, release, running = _service()
    flood = [_Msg("kp2mi") for _ in range(40)]
    tasks = [asyncio.create_task(service._answer(m, m.agency, m.op)) for m in flood]
    other = _Msg("kemlu")
    await asyncio.wait_for(service._answer(other, other.agency, other.op), 5)
    assert other.answer == {"seq": 0}
    assert running["most"] == reads._PER_ASKER
    release.set()
    await asyncio.gather(*tasks)
    assert all(m.answer == {"seq": 0} for m in flood)
    assert service._turns == {}  # nothing kept of an asker with nothing in flight


async def test_past_the_bound_a_request_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reads, "_PER_ASKER_WAITING", 12)
    service, release, _ = _service()
    flood = [_Msg("kp2mi") for _ in range(12)]
    tasks = [asyncio.create_task(service._answer(m, m.agency, m.op)) for m in flood]
    await asyncio.sleep(0)  # every one of them counted (each task runs to its first wait)
    late = _Msg("kp2mi")
    await asyncio.wait_for(service._answer(late, late.agency, late.op), 5)
    assert late.answer == {"error": "too many requests waiting", "code": 429}
    release.set()
    await asyncio.gather(*tasks)
    assert all(m.answer == {"seq": 0} for m in flood)
