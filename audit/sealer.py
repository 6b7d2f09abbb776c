"""Seals published on a timer: the platform's own checkpoints, without a cron job.

``lintas up`` runs a :class:`Sealer` every ``LINTAS_SEAL_INTERVAL_S`` seconds (0: never),
and ``lintas seal --every SECONDS`` runs one on any host with the platform's credentials
and the sealing agency's key; the period counts from the end of each round. A round reads
the newest seal and the events after it (:func:`~lintas.audit.seals.seal_stream`), so its
cost follows the traffic, and publishes nothing when there is nothing new.

A round that fails is logged and the next round tries again: as warnings an outage of the
bus (``seal.deferred``) and another sealer storing its seal first (``seal.raced``), as an
error anything else (``seal.failed``: a key that does not hold, say). Logs name sequences,
counts and agencies, never an event's content."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from lintas.audit.seals import Seal, SealRaced, seal_stream
from lintas.contracts import TransientError
from lintas.infra.keys.signing import Signer
from lintas.infra.nats.background import Background
from lintas.infra.nats.bus import connect
from lintas.infra.settings import Settings

__all__ = ["RunningSealer", "Sealer", "start_sealer"]

_log = structlog.get_logger("lintas.sealer")


class Sealer:
    """Seals by ``seal`` every ``interval_s`` seconds (after each round) until cancelled."""

    def __init__(
        self,
        seal: Callable[[], Awaitable[Seal | None]],
        interval_s: float,
        *,
        on_seal: Callable[[Seal], None] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"a sealer's interval must be more than 0 seconds, not {interval_s}")
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
        except TransientError as exc:
            _log.warning("seal.deferred", error=str(exc))
            return None
        except SealRaced as exc:
            _log.warning("seal.raced", error=str(exc))
            return None
        except Exception as exc:
            _log.error("seal.failed", error=f"{exc.__class__.__name__}: {exc}")
            return None
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
    js: Any = None

    async def seal() -> Seal | None:
        return await seal_stream(js, settings, signer)

    interval = settings.seal_interval_s if interval_s is None else interval_s
    sealer = Sealer(seal, interval, on_seal=on_seal)  # a bad interval, before connecting
    nc = await connect(
        url, "lintas-sealer", settings=settings, identity="platform", reconnect_forever=True
    )
    js = nc.jetstream()
    return RunningSealer(nc, asyncio.create_task(sealer.run()))
