"""Seals published on a timer: the platform's own checkpoints, without a cron job.

``lintas up`` runs a :class:`Sealer` every ``LINTAS_SEAL_INTERVAL_S`` seconds (0: never),
and ``lintas seal --every SECONDS`` runs one on any host with the platform's credentials
and the sealing agency's key. Each round seals what the stream gained since the last
seal (:func:`~lintas.audit.seals.seal_stream`), so its cost follows the traffic, and
publishes nothing when there is nothing new.

A round that fails is logged and the next round tries again: an outage of the bus
(:class:`~lintas.infra.errors.BusUnavailable`) as a warning, anything else (another sealer
sealed the same range first, a key that does not hold) as an error. Logs name sequences
and counts, never an event's content.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from lintas.contracts import TransientError
from lintas.infra.background import Background
from lintas.infra.bus import connect
from lintas.infra.keys import Signer
from lintas.infra.settings import Settings

from .seals import Seal, seal_stream

__all__ = ["RunningSealer", "Sealer", "start_sealer"]

_log = structlog.get_logger("lintas.sealer")


class Sealer:
    """Seals by ``seal`` every ``interval_s`` seconds until cancelled."""

    def __init__(
        self,
        seal: Callable[[], Awaitable[Seal | None]],
        interval_s: float,
        *,
        on_seal: Callable[[Seal], None] | None = None,
    ) -> None:
        self._seal = seal
        self._interval = interval_s
        self._on_seal = on_seal

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self._interval)  # the period itself, not a wait on anything

    async def round(self) -> Seal | None:
        """One seal of what is new, or None (nothing new, or the round failed: logged)."""
        try:
            seal = await self._seal()
        except TransientError as exc:
            _log.warning("seal.deferred", error=str(exc))
            return None
        except Exception as exc:
            _log.error("seal.failed", error=f"{exc.__class__.__name__}: {exc}")
            return None
        if seal is not None:
            _log.info(
                "seal.published",
                stream=seal.stream,
                first_seq=seal.first_seq,
                last_seq=seal.last_seq,
                count=seal.count,
                seal_seq=seal.seq,
                sealed_by=seal.sealed_by,
            )
            if self._on_seal is not None:
                self._on_seal(seal)
        return seal


class RunningSealer(Background):
    """A sealer running in the background on its own connection; :meth:`stop` ends both."""


async def start_sealer(
    url: str,
    settings: Settings,
    signer: Signer,
    *,
    interval_s: float | None = None,
    on_seal: Callable[[Seal], None] | None = None,
) -> RunningSealer:
    """Seal every ``interval_s`` (default ``settings.seal_interval_s``) seconds with
    ``signer``'s key, connected as the platform, which alone may write the seals stream."""
    nc = await connect(
        url, "lintas-sealer", settings=settings, identity="platform", reconnect_forever=True
    )
    js = nc.jetstream()

    async def seal() -> Seal | None:
        return await seal_stream(js, settings, signer)

    sealer = Sealer(seal, interval_s or settings.seal_interval_s, on_seal=on_seal)
    return RunningSealer(nc, asyncio.create_task(sealer.run()))
