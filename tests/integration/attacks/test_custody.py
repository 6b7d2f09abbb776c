"""Custody of case keys (issue 23, item 1), tried by hostile agencies on a real secured bus.

Every attempt is made on a connection as the identity that would try it; what the
permissions refuse, the server refuses itself; what the custody service refuses, it says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import nats.errors
import pytest

from lintas.contracts import BROADCAST, new_case_id
from lintas.infra.keys.exchange import ensure_exchange_key, load_recipients
from lintas.infra.nats.topology import CASE_KEYS_BUCKET, case_keys_stream
from lintas.infra.privacy.casekeys import case_keys_for
from tests.integration.infra.nats.test_access_enforced import (
    NOW,
    _keyed_publisher,
    _open_with_child,
    _platform,
)
from tests.support.secured import Client, secured_hub

pytestmark = pytest.mark.nats


async def test_a_wildcard_direct_get_returns_no_other_agency_s_wrap(tmp_path: Path) -> None:
    """A direct get whose subject ends in a literal ``>`` (or ``*``) token is a filter to
    the server: it must not pass an agency's permission for markers and its own wraps."""
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        platform, service = await _platform(hub)
        for agency in ("kemlu", "kp2mi", "dukcapil"):
            ensure_exchange_key(settings, agency)
        recipients = load_recipients(settings)
        kemlu, dukcapil = [await Client.open(hub.url, settings, a) for a in ("kemlu", "dukcapil")]
        try:
            case_id = new_case_id()
            publisher = _keyed_publisher(kemlu, settings, recipients)
            await _open_with_child(publisher, case_id, "WILDCARD")
            await publisher.publish(
                "consent.recorded",
                {
                    "consent_id": "consent-1",
                    "given_by": "parent",
                    "child_assent": True,
                    "scopes": ["services"],
                    "agencies": ["kp2mi"],
                },
                case_id=case_id,
                target=BROADCAST,
                time=NOW,
            )
            assert await case_keys_for(kemlu.js(), settings, "kemlu", recipients).data_key(case_id)
            api = f"$JS.API.DIRECT.GET.{case_keys_stream()}.$KV.{CASE_KEYS_BUCKET}"
            leaked = []
            for tail in (f"{case_id}.>", f"{case_id}.*.*", f"{case_id}.1.*", "*.>", ">", "*.*.*"):
                subject = f"{api}.{tail}"
                try:
                    msg = await dukcapil.conn.request(subject, b"", timeout=1.0)
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    continue
                got = (msg.headers or {}).get("Nats-Subject", "")
                if got.count(".") == 4:  # $KV.<bucket>.<case>.<gen>.<agency>: a wrap
                    leaked.append((tail, got, json.loads(msg.data or b"{}").get("alg")))
            assert leaked == []
        finally:
            await service.stop()
            for client in (kemlu, dukcapil, platform):
                await client.close()
