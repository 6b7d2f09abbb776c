"""``lintas run platform`` on a secured cluster, on a host that holds admission's seed too:
it runs admission, and an agency's events are admitted through it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lintas.contracts import new_case_id
from lintas.infra.keys.signing import ensure_agency_key
from tests.support.audit import OPENED
from tests.support.helpers import line_with
from tests.support.secured import Client, agency_publisher, secured_hub

pytestmark = pytest.mark.nats


async def test_run_platform_admits_where_it_holds_admissions_seed(tmp_path: Path) -> None:
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        ensure_agency_key(settings, "kemlu")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
        env |= {
            "LINTAS_NATS_URL": hub.url,
            "LINTAS_DATA_DIR": str(settings.data_dir),
            "LINTAS_AGENCIES": json.dumps(list(settings.agencies)),
            "COLUMNS": "200",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lintas.cli", "run", "platform",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None
        kemlu = None
        try:
            line = await line_with(proc.stdout, "platform up on", 60)
            assert "admission running" in line, line
            # It declared everything, and put this data dir's public keys (kemlu's) into
            # the bus's registry.
            kemlu = await Client.open(hub.url, settings, "kemlu")
            published = await agency_publisher(kemlu, settings).publish(
                "case.opened",
                OPENED,
                case_id=new_case_id(),
                target="kp2mi",
                time=datetime.now(UTC),
            )
            assert published.stream_seq == 1
        finally:
            if kemlu is not None:
                await kemlu.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
