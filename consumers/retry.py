"""Applying a quarantined message again, as the consumer that failed would have.

It is decoded and its signature checked again (with the registry as it is now, so a
message quarantined before its source's key was published can be applied), then the effect
lands in that consumer's own projection, exactly once: a ``lintas_retried``
row keyed by (consumer, stream, sequence) is written in the same transaction, so a second
retry of the same entry changes nothing. The tracking position is left alone (it is
already past the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from lintas.consumers.app import Databases
from lintas.consumers.projections import Projection, RecordProjection, WorklistProjection
from lintas.consumers.quarantine import QuarantineEntry
from lintas.consumers.rebuild import build_of
from lintas.contracts import (
    ContractError,
    Event,
    GateRefused,
    SignatureError,
    decode,
    parse_message,
)
from lintas.infra.db import Retried, TablesBusy, ensure_tables
from lintas.infra.keys.signing import Verifier
from lintas.infra.nats.topology import agency_of

__all__ = ["RetryOutcome", "projection_for", "retry_entry"]


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    applied: bool
    detail: str
    event: Event | None = None
    """The entry's event, once it decoded (whatever became of it then)."""
    superseded: bool = False
    """Quarantined by an earlier build of the projection: judged again since, by the
    rebuild (applied, or quarantined anew). Dropped, never applied."""


def projection_for(consumer: str) -> tuple[str, Projection] | None:
    """The database and projection behind a consumer name, or None if not a projection."""
    if consumer == "record":
        return "record", RecordProjection()
    agency = agency_of(consumer)
    if agency is not None:
        return f"worklist-{agency}", WorklistProjection(agency)
    return None


def _superseded(entry: QuarantineEntry, built: str | None) -> bool:
    """Whether ``entry`` comes from before the projection's build ``built``."""
    if built is None:
        return False  # never noted: no rebuild since (builds are noted from the first start)
    if entry.build is not None:
        return entry.build != built
    # An entry from before builds were noted in it: by its time.
    return entry.quarantined_at < datetime.fromisoformat(built)


def retry_entry(
    entry: QuarantineEntry, databases: Databases, *, verifier: Verifier | None
) -> RetryOutcome:
    """Apply ``entry`` as its consumer would now: decoded, its signature checked by
    ``verifier`` (None only where the consumer checks none), then folded."""
    target = projection_for(entry.consumer)
    if target is None:
        return RetryOutcome(False, f"consumer {entry.consumer!r} has no projection to retry into")
    database, projection = target
    try:
        databases.hold(database, projection.name)  # not into tables a rebuild is remaking
    except TablesBusy as exc:
        return RetryOutcome(False, str(exc))
    engine, _ = databases.for_consumer(database)
    built = build_of(engine, entry.consumer, entry.stream)
    if _superseded(entry, built):
        return RetryOutcome(
            False,
            f"quarantined before {entry.consumer}'s projection was rebuilt from the log (at "
            f"{built}), which applied it or quarantined it again as an entry of its own",
            superseded=True,
        )
    event: Event | None = None
    try:
        doc = parse_message(entry.body)
        event = decode(entry.body, subject=entry.subject, parsed=doc)
        if verifier is not None:
            # A key published since (`lintas keys publish`) lets it through; a forgery stays.
            verifier.verify(entry.body, event.envelope, parsed=doc)
    except SignatureError as exc:
        return RetryOutcome(False, f"its signature still does not hold: {exc}", event)
    except ContractError as exc:
        return RetryOutcome(False, f"still cannot be applied: {exc}")
    except Exception as exc:
        return RetryOutcome(False, f"still cannot be decoded: {exc.__class__.__name__}")
    ensure_tables(engine, *projection.tables)
    with Session(engine) as session:
        session.add(
            Retried(consumer=entry.consumer, stream=entry.stream, stream_seq=entry.stream_seq)
        )
        try:
            session.flush()
        except IntegrityError:
            return RetryOutcome(True, "already applied by an earlier retry", event)
        try:
            projection.apply_batch(session, [(entry.stream_seq, event)])
        except GateRefused as exc:
            # Decided as of the event's own place in the log: a consent recorded later does
            # not cover what was shared before it.
            session.rollback()
            return RetryOutcome(False, f"still refused by the consent gate: {exc}", event)
        except Exception as exc:
            session.rollback()
            return RetryOutcome(
                False, f"the projection failed again: {exc.__class__.__name__}", event
            )
        session.commit()
    return RetryOutcome(True, f"{event.type} applied to {database}", event)
