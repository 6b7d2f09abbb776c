"""``lintas demo`` writes its spans to the data directory's span file; ``lintas trace``
draws a demo case from it."""

from __future__ import annotations

import pytest

from lintas.cli import main
from lintas.infra.observability.telemetry import read_span_file
from lintas.infra.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def test_lintas_trace_draws_a_demo_case_from_the_span_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["demo", "--cases", "1"]) == 0
    case_id = capsys.readouterr().out.rsplit("lintas case show ", 1)[1].split()[0]
    services = {r["service"] for r in read_span_file(settings.span_file, containing=case_id)}
    assert services == {"lintas-demo"}

    assert main(["trace", case_id]) == 0
    out = capsys.readouterr().out
    assert out.count("trace ") == 1, "one trace for the case"
    for row in (
        "case intake",
        "publish case.opened → kp2mi",
        "↳ process case.opened (staff-kp2mi)",
        "publish document.requested → kemlu",
        "↳ process document.requested (staff-kemlu)",
        "publish document.requested → dukcapil",
        "publish rehabilitation.handoff_requested → kemensos",
        "publish case.closed → all",
    ):
        assert row in out, row
    assert "process spans that led to nothing are not shown" in out

    assert main(["trace", case_id, "--all"]) == 0
    everything = capsys.readouterr().out
    assert "(record)" in everything
    assert len(everything.splitlines()) > len(out.splitlines())
