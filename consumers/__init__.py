"""lintas.consumers: agency worklists, the coordination record and hand-off deadlines, as
projections; and the watchdog that acts on the deadlines.

This package's own names are the pure folds and what they hold, importing nothing but
``lintas.contracts`` and pydantic (a replay worker, a report, a test need no broker and no
database for them). The rest lives in its module, imported where it is used:

* :mod:`.projections`: the SQLModel tables the folds are kept in, and batch application;
* :mod:`.runner`: the consumer edge (a pulled batch, one transaction, acknowledgements);
* :mod:`.app`: FastStream subscribers and apps (``Databases``, ``attach_*``, ``create_*``);
* :mod:`.watchdog`: the deadline watchdog's projection, ticker and app;
* :mod:`.rebuild`: schema versions, and a projection rebuilt from the log when stale;
* :mod:`.casefile`, :mod:`.gate`, :mod:`.quarantine`, :mod:`.retry`, :mod:`.status`.
"""

from __future__ import annotations

from lintas.consumers import deadlines, record, worklist
from lintas.consumers.record import CaseRecord, Handoff
from lintas.consumers.worklist import WorkItem
from lintas.contracts.handoffs import Step, classify

__all__ = [
    "CaseRecord",
    "Handoff",
    "Step",
    "WorkItem",
    "classify",
    "deadlines",
    "record",
    "worklist",
]
