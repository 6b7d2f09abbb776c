"""Checkpoints published on a timer: the platform's own checkpoints, without a cron job.

``lintas up`` runs a :class:`Checkpointer` every ``LINTAS_CHECKPOINT_INTERVAL_S`` seconds (0:
never), and ``lintas checkpoint --every SECONDS`` runs one on any host with the platform's
credentials and the sealer's key (checkpoints are the sealer's alone); the period counts
from the end of each round. A round reads the newest checkpoint and the events after it
(:func:`~lintas.audit.checkpoints.checkpoint_stream`), so its cost follows the traffic, and
publishes nothing when there is nothing new. The log's Merkle tree is kept between rounds as
its frontier (O(log n) hashes) and one head per case; the first round after a start rebuilds
it by reading the stream once.

A round that fails is logged and the next round tries again: as warnings an outage of the bus
(``checkpoint.deferred``) and another checkpointer storing its checkpoint first
(``checkpoint.raced``), as an error anything else (``checkpoint.failed``: a key that does not hold,
say). Logs name sequences, counts and agencies, never an event's content."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from lintas.audit.checkpoints import Checkpoint, CheckpointRaced, checkpoint_stream
from lintas.audit.logtree import LogTree
from lintas.contracts import TransientError
from lintas.infra.bootstrap import Parts
from lintas.infra.keys.signing import SEALER, Signer, register_keys
from lintas.infra.nats.background import Background

__all__ = ["Checkpointer", "RunningCheckpointer", "start_checkpointer"]

_log = structlog.get_logger("lintas.checkpointer")


class Checkpointer:
    """Checkpoints by ``checkpoint`` every ``interval_s`` seconds (after each round) until
    cancelled."""

    def __init__(
        self,
        checkpoint: Callable[[], Awaitable[Checkpoint | None]],
        interval_s: float,
        *,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(
                f"a checkpointer's interval must be more than 0 seconds, not {interval_s}"
            )
        self._checkpoint = checkpoint
        self._interval = interval_s
        self._on_checkpoint = on_checkpoint

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self._interval)  # the period itself, not a wait on anything

    async def round(self) -> Checkpoint | None:
        """One checkpoint of what is new, or None (nothing new, or the round failed: logged)."""
        try:
            checkpoint = await self._checkpoint()
            if checkpoint is not None:
                _log.info(
                    "checkpoint.published",
                    stream=checkpoint.stream,
                    first_seq=checkpoint.first_seq,
                    last_seq=checkpoint.last_seq,
                    count=checkpoint.count,
                    checkpoint_seq=checkpoint.seq,
                    signed_by=checkpoint.signed_by,
                )
                if self._on_checkpoint is not None:
                    self._on_checkpoint(checkpoint)
        except TransientError as exc:
            _log.warning("checkpoint.deferred", error=str(exc))
            return None
        except CheckpointRaced as exc:
            _log.warning("checkpoint.raced", error=str(exc))
            return None
        except Exception as exc:
            _log.error("checkpoint.failed", error=f"{exc.__class__.__name__}: {exc}")
            return None
        return checkpoint


class RunningCheckpointer(Background):
    """A checkpointer running in the background on its own connection; :meth:`stop` ends both."""


async def start_checkpointer(
    parts: Parts,
    signer: Signer,
    *,
    interval_s: float | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> RunningCheckpointer:
    """Checkpoint every ``interval_s`` (default ``checkpoint_interval_s``) seconds with
    ``signer``'s key (the sealer's), connected as the platform, which alone may write the
    checkpoints stream; the key is put into the bus's registry first."""
    js: Any = None
    # The log's tree between rounds: O(log n) hashes and one head per case, so a round reads
    # only what is new; rebuilt from the stream on the first round (and after a failed one).
    tree = LogTree()

    async def checkpoint() -> Checkpoint | None:
        return await checkpoint_stream(js, parts.settings, signer, tree=tree)

    interval = parts.settings.checkpoint_interval_s if interval_s is None else interval_s
    checkpointer = Checkpointer(
        checkpoint, interval, on_checkpoint=on_checkpoint
    )  # a bad interval, before connecting
    if signer.agency != SEALER:
        raise ValueError(f"checkpoints are signed by the {SEALER} only, not by {signer.agency}")
    nc = await parts.connect("platform", name="lintas-checkpointer", reconnect_forever=True)
    js = parts.jetstream(nc, "platform")
    try:
        # Its key in the platform's registry before it signs anything.
        await register_keys(parts.settings, js)
    except BaseException:
        await nc.close()
        raise
    return RunningCheckpointer(nc, asyncio.create_task(checkpointer.run()))
