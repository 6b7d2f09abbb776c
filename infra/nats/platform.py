"""Everything a lintas deployment declares on the bus, in one call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lintas.infra.nats.checkpoints import checkpoints_stream, ensure_checkpoints
from lintas.infra.nats.quarantine import ensure_quarantine, quarantine_stream
from lintas.infra.nats.topology import ConsumerSpec, declare
from lintas.infra.privacy.casekeys import case_keys_stream, ensure_case_keys
from lintas.infra.settings import Settings

__all__ = ["declare_platform"]


async def declare_platform(
    js: Any, settings: Settings, specs: Iterable[ConsumerSpec]
) -> dict[str, str]:
    """The event stream and its consumers, then the quarantine stream they rely on:
    a consumer that cannot quarantine a poison message stalls rather than drop it; the
    checkpoints stream (``lintas checkpoint``); and the case key store (``LINTAS_CASE_KEYS``)."""
    outcome = await declare(js, settings, specs)
    outcome[quarantine_stream(settings)] = await ensure_quarantine(js, settings)
    outcome[checkpoints_stream(settings)] = await ensure_checkpoints(js, settings)
    outcome[case_keys_stream()] = await ensure_case_keys(js, settings)
    return outcome
