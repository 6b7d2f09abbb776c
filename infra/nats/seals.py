"""The seals stream: signed checkpoints over ranges of the event stream (``lintas seal``).

``LINTAS_SEALS`` (subject ``lintas_seals.<event stream>``) holds one message per seal, in
order; it denies delete and purge like the event stream. What a seal holds and how it is
checked is :mod:`lintas.audit.seals`; this module only declares the stream.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from lintas.infra.nats.topology import ensure_stream_config
from lintas.infra.settings import Settings

__all__ = ["ensure_seals", "seals_config", "seals_stream", "seals_subject"]


def seals_stream(settings: Settings) -> str:
    return f"{settings.stream}_SEALS"


def seals_subject(settings: Settings) -> str:
    return f"{settings.stream.lower()}_seals.{settings.stream}"


def seals_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=seals_stream(settings),
        description="signed checkpoints (seals) over ranges of the event stream",
        subjects=[f"{settings.stream.lower()}_seals.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        deny_delete=True,
        deny_purge=True,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        num_replicas=settings.stream_replicas,
    )


async def ensure_seals(js: Any, settings: Settings) -> str:
    return await ensure_stream_config(js, seals_config(settings))
