"""One agency's Publisher, ready: connected as the agency, with everything it publishes with.

An agency system that publishes from Python needs no more than this::

    from lintas.producers import connect

    async with connect("kemlu") as publisher:   # LINTAS_* settings; the bus they name
        await publisher.publish("case.opened", data, case_id=case_id, target="kp2mi")

:func:`publisher_for` is the one place a :class:`~lintas.producers.Publisher` is put
together from a process's :class:`~lintas.infra.bootstrap.Parts` (the watchdog's ticker,
the demo, ``lintas case erase`` and the benchmarks use it too), so what a Publisher needs
on a bus with permissions (its nkey, its JetStream API prefix, the read service, its case
keys) is decided once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from lintas.infra.bootstrap import Parts
from lintas.infra.keys.exchange import exchange_key_path
from lintas.infra.keys.signing import Verifier
from lintas.infra.nats.bus import open_bus
from lintas.infra.nats.headers import read_headers_fast
from lintas.infra.nats.topology import intake_stream
from lintas.infra.settings import Settings
from lintas.producers._admit import Admission
from lintas.producers.publisher import Publisher

__all__ = ["connect", "publisher_for"]


async def publisher_for(
    parts: Parts, nc: Client, agency: str, verifier: Verifier | None = None, *, js: Any = None
) -> Publisher:
    """``agency``'s Publisher on ``nc``, a connection as ``agency`` (:meth:`Parts.connect`).

    It sends every event to the platform's admission (the only writer of the log) on
    ``nc``, signs with the agency's key from the data directory, seals and wraps a child's data
    with the agency's case keys when the data directory holds its X25519 key (without, it
    refuses what carries a child's data), reads case heads where the bus lets the agency
    read them, and sends spans to ``parts.tracer_provider``. Its gate counts what
    ``verifier`` finds signed (:class:`~lintas.producers.Publisher` says why); ``js``: a
    JetStream context of ``nc`` with options of the caller's (default:
    :meth:`Parts.jetstream`).
    """
    # The fast header reader lintas' own connections have (the head reads' answers carry
    # headers): for a connection the caller made itself, too. It reads what nats-py reads.
    read_headers_fast(nc)
    js = js if js is not None else parts.jetstream(nc, agency)
    keys = None
    if exchange_key_path(parts.settings, agency).exists():
        keys = await parts.case_keys(js, agency)
    return Publisher(
        js,
        agency,
        stream=parts.settings.stream,
        signer=parts.signer(agency),
        keys=keys,
        tracer_provider=parts.tracer_provider,
        reads=parts.reads(nc, js, agency),
        verifier=verifier,
        admission=Admission(nc, js, intake_stream(parts.settings)),
    )


@contextlib.asynccontextmanager
async def connect(
    agency: str,
    settings: Settings | None = None,
    url: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Publisher]:
    """``agency``'s Publisher (:func:`publisher_for`) on a connection of its own, closed on
    exit.

    ``settings``: default, from the ``LINTAS_*`` environment. ``url``: default, the bus
    the settings name (``LINTAS_NATS_URL``, else this data directory's embedded server,
    started for as long as the block runs). It connects with the agency's nkey when the
    data directory holds one, and reconnects for as long as the block runs; its gate counts
    consents signed with keys the registry files or the ``LINTAS_KEYS`` bucket hold (read
    again when an unknown key turns up). Spans go to ``tracer_provider`` (default: the
    process's global one, as a Publisher's).

    Raises what :func:`~lintas.infra.nats.bus.connect` raises (``BusUnavailable``,
    ``AccessRefused``), or ``SigningKeyError`` when the data directory holds no signing
    key of the agency's.
    """
    settings = settings or Settings()
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = await stack.enter_async_context(open_bus(settings, agencies=[agency]))
        parts = Parts(
            settings,
            url,
            service=f"lintas-{agency}",
            tracer_provider=tracer_provider or trace.get_tracer_provider(),
        )
        stack.push_async_callback(parts.close)
        nc = await parts.connect(agency, reconnect_forever=True)
        stack.push_async_callback(nc.close)
        yield await publisher_for(parts, nc, agency, await parts.verifier(agency))
