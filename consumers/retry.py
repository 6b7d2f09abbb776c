"""Applying a quarantined message again, as the consumer that failed would have.

The effect lands in that consumer's own projection, exactly once: a ``lintas_retried``
row keyed by (consumer, stream, sequence) is written in the same transaction, so a second
retry of the same entry changes nothing. The tracking position is left alone (it is
already past the message).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from lintas.contracts import ContractError, GateRefused, decode
from lintas.infra.db import Retried, ensure_tables
from lintas.infra.quarantine import QuarantineEntry

from .app import Databases
from .projections import Projection, RecordProjection, WorklistProjection

__all__ = ["RetryOutcome", "projection_for", "retry_entry"]


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    applied: bool
    detail: str


def projection_for(consumer: str) -> tuple[str, Projection] | None:
    """The database and projection behind a consumer name, or None if not a projection."""
    if consumer == "record":
        return "record", RecordProjection()
    for prefix in ("agency-", "sent-"):
        if consumer.startswith(prefix):
            agency = consumer.removeprefix(prefix)
            return f"worklist-{agency}", WorklistProjection(agency)
    return None


def retry_entry(entry: QuarantineEntry, databases: Databases) -> RetryOutcome:
    target = projection_for(entry.consumer)
    if target is None:
        return RetryOutcome(False, f"consumer {entry.consumer!r} has no projection to retry into")
    database, projection = target
    try:
        event = decode(entry.body, subject=entry.subject)
    except ContractError as exc:
        return RetryOutcome(False, f"still cannot be applied: {exc}")
    except Exception as exc:
        return RetryOutcome(False, f"still cannot be decoded: {exc.__class__.__name__}")
    engine, _ = databases.for_consumer(database)
    ensure_tables(engine, *projection.tables)
    with Session(engine) as session:
        session.add(
            Retried(consumer=entry.consumer, stream=entry.stream, stream_seq=entry.stream_seq)
        )
        try:
            session.flush()
        except IntegrityError:
            return RetryOutcome(True, "already applied by an earlier retry")
        try:
            projection.apply_batch(session, [(entry.stream_seq, event)])
        except GateRefused as exc:
            # Decided as of the event's own place in the log: a consent recorded later does
            # not cover what was shared before it.
            session.rollback()
            return RetryOutcome(False, f"still refused by the consent gate: {exc}")
        except Exception as exc:
            session.rollback()
            return RetryOutcome(False, f"the projection failed again: {exc.__class__.__name__}")
        session.commit()
    return RetryOutcome(True, f"{event.type} applied to {database}")
