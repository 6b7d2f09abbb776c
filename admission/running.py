"""Admission as a part of a running process: its connection, keys and registry.

What ``lintas up``, ``lintas run platform``, ``lintas run admission`` and every process on
the embedded bus (beside the read service) run for as long as they run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats.errors

from lintas.admission.service import AdmissionService
from lintas.contracts.agencies import ADMISSION
from lintas.infra.keys.signing import Signer, Verifier, ensure_signing_key, trusted_registry
from lintas.infra.nats.bus import connect, registry_source
from lintas.infra.nats.outage import Outage
from lintas.infra.settings import Settings

__all__ = ["admission_key", "admission_service"]


def admission_key(settings: Settings) -> Signer:
    """Admission's signing key (its receipts), made here on first use, as the watchdog's is
    by ``lintas up``: the data directory's registry holds its public half from then on."""
    return ensure_signing_key(settings, ADMISSION)[0]


@contextlib.asynccontextmanager
async def admission_service(
    settings: Settings, url: str, *, run: bool = True, outage: Outage | None = None
) -> AsyncIterator[AdmissionService | None]:
    """An admission instance, as its own identity, for the block (nothing if not ``run``).

    Any number may run: each partition has one writer at a time, and another instance takes
    it over when that one stops (:mod:`lintas.admission.service`). ``outage``: the
    process's, following its connection (:func:`lintas.infra.nats.bus.connect`).
    """
    if not run:
        yield None
        return
    signer = admission_key(settings)
    nc = await connect(
        url,
        "lintas-admission",
        settings=settings,
        identity=ADMISSION,
        reconnect_forever=True,
        outage=outage,
    )
    try:
        js = nc.jetstream()
        verifier = Verifier(
            await trusted_registry(settings, js),
            refresh=registry_source(url, settings, ADMISSION),
        )
        service = AdmissionService(nc, js, settings, verifier=verifier, signer=signer)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()
    finally:
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.close()
