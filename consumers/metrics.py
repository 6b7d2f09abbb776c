"""What a consumer process reports on ``/metrics`` and ``/readyz``
(:mod:`lintas.infra.observability.metrics` serves them; docs/OPERATIONS.md lists them).

Per consumer the process runs (label ``consumer``, e.g. ``agency-kemlu``; never a case id):

* ``lintas_consumer_pending``, ``lintas_consumer_ack_pending``: its JetStream consumer info,
  asked at each scrape (an agency may ask about its own consumers only, which is all it runs);
* ``lintas_consumer_lag_seconds``: 0 when nothing waits; else since the oldest message of the
  batch it holds unacknowledged was stored, or, holding none, since the newest message it
  acknowledged was stored (what waits was stored after that: an upper bound). The runner
  knows these stored times from its deliveries, so no identity needs to read the stream;
* ``lintas_consumer_applied_total``, ``lintas_consumer_quarantined_total``: events applied
  and messages quarantined since the process started.

From the projections, per agency (label ``agency``): ``lintas_handoffs_open`` and
``lintas_handoffs_overdue`` from the worklists this process keeps, and
``lintas_handoffs_escalated`` (open hand-offs asked of it that were escalated to KPAI) where
the process runs the watchdog.

Ready: each broker connected, the stream's consumers it runs present.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from faststream.nats import NatsBroker
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from lintas.consumers.app import Databases, runners_of
from lintas.consumers.runner import ProjectionRunner
from lintas.consumers.status import read_projections
from lintas.infra.observability.metrics import Check, Probes, Source, consumers_present
from lintas.infra.settings import Settings

__all__ = [
    "broker_connected",
    "consumer_probes",
    "consumer_source",
    "handoff_source",
    "runner_source",
]


def broker_connected(name: str, broker: NatsBroker) -> Check:
    """``broker``'s connection is up."""

    async def probe() -> str | None:
        return None if await broker.ping(timeout=0.5) else "not connected to the bus"

    return Check(name, probe)


def runner_source(runners: Sequence[ProjectionRunner]) -> Source:
    """Applied and quarantined, counted by the runners themselves (no bus needed)."""

    async def collect() -> Iterable[Metric]:
        applied = CounterMetricFamily(
            "lintas_consumer_applied",
            "Events the consumer applied to its projection since the process started",
            labels=["consumer"],
        )
        quarantined = CounterMetricFamily(
            "lintas_consumer_quarantined",
            "Messages the consumer put in quarantine since the process started",
            labels=["consumer"],
        )
        for runner in runners:
            applied.add_metric([runner.consumer], runner.applied)
            quarantined.add_metric([runner.consumer], runner.quarantined)
        return [applied, quarantined]

    return collect


def consumer_source(
    js: Any,
    stream: str,
    runners: Sequence[ProjectionRunner],
    *,
    clock: Callable[[], float] = time.time,
) -> Source:
    """Pending, unacknowledged and lag of each runner's durable consumer, asked through ``js``."""

    async def collect() -> Iterable[Metric]:
        pending = GaugeMetricFamily(
            "lintas_consumer_pending",
            "Messages for the consumer not yet delivered to it",
            labels=["consumer"],
        )
        ack_pending = GaugeMetricFamily(
            "lintas_consumer_ack_pending",
            "Messages delivered to the consumer and not yet acknowledged",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "lintas_consumer_lag_seconds",
            "Seconds since the oldest message the consumer has not acknowledged was stored "
            "(0: caught up)",
            labels=["consumer"],
        )
        for runner in runners:
            try:
                info = await js.consumer_info(stream, runner.consumer)
            except nats.js.errors.NotFoundError:
                continue  # not declared (yet): /readyz says so
            waiting = int(info.num_pending or 0)
            unacked = int(info.num_ack_pending or 0)
            pending.add_metric([runner.consumer], waiting)
            ack_pending.add_metric([runner.consumer], unacked)
            since = runner.holding_since or runner.acked_through
            if not (waiting or unacked):
                lag.add_metric([runner.consumer], 0.0)
            elif since is not None:
                lag.add_metric([runner.consumer], max(0.0, clock() - since))
            # else: behind, and nothing delivered here yet to tell by how much: no sample
        return [pending, ack_pending, lag]

    return collect


def handoff_source(
    settings: Settings, databases: Databases, worklists: Sequence[str], *, watchdog: bool
) -> Source:
    """Open and overdue hand-offs of the ``worklists`` agencies (their worklists); with
    ``watchdog``, the open hand-offs escalated to KPAI, per agency asked."""

    def read() -> list[Metric]:
        projections = read_projections(
            lambda database: databases.for_consumer(database)[0],
            settings,
            worklists,
            datetime.now(UTC),
        )
        families: list[Metric] = []
        if worklists:
            opened = GaugeMetricFamily(
                "lintas_handoffs_open",
                "Hand-offs asked of the agency that are requested or accepted (its worklist)",
                labels=["agency"],
            )
            overdue = GaugeMetricFamily(
                "lintas_handoffs_overdue",
                "Open hand-offs asked of the agency that got an overdue notice (its worklist)",
                labels=["agency"],
            )
            for agency in worklists:
                found = projections.open.get(agency)
                if found is not None:  # None: its worklist never ran here
                    opened.add_metric([agency], found.total)
                    overdue.add_metric([agency], projections.overdue.get(agency) or 0)
            families += [opened, overdue]
        if watchdog and projections.watchdog is not None:
            escalated = GaugeMetricFamily(
                "lintas_handoffs_escalated",
                "Open hand-offs asked of the agency that the watchdog escalated to KPAI",
                labels=["agency"],
            )
            for agency in sorted({*settings.agencies, *projections.escalated}):
                escalated.add_metric([agency], projections.escalated.get(agency, 0))
            families.append(escalated)
        return families

    async def collect() -> Iterable[Metric]:
        return await asyncio.to_thread(read)

    return collect


def consumer_probes(
    settings: Settings,
    brokers: Sequence[NatsBroker],
    databases: Databases,
    *,
    worklists: Sequence[str] = (),
    watchdog: bool = False,
) -> Callable[[Any], Probes]:
    """What a process running ``brokers`` reports (for
    :func:`~lintas.infra.observability.metrics.metrics_endpoint`): their runners' consumers,
    the ``worklists`` agencies' hand-offs, and with ``watchdog`` the escalations."""

    def build(js: Any) -> Probes:
        runners = [runner for broker in brokers for runner in runners_of(broker)]
        probes = Probes()
        for number, broker in enumerate(brokers, 1):
            probes.checks.append(broker_connected(f"consumer connection {number}", broker))
        probes.checks.append(
            consumers_present(js, settings.stream, [runner.consumer for runner in runners])
        )
        probes.sources += [
            runner_source(runners),
            consumer_source(js, settings.stream, runners),
            handoff_source(settings, databases, worklists, watchdog=watchdog),
        ]
        return probes

    return build
