"""An agency's worklist: the requests addressed to it, with their status and age.

Pure: :func:`apply` takes the item as it stands (or None) and one event, and returns
the item as it stands after it. It is fed by two consumers of the agency (what others
ask of it, and what it answered), so it only ever moves a status forward.

Besides hand-offs, a withdrawn consent that names the agency among those notified
(``consent.withdrawn``'s ``notified``: every agency that received the case's data) puts a
``consent_withdrawn`` item on its worklist: stop processing the child's data.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from lintas.contracts import BROADCAST, Event
from lintas.contracts.families import consent
from lintas.contracts.handoffs import RANK, Step, classify

NOTICE = "consent_withdrawn"
_NOTICE_WHAT = "stop processing the child's data"

__all__ = ["NOTICE", "WorkItem", "apply", "item_key"]


class WorkItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    agency: str
    case_id: str
    requester: str
    request_id: str
    handoff: str | None = None
    what: str | None = None
    status: str = "requested"
    requested_at: datetime | None = None
    updated_at: datetime
    due: datetime | None = None
    overdue: bool = False
    last_event: str

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.requested_at is None else (now - self.requested_at).total_seconds()


def _notice_id(agency: str, event: Event) -> str | None:
    """The worklist id of a withdrawal notice for ``agency`` ('~' + the consent id: never a
    request id, which cannot hold '~')."""
    data = event.data
    if (
        isinstance(data, consent.ConsentWithdrawnV2)
        and event.target == BROADCAST
        and agency in (data.notified or ())
    ):
        return f"~{data.consent_id}"[:64]
    return None


def item_key(agency: str, event: Event) -> tuple[str, str, str, str] | None:
    """(agency, case, requester, request id) of the item an event touches, if any."""
    notice = _notice_id(agency, event)
    if notice is not None:
        return (agency, event.case_id, event.source, notice)
    step = classify(event)
    if step is None or step.asked != agency:
        return None
    return (agency, event.case_id, step.requester, step.request_id)


def _advance(current: str, step: Step) -> str:
    if step.kind == "overdue":
        return current
    wanted = "accepted" if step.kind == "progress" else step.kind
    return wanted if RANK[wanted] > RANK[current] else current


def apply(agency: str, item: WorkItem | None, event: Event) -> WorkItem | None:
    notice = _notice_id(agency, event)
    if notice is not None:
        return item or WorkItem(
            agency=agency,
            case_id=event.case_id,
            requester=event.source,
            request_id=notice,
            handoff=NOTICE,
            what=_NOTICE_WHAT,
            status="requested",
            requested_at=event.time,
            updated_at=event.time,
            last_event=event.type,
        )
    step = classify(event)
    if step is None or step.asked != agency:
        return item
    if item is None:
        item = WorkItem(
            agency=agency,
            case_id=event.case_id,
            requester=step.requester,
            request_id=step.request_id,
            status="requested",
            updated_at=event.time,
            last_event=event.type,
        )
    changes: dict[str, object] = {
        "status": _advance(item.status, step),
        "updated_at": max(item.updated_at, event.time),
        "last_event": event.type if event.time >= item.updated_at else item.last_event,
    }
    if step.kind == "requested":
        changes |= {
            "handoff": step.handoff,
            "what": step.what,
            "requested_at": event.time,
            "due": getattr(event.data, "due", None),
        }
    if step.kind == "overdue":
        changes["overdue"] = True
    return item.model_copy(update=changes)
