"""What the consumer edge says of a message it cannot apply: a warning for one that breaks
its contract, an error for one that made the decoder itself fail (a bug to look at)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from lintas.consumers import runner as runner_module
from lintas.contracts import encode
from tests.support.events import CONSENT, OPENED
from tests.support.runner import StubMsg, runner_for


async def test_a_broken_contract_warns_and_a_failing_decoder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = runner_module.decode

    def failing(data: bytes, **kwargs: Any) -> Any:
        if kwargs.get("subject") == CONSENT.envelope.nats_subject:
            raise RecursionError  # whatever a hostile body makes a decoder do
        return decode(data, **kwargs)

    monkeypatch.setattr(runner_module, "decode", failing)
    applied: list[int] = []
    runner, _ = runner_for(tmp_path, applied)
    msgs = [
        StubMsg(1, encode(OPENED.envelope), OPENED.envelope.nats_subject),
        StubMsg(2, b"{not json", OPENED.envelope.nats_subject),
        StubMsg(3, encode(CONSENT.envelope), CONSENT.envelope.nats_subject),
    ]
    with capture_logs() as logs:
        await runner.handle(msgs)
    rejected = {e["stream_seq"]: e for e in logs if e["event"] == "message.rejected"}
    assert {seq: e["log_level"] for seq, e in rejected.items()} == {2: "warning", 3: "error"}
    assert "not JSON" in rejected[2]["reason"]
    assert rejected[3]["reason"] == "decoder failed: RecursionError"
    assert applied == [1]
