"""The bus errors every layer shares, and the one mapping of nats-py's errors onto them
(:func:`bus_errors`). Where they sit in lintas's error tree: :mod:`lintas.contracts.errors`.

Callers decide on retry by the branch (permanent or transient), not by the leaf; errors
raised by one module only are defined in that module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors
import nats.js.errors

from lintas.contracts.errors import TransientError

__all__ = ["BUS_ERRORS", "BusUnavailable", "NatsClientClosed", "bus_errors"]


class BusUnavailable(TransientError):
    """The broker cannot be reached or does not answer: worth retrying later."""


class NatsClientClosed(BusUnavailable):
    """The nats-py client gave up reconnecting: nothing succeeds on it until a new client."""


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


@contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """Re-raise broker connectivity failures during ``what`` as :class:`BusUnavailable`
    (:class:`NatsClientClosed` when the client is closed for good); a
    :class:`BusUnavailable` raised within (by the read service's client) is named too."""
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
        raise BusUnavailable(f"{what}: NATS unavailable ({type(exc).__name__}: {exc})") from exc
