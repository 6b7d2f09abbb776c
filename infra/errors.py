"""The bus errors every layer shares, and the one mapping of nats-py's errors onto them
(:func:`bus_errors`). Where they sit in lintas's error tree: :mod:`lintas.contracts.errors`.

Callers decide on retry by the branch (permanent or transient), not by the leaf; errors
raised by one module only are defined in that module.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nats.errors
import nats.js.errors

from lintas.contracts.errors import PermanentError, TransientError

__all__ = [
    "BUS_ERRORS",
    "BusUnavailable",
    "NatsClientClosed",
    "NotPermitted",
    "bus_errors",
    "note_denial",
    "watch_denials",
]


class BusUnavailable(TransientError):
    """The broker cannot be reached or does not answer: worth retrying later."""


class NatsClientClosed(BusUnavailable):
    """The nats-py client gave up reconnecting: nothing succeeds on it until a new client."""


class NotPermitted(PermanentError):
    """The server refused a request as not permitted for the identity connected: asking
    again cannot help until the identity's permissions change."""


# The permissions violations the server reported to each client, as nats-py tells them: to
# its error callback only, while the request itself just times out.
_DENIALS: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def watch_denials(nc: Any, denials: list[str]) -> None:
    """Keep ``denials`` as ``nc``'s permissions violations (its error callback adds to them
    with :func:`note_denial`), so that :func:`bus_errors` can tell a refusal from a timeout."""
    _DENIALS[nc] = denials


def note_denial(denials: list[str], detail: str) -> None:
    """Keep one violation the server reported (the last few are enough)."""
    denials.append(detail)
    del denials[:-16]


# What nats-py raises when the broker, rather than the request, is the problem.
# ServiceUnavailableError is JetStream answering "no responders" (not enabled, or not
# ready yet after a restart); nats.errors.TimeoutError also covers FlushTimeoutError.
BUS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
    ConnectionError,
)


def _unavailable(what: str, exc: BaseException) -> BusUnavailable:
    """Each failure said as what it is: no answer in time is not a bus that is away."""
    name = type(exc).__name__
    if isinstance(exc, (nats.errors.TimeoutError, TimeoutError)):
        return BusUnavailable(f"{what}: no answer in time ({name}: {exc})")
    if isinstance(exc, (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError)):
        return BusUnavailable(
            f"{what}: nothing answers the request ({name}: JetStream not ready, or no "
            "service on that subject)"
        )
    return BusUnavailable(f"{what}: NATS unavailable ({name}: {exc})")


@contextmanager
def bus_errors(what: str, nc: Any = None) -> Iterator[None]:
    """Re-raise broker failures during ``what`` as :class:`BusUnavailable`, saying which
    (unreachable, no answer in time, nothing answering; :class:`NatsClientClosed` when the
    client is closed for good); a :class:`BusUnavailable` raised within (by the read
    service's client) is named too. With ``nc`` (a client that ``lintas.infra.nats.bus``
    connected, or its JetStream context), a request the server refused as not permitted
    raises :class:`NotPermitted`, not a timeout."""
    client = getattr(nc, "_nc", nc)  # a nats-py JetStream context keeps its client there
    denials = _DENIALS.get(client) if client is not None else None
    seen = len(denials) if denials is not None else 0
    try:
        yield
    except BusUnavailable as exc:
        if str(exc).startswith(what):
            raise
        raise type(exc)(f"{what}: {exc}") from exc
    except nats.errors.ConnectionClosedError:
        raise NatsClientClosed(
            f"{what}: the NATS client is closed (it stopped reconnecting); use a client "
            "that reconnects forever (max_reconnect_attempts=-1)"
        ) from None
    except nats.errors.OutboundBufferLimitError:
        # Disconnected, and the client does not buffer (pending_size=0) or its buffer is full.
        raise BusUnavailable(f"{what}: NATS unavailable (disconnected)") from None
    except BUS_ERRORS as exc:
        if denials is not None and len(denials) > seen:
            refused = "; ".join(dict.fromkeys(denials[seen:]))
            raise NotPermitted(
                f"{what}: the server refused it as not permitted ({refused})"
            ) from exc
        raise _unavailable(what, exc) from exc
