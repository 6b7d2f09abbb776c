"""lintas.producers: the SDK an agency system publishes through (directly, or through
its own database with the transactional outbox)."""

from lintas.infra.errors import BusUnavailable, NatsClientClosed
from lintas.producers.outbox import (
    Outbox,
    OutboxRecord,
    OutboxRelay,
    ensure_outbox_table,
)
from lintas.producers.publisher import CaseHead, HeadMoved, Published, Publisher, PublishRejected

__all__ = [
    "BusUnavailable",
    "CaseHead",
    "HeadMoved",
    "NatsClientClosed",
    "Outbox",
    "OutboxRecord",
    "OutboxRelay",
    "PublishRejected",
    "Published",
    "Publisher",
    "ensure_outbox_table",
]
