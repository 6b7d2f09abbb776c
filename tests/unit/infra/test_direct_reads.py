"""DirectReads asks STREAM.MSG.GET itself as nats-py's get_msg would, errors included."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from lintas.contracts import new_case_id
from lintas.infra.reads import DirectReads, StoredMessage

CASE = new_case_id()


class _Conn:
    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, dict[str, Any], float]] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:  # noqa: ASYNC109 (nats-py's signature)
        self.asked.append((subject, json.loads(payload), timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(data=json.dumps(answer).encode())


def _js(conn: _Conn) -> Any:
    return SimpleNamespace(_nc=conn, _prefix="$JS.acct.API", _timeout=2.5)


def _message(seq: int, body: bytes) -> dict[str, Any]:
    subject = f"lintas.kemlu.all.case.closed.{CASE}"
    return {"message": {"seq": seq, "subject": subject, "data": base64.b64encode(body).decode()}}


def test_a_walk_reads_next_by_subject_until_not_found() -> None:
    conn = _Conn(
        _message(3, b"{}"),
        _message(7, b'{"a":1}'),
        {"error": {"code": 404, "err_code": 10037, "description": "no message found"}},
    )

    async def run() -> None:
        found = await DirectReads(_js(conn), "LINTAS").between(f"lintas.*.*.*.*.{CASE}", 1, 99, 10)
        assert [(m.seq, m.data) for m in found] == [(3, b"{}"), (7, b'{"a":1}')]
        assert [a[0] for a in conn.asked] == ["$JS.acct.API.STREAM.MSG.GET.LINTAS"] * 3
        assert [a[1]["seq"] for a in conn.asked] == [1, 4, 8]
        assert conn.asked[0][2] == 2.5

    asyncio.run(run())


def test_no_case_is_an_empty_head_and_other_errors_pass_through() -> None:
    async def run() -> None:
        missing = {"error": {"code": 404, "err_code": 10037, "description": "no message found"}}
        assert (await DirectReads(_js(_Conn(missing)), "LINTAS").head(CASE)).seq == 0
        failing = {"error": {"code": 500, "err_code": 10010, "description": "boom"}}
        with pytest.raises(nats.js.errors.APIError, match="boom"):
            await DirectReads(_js(_Conn(failing)), "LINTAS").head(CASE)
        gone = _Conn(nats.errors.NoRespondersError())
        with pytest.raises(nats.js.errors.ServiceUnavailableError):
            await DirectReads(_js(gone), "LINTAS").head(CASE)

    asyncio.run(run())


def test_a_context_that_is_not_nats_py_s_is_asked_through_get_msg() -> None:
    asked: list[dict[str, Any]] = []

    class _Js:
        async def get_msg(self, stream: str, **kwargs: Any) -> Any:
            asked.append(kwargs)
            return SimpleNamespace(seq=5, subject=f"lintas.kemlu.all.x.y.{CASE}", data=b"{}")

    async def run() -> None:
        head = await DirectReads(_Js(), "LINTAS")._head_raw(CASE)
        assert head == StoredMessage(5, f"lintas.kemlu.all.x.y.{CASE}", b"{}")
        assert asked == [{"seq": None, "subject": f"lintas.*.*.*.*.{CASE}", "next": False}]

    asyncio.run(run())
