"""lintas.consumers: agency worklists, the coordination record and hand-off deadlines, as
projections; and the watchdog that acts on the deadlines.

Pure folds (:mod:`.worklist`, :mod:`.record`) behind thin FastStream subscribers.
"""

from . import record, worklist
from ._runner import OnCommit, ProjectionRunner
from .app import (
    Databases,
    attach_agency,
    attach_record,
    attach_runner,
    create_agency_app,
    create_broker,
    create_record_app,
)
from .handoffs import Step, classify
from .projections import (
    RecordProjection,
    WorklistProjection,
    load_record,
    load_records,
    load_worklist,
)
from .record import CaseRecord, Handoff
from .watchdog import (
    Watchdog,
    WatchdogProjection,
    attach_watchdog,
    create_watchdog_app,
    load_deadlines,
    start_ticker,
    watchdog_ticker,
)
from .worklist import WorkItem

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
