"""Sending an event to the platform's admission, and reading its one answer.

The sender subscribes to an inbox of its own (``_INBOX.<agency>.…``: the only inbox the
bus lets it read, and the only one admission answers to), stores the signed event on the
intake with that inbox in ``Lintas-Reply``, and waits. No answer in time is
:class:`~lintas.infra.errors.BusUnavailable`: sending the same event again is safe
(admission answers an id it admitted with its first answer).
"""

from __future__ import annotations

import uuid
from typing import Any

import nats.errors
import nats.js.errors

from lintas.contracts import Event, encode
from lintas.contracts.admission import REPLY_HEADER, Answer
from lintas.contracts.subjects import intake_subject
from lintas.infra.errors import BusUnavailable
from lintas.infra.nats.access import inbox_prefix

__all__ = ["send"]


async def send(nc: Any, js: Any, event: Event, *, stream: str, wait_s: float, what: str) -> Answer:
    """``event`` (signed, chained) to admission; its answer."""
    # Under the agency's own prefix whatever the client's default: admission answers only there.
    inbox = f"{inbox_prefix(event.source)}.{uuid.uuid4().hex}"
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        try:
            await js.publish(
                intake_subject(event.source, event.case_id),
                encode(event.envelope),
                timeout=wait_s,
                stream=stream,
                headers={REPLY_HEADER: inbox},
            )
        except nats.js.errors.NoStreamResponseError:
            raise BusUnavailable(
                f"{what}: no intake stream answers (is the platform up? `lintas up` runs it)"
            ) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise BusUnavailable(f"{what}: the intake did not acknowledge in {wait_s}s") from None
        try:
            msg = await sub.next_msg(timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):
            raise BusUnavailable(
                f"{what}: admission did not answer in {wait_s}s (is it running? sending "
                "the same event again is safe)"
            ) from None
    finally:
        await sub.unsubscribe()
    return Answer.model_validate_json(msg.data)
