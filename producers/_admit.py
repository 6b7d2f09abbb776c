"""Sending an event to the platform's admission, and reading its one answer.

The sender subscribes to an inbox of its own (``_INBOX.<agency>.…``: the only inbox the
bus lets it read, and the only one admission answers to), stores the signed event on the
intake with that inbox in ``Lintas-Reply``, and waits. With no answer in time it sends the
very same bytes again (admission answers an id it admitted, with the same content, with its
first answer: ``Answer.duplicate``), and after the last attempt raises
:class:`~lintas.infra.errors.BusUnavailable`: sending the same event again later is safe.
An intake that refuses the message is said at once, not waited out: :class:`IntakeFull`
(transient: past ``LINTAS_INTAKE_MAX_BYTES``, admission behind) or :class:`IntakeTooLarge`
(permanent: past ``LINTAS_INTAKE_MAX_MSG_SIZE``).

Why the same bytes: a retry that rebuilt the event (a new ``time``, a new signature) would
be another content under an admitted id, which admission refuses (``duplicate_id``).

One subscription per connection and sending agency, ``_INBOX.<agency>.<random>.*``, takes
every answer, each send waiting on a token of its own under it: a subscription made and dropped per
event cost the client and the server two protocol messages and an interest change each.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
import structlog

from lintas.contracts import Event, encode
from lintas.contracts.admission import MAX_BYTES, REPLY_HEADER, Answer
from lintas.contracts.errors import PermanentError
from lintas.contracts.subjects import intake_subject
from lintas.infra.errors import BusUnavailable
from lintas.infra.nats.access import inbox_prefix

__all__ = ["Admission", "IntakeFull", "IntakeTooLarge", "send"]

_log = structlog.get_logger("lintas.producer")


class _Answers:
    """The answers to one connection's sends, by the token each send's inbox ends in."""

    def __init__(self) -> None:
        self._subs: dict[str, tuple[Any, str]] = {}  # by agency: (subscription, prefix)
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._lock = asyncio.Lock()

    async def inbox(self, nc: Any, source: str) -> tuple[str, asyncio.Future[bytes]]:
        """A fresh inbox under ``source``'s own prefix, and where its answer lands."""
        held = self._subs.get(source)
        if held is None or held[0]._closed:
            async with self._lock:
                held = self._subs.get(source)
                if held is None or held[0]._closed:
                    # Under the agency's own prefix whatever the client's default: admission
                    # answers only there.
                    prefix = f"{inbox_prefix(source)}.{uuid.uuid4().hex}"
                    held = (await nc.subscribe(f"{prefix}.*", cb=self._answered), prefix)
                    self._subs[source] = held
        token = uuid.uuid4().hex
        landed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[token] = landed
        return f"{held[1]}.{token}", landed

    def forget(self, inbox: str) -> None:
        self._waiting.pop(inbox.rsplit(".", 1)[1], None)

    async def _answered(self, msg: Any) -> None:
        landed = self._waiting.pop(msg.subject.rsplit(".", 1)[1], None)
        if landed is not None and not landed.done():
            landed.set_result(bytes(msg.data))


def _answers_on(nc: Any) -> _Answers:
    """The one answer subscription per connection (and agency), whoever sends on it: kept
    on the client, so that it goes with it (its subscription refers to the client)."""
    answers: _Answers | None = getattr(nc, "_lintas_answers", None)
    if answers is None:
        answers = _Answers()
        nc._lintas_answers = answers
    return answers


@dataclass(frozen=True, slots=True)
class Admission:
    """Where a Publisher sends: the platform's intake, on the agency's own connection.

    ``wait_s`` bounds each wait for an answer; it is longer than a partition's fail-over
    (a crashed admission instance's lease ages out in 6 s, then another takes over and
    answers what waited). ``attempts``: how often the same bytes are sent before giving up.
    """

    nc: Any
    js: Any
    stream: str
    wait_s: float = 10.0
    attempts: int = 3

    async def send(self, body: bytes, source: str, case_id: str, what: str) -> Answer:
        """``body`` (a signed, chained event of ``source``'s for ``case_id``) to
        admission; its answer."""
        for attempt in range(1, self.attempts + 1):
            answer = await self._once(body, source, case_id, what)
            if answer is not None:
                return answer
            _log.warning("admission.unanswered", attempt=attempt, wait_s=self.wait_s)
        raise BusUnavailable(
            f"{what}: admission did not answer ({self.attempts} attempts of {self.wait_s:g}s; "
            "is it running? `lintas up` runs it. Sending the same event again is safe)"
        )

    async def _once(self, body: bytes, source: str, case_id: str, what: str) -> Answer | None:
        answers = _answers_on(self.nc)
        inbox, landed = await answers.inbox(self.nc, source)
        try:
            try:
                await self.js.publish(
                    intake_subject(source, case_id),
                    body,
                    timeout=self.wait_s,
                    stream=self.stream,
                    headers={REPLY_HEADER: inbox},
                )
            except nats.js.errors.NoStreamResponseError:
                raise BusUnavailable(
                    f"{what}: no intake stream answers (is the platform up? `lintas up` runs it)"
                ) from None
            except nats.js.errors.APIError as exc:
                raise _refused(what, len(body), exc) from None
            except (nats.errors.TimeoutError, TimeoutError):
                return None
            try:
                data = await asyncio.wait_for(landed, timeout=self.wait_s)
            except TimeoutError:
                return None
        finally:
            answers.forget(inbox)
        return Answer.model_validate_json(data)


class IntakeTooLarge(PermanentError):
    """The intake stream refused the message as larger than it stores
    (``LINTAS_INTAKE_MAX_MSG_SIZE``): sending it again cannot help."""


class IntakeFull(BusUnavailable):
    """The intake stream holds as much as it may (``LINTAS_INTAKE_MAX_BYTES``) and refused
    the message: admission is behind or stopped. Sending the same event again later is safe."""


# JetStream err_codes (nats-server's errors.json) of a refused publish.
_TOO_LARGE = 10054  # "message size exceeds maximum allowed"
_STORE_FAILED = 10077  # "maximum bytes exceeded", "maximum messages exceeded", ...


def _refused(what: str, size: int, exc: nats.js.errors.APIError) -> Exception:
    """What the intake's answer to a publish it did not store means for the sender."""
    said = f"{exc.description or type(exc).__name__} (code {exc.err_code})"
    if exc.err_code == _TOO_LARGE:
        return IntakeTooLarge(
            f"{what}: the intake refused {size} bytes: {said}; admission takes at most {MAX_BYTES}"
        )
    if exc.err_code == _STORE_FAILED or isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return IntakeFull(
            f"{what}: the intake refused it: {said}; admission is behind or stopped "
            "(`lintas status`). Sending the same event again later is safe"
        )
    return PermanentError(f"{what}: the intake refused it: {said}")


async def send(nc: Any, js: Any, event: Event, *, stream: str, wait_s: float, what: str) -> Answer:
    """``event`` (signed, chained) to admission, once; its answer."""
    admission = Admission(nc, js, stream, wait_s=wait_s, attempts=1)
    return await admission.send(encode(event.envelope), event.source, event.case_id, what)
