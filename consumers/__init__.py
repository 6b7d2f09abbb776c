"""lintas.consumers: agency worklists, the coordination record and hand-off deadlines, as
projections; and the watchdog that acts on the deadlines.

Pure folds (:mod:`.worklist`, :mod:`.record`) behind thin FastStream subscribers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lintas.infra.lazy import lazy_exports

if TYPE_CHECKING:
    from lintas.consumers import record, worklist
    from lintas.consumers._runner import OnCommit, ProjectionRunner
    from lintas.consumers.app import (
        Databases,
        attach_agency,
        attach_record,
        attach_runner,
        create_agency_app,
        create_broker,
        create_record_app,
    )
    from lintas.consumers.handoffs import Step, classify
    from lintas.consumers.projections import (
        RecordProjection,
        WorklistProjection,
        load_record,
        load_records,
        load_worklist,
    )
    from lintas.consumers.record import CaseRecord, Handoff
    from lintas.consumers.watchdog import (
        Watchdog,
        WatchdogProjection,
        attach_watchdog,
        create_watchdog_app,
        load_deadlines,
        start_ticker,
        watchdog_ticker,
    )
    from lintas.consumers.worklist import WorkItem

# Imported on first use (lintas.infra.lazy): a replay worker needs the record's fold, not
# FastStream and every agency consumer.
_HOMES = {
    "record": "",
    "worklist": "",
    "OnCommit": "_runner",
    "ProjectionRunner": "_runner",
    "Databases": "app",
    "attach_agency": "app",
    "attach_record": "app",
    "attach_runner": "app",
    "create_agency_app": "app",
    "create_broker": "app",
    "create_record_app": "app",
    "Step": "handoffs",
    "classify": "handoffs",
    "RecordProjection": "projections",
    "WorklistProjection": "projections",
    "load_record": "projections",
    "load_records": "projections",
    "load_worklist": "projections",
    "CaseRecord": "record",
    "Handoff": "record",
    "Watchdog": "watchdog",
    "WatchdogProjection": "watchdog",
    "attach_watchdog": "watchdog",
    "create_watchdog_app": "watchdog",
    "load_deadlines": "watchdog",
    "start_ticker": "watchdog",
    "watchdog_ticker": "watchdog",
    "WorkItem": "worklist",
}
if not TYPE_CHECKING:  # type checkers read the imports above, and flag a name not there
    __getattr__, __dir__ = lazy_exports(__name__, _HOMES)

__all__ = [
    "CaseRecord",
    "Databases",
    "Handoff",
    "OnCommit",
    "ProjectionRunner",
    "RecordProjection",
    "Step",
    "Watchdog",
    "WatchdogProjection",
    "WorkItem",
    "WorklistProjection",
    "attach_agency",
    "attach_record",
    "attach_runner",
    "attach_watchdog",
    "classify",
    "create_agency_app",
    "create_broker",
    "create_record_app",
    "create_watchdog_app",
    "load_deadlines",
    "load_record",
    "load_records",
    "load_worklist",
    "record",
    "start_ticker",
    "watchdog_ticker",
    "worklist",
]
