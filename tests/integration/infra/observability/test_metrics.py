"""Metrics and probes of real processes on a secured bus, scraped over HTTP as Prometheus
would: an agency's consumers (``lintas run kemlu``, connected as kemlu with its own seed
only), and the admission service (connected as ``admission``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lintas.admission.metrics import admission_probes
from lintas.contracts import new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.nats.bus import read_service
from lintas.infra.nats.topology import intake_stream
from lintas.infra.observability.metrics import metrics_endpoint
from lintas.producers._admit import send
from tests.support.attack import forge, platform_running
from tests.support.helpers import line_with, publish_case
from tests.support.metrics import get, metrics_url, ready_until, scrape, scrape_until, value
from tests.support.secured import agency_publisher

pytestmark = [pytest.mark.nats]


async def test_an_agency_process_reports_its_consumers_and_worklist(tmp_path: Path) -> None:
    async with (
        platform_running(tmp_path) as platform,
        # The platform's read service: kemlu reads case heads and gaps through it.
        read_service(platform.settings, platform.hub.url),
    ):
        settings = platform.settings
        # kemlu's host holds kemlu's seed and nothing else: it binds, it may not declare.
        own = tmp_path / "kemlu-nkeys"
        own.mkdir()
        shutil.copy2(settings.nkeys_dir / "kemlu.nk", own / "kemlu.nk")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")},
            "LINTAS_NATS_URL": platform.hub.url,
            "LINTAS_DATA_DIR": str(settings.data_dir),
            "LINTAS_CREDENTIALS_DIR": str(own),
            "LINTAS_METRICS_PORT": "0",
            "LINTAS_BATCH_SIZE": str(settings.batch_size),  # as the platform declared them
            "COLUMNS": "200",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lintas.cli",
            "run",
            "kemlu",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            base = metrics_url(await line_with(proc.stdout, "metrics on", 60))
            assert (await get(f"{base}/healthz")) == (200, "ok\n")
            await ready_until(base, 200)

            publishers = {}
            for agency in ("kemlu", "kp2mi"):
                client = await platform.client(agency)
                publishers[agency] = agency_publisher(client, settings)
            case_id = await publish_case(
                publishers["kemlu"], steps=2, kp2mi=publishers["kp2mi"], at=datetime.now(UTC)
            )

            def caught_up(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
                return (
                    value(samples, "lintas_handoffs_open", agency="kemlu") == 2
                    and value(samples, "lintas_consumer_pending", consumer="agency-kemlu")
                    == value(samples, "lintas_consumer_ack_pending", consumer="agency-kemlu")
                    == 0
                )

            samples, body = await scrape_until(base, caught_up, "kemlu's worklist holds both")
            # Both requests to kemlu, and the case it opened, applied by its two consumers.
            assert value(samples, "lintas_consumer_applied_total", consumer="agency-kemlu") == 2
            assert value(samples, "lintas_consumer_applied_total", consumer="sent-kemlu") == 1
            assert value(samples, "lintas_consumer_quarantined_total", consumer="agency-kemlu") == 0
            assert value(samples, "lintas_consumer_lag_seconds", consumer="agency-kemlu") == 0
            assert value(samples, "lintas_handoffs_overdue", agency="kemlu") == 0
            # Its own consumers only, and nothing that names a case.
            consumers = {
                dict(labels).get("consumer") for name, labels in samples if "consumer" in name
            }
            assert consumers == {"agency-kemlu", "sent-kemlu"}
            assert case_id not in body
            assert "doc-0" not in body

            # A consumer it runs disappears (the platform deletes it): not ready, and why.
            await platform.reader.js().delete_consumer(settings.stream, "sent-kemlu")
            problem = await ready_until(base, 503)
            assert problem == f"consumers: no consumer sent-kemlu on {settings.stream}\n"
            assert (await get(f"{base}/healthz"))[0] == 200  # alive all the same
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
        assert (await get(f"{base}/healthz"))[0] == 0  # gone with the process


async def test_admission_counts_admissions_and_refusals_by_code(tmp_path: Path) -> None:
    async with platform_running(tmp_path) as platform:
        settings = platform.settings.model_copy(update={"metrics_port": 0})
        parts = Parts(settings, platform.hub.url)
        service = platform.service
        writer = await platform.client("admission")
        build = admission_probes(service, writer.conn, settings)
        async with metrics_endpoint(parts, "admission", build) as server:
            assert server is not None
            base = server.url
            assert await ready_until(base, 200) == "ready\n"
            kemlu = await platform.client("kemlu")
            case_id = new_case_id()
            for _ in range(2):  # the second opening of the same case: refused
                await send(
                    kemlu.conn,
                    kemlu.js(),
                    forge(settings, "case.opened", source="kemlu", case_id=case_id),
                    stream=intake_stream(settings),
                    wait_s=20,
                    what="t",
                )
            samples, body = await scrape(base)
            assert value(samples, "lintas_admissions_total") == 1
            assert value(samples, "lintas_refusals_total", code="chain_moved") == 1
            assert value(samples, "lintas_admission_partitions_held") == (
                settings.admission_partitions
            )
            refusals = [labels for name, labels in samples if name == "lintas_refusals_total"]
            assert refusals == [(("code", "chain_moved"),)]  # the code is the only label
            assert case_id not in body
            assert "kemlu" not in body
            # Admission connected, the partitions' consumers declared.
            assert {check.name for check in server.probes.checks} == {
                "bus",
                "admission",
                "streams",
                "consumers",
            }
