"""What an admission process reports on ``/metrics`` and ``/readyz``
(:mod:`lintas.infra.observability.metrics` serves them; docs/OPERATIONS.md lists them).

* ``lintas_admissions_total``: answers that admitted an event (a redelivered message answered
  again, as before, counts again), since the process started;
* ``lintas_refusals_total{code}``: refusals by refusal code (``chain_moved``, ``not_signed``,
  ``bad_reply``, ...): the code only, never the agency, case or event;
* ``lintas_admission_partitions_held``: intake partitions this instance writes now.

Ready: its connection up, the event stream and every partition's consumer present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from lintas.admission.service import AdmissionService
from lintas.infra.nats.topology import admission_consumer, intake_stream
from lintas.infra.observability.metrics import (
    Probes,
    Source,
    connected,
    consumers_present,
    streams_present,
)
from lintas.infra.settings import Settings

__all__ = ["admission_probes", "admission_source"]


def admission_source(service: AdmissionService) -> Source:
    """The service's own counts (no bus needed)."""

    async def collect() -> Iterable[Metric]:
        admissions = CounterMetricFamily(
            "lintas_admissions", "Events admitted to the log (answers that admitted)"
        )
        admissions.add_metric([], service.admissions)
        refusals = CounterMetricFamily(
            "lintas_refusals", "Messages admission refused, by refusal code", labels=["code"]
        )
        for code, count in sorted(service.refusals.items()):
            refusals.add_metric([code], count)
        held = GaugeMetricFamily(
            "lintas_admission_partitions_held", "Intake partitions this instance writes now"
        )
        held.add_metric([], len(service.held))
        return [admissions, refusals, held]

    return collect


def admission_probes(
    service: AdmissionService, nc: Any, settings: Settings
) -> Callable[[Any], Probes]:
    """What an admission process reports (``nc``: the service's connection)."""

    def build(js: Any) -> Probes:
        partitions = [admission_consumer(p).name for p in range(settings.admission_partitions)]
        return Probes(
            checks=[
                connected("admission", nc),
                streams_present(js, [settings.stream]),
                consumers_present(js, intake_stream(settings), partitions),
            ],
            sources=[admission_source(service)],
        )

    return build
