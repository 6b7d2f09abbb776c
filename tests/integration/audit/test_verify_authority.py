"""``lintas verify`` names events the authority policy refuses, written straight onto an
open bus (no admission): a non-owner's erasure, a third party's consent withdrawal."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext

from lintas.infra.settings import Settings
from tests.support.audit import T0, ChainedAgencies, cli, written_past_admission
from tests.support.helpers import declare_record
from tests.support.samples import SAMPLES

pytestmark = pytest.mark.nats


async def test_verify_reports_a_non_owners_erasure_and_a_third_partys_withdrawal(
    js: JetStreamContext, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_env
    await declare_record(js, settings)
    agencies = ChainedAgencies(js, settings)
    log = await agencies.cases(1, steps=4)  # kemlu opens, records consent-1; kp2mi asks
    case = log[0].case_id
    withdrawn = await written_past_admission(
        js,
        settings,
        log[-1],
        "kemensos",
        "consent.withdrawn",
        SAMPLES["consent.withdrawn"],
        time=T0,
    )
    erased = await written_past_admission(
        js, settings, withdrawn, "dukcapil", "case.erased", SAMPLES["case.erased"], time=T0
    )
    capsys.readouterr()
    assert await cli("verify", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(p["code"], p["seq"], p["event_id"], p["case"]) for p in doc["problems"]] == [
        ("authority:not_recorder", withdrawn.seq, withdrawn.doc["id"], case),
        ("authority:not_owner", erased.seq, erased.doc["id"], case),
    ]
    assert "consent.withdrawn from kemensos" in doc["problems"][0]["message"]

    assert await cli("verify") == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"[authority:not_owner] stream seq {erased.seq}, event {erased.doc['id']}" in out
