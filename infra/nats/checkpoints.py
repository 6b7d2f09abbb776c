"""The checkpoints stream: signed checkpoints over ranges of the event stream (``lintas
checkpoint``).

``LINTAS_CHECKPOINTS`` (subject ``lintas_checkpoints.<event stream>``) holds one message per
checkpoint, in order; it denies delete and purge like the event stream. What a checkpoint holds and
how it is checked is :mod:`lintas.audit.checkpoints`; this module only declares the stream."""

from __future__ import annotations

from typing import Any

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from lintas.infra.nats.topology import ensure_stream_config
from lintas.infra.settings import Settings

__all__ = ["checkpoints_config", "checkpoints_stream", "checkpoints_subject", "ensure_checkpoints"]


def checkpoints_stream(settings: Settings) -> str:
    return f"{settings.stream}_CHECKPOINTS"


def checkpoints_subject(settings: Settings) -> str:
    return f"{settings.stream.lower()}_checkpoints.{settings.stream}"


def checkpoints_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=checkpoints_stream(settings),
        description="signed checkpoints (checkpoints) over ranges of the event stream",
        subjects=[f"{settings.stream.lower()}_checkpoints.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        deny_delete=True,
        deny_purge=True,
        duplicate_window=settings.duplicate_window_s,
        allow_direct=True,
        num_replicas=settings.stream_replicas,
    )


async def ensure_checkpoints(js: Any, settings: Settings) -> str:
    return await ensure_stream_config(js, checkpoints_config(settings))
