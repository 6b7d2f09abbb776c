"""lintas.consumers: agency worklists and the coordination record, as projections.

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
from .worklist import WorkItem

__all__ = [
    "CaseRecord",
    "Databases",
    "Handoff",
    "OnCommit",
    "ProjectionRunner",
    "RecordProjection",
    "Step",
    "WorkItem",
    "WorklistProjection",
    "attach_agency",
    "attach_record",
    "attach_runner",
    "classify",
    "create_agency_app",
    "create_broker",
    "create_record_app",
    "load_record",
    "load_records",
    "load_worklist",
    "record",
    "worklist",
]
