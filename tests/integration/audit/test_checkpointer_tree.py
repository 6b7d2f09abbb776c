"""The checkpointer's tree kept between rounds (``lintas up``'s, ``lintas checkpoint --every``),
grown by each round's new messages only, gives the roots a rebuild from the stream gives.

On a secured bus, as a deployment runs it: the checkpointer connected as the platform with the
sealer's key, the log written by admission's identity (the log's only writer), the stream read
back as the auditor; the checkpointer restarted midway, so its second life rebuilds the tree
from the stream once and then grows it again."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lintas.audit import StreamReader, read_checkpoints
from lintas.audit import checkpoints as checkpoints_module
from lintas.audit.checkpointer import RunningCheckpointer, start_checkpointer
from lintas.audit.checkpoints import Checkpoint
from lintas.audit.logtree import hash_bytes
from lintas.audit.merkle import Tree, leaf_hash, root_of
from lintas.contracts import message_hash, new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.keys.signing import (
    Verifier,
    ensure_agency_key,
    ensure_sealer_key,
    load_registry,
    publish_registry,
)
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from lintas.infra.reads import ReadService
from tests.support.audit import OPENED
from tests.support.secured import (
    AGENCIES,
    Client,
    Hub,
    admission_running,
    agency_publisher,
    secured_hub,
)

pytestmark = pytest.mark.nats


async def _afresh(hub: Hub) -> tuple[Tree, list[dict[str, tuple[int, str]]]]:
    """The log's tree and, after each message, every case's head: read from the stream as the
    auditor and built with :mod:`lintas.audit.merkle` alone, not the checkpointer's code."""
    auditor = await Client.open(hub.url, hub.settings, "auditor")
    try:
        reader = StreamReader(auditor.js(), hub.settings.stream, consumer=False)  # no consumer
        tree, heads, after = Tree(), dict[str, tuple[int, str]](), [{}]
        async for stored in reader.events(await reader.cut()):
            assert stored.seq == tree.size + 1
            hashed = message_hash(stored.body)
            tree.append(leaf_hash(hash_bytes(hashed)))
            tokens = stored.subject.split(".")  # lintas.<source>.<target>.<a>.<b>.<case>
            if len(tokens) == 6:
                heads[tokens[5]] = (stored.seq, hashed)
            after.append(dict(heads))
        return tree, after
    finally:
        await auditor.close()


def _cases_root(heads: dict[str, tuple[int, str]]) -> bytes:
    return root_of(
        [leaf_hash(f"{c} {seq} {hashed}".encode()) for c, (seq, hashed) in sorted(heads.items())]
    )


async def test_the_tree_kept_between_rounds_gives_the_roots_a_rebuild_from_the_stream_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where each round's tree grew from: 1 is a rebuild from the stream, anything else the
    # kept tree grown by what is new.
    grown_from: list[int] = []
    real_grow = checkpoints_module._grow

    async def grow(reader: Any, tree: Any, stream: str, first: int, *rest: Any) -> None:
        grown_from.append(first if tree.size == 0 else -first)
        await real_grow(reader, tree, stream, first, *rest)

    monkeypatch.setattr(checkpoints_module, "_grow", grow)

    async with secured_hub(tmp_path) as hub, contextlib.AsyncExitStack() as stack:
        settings = hub.settings
        platform = await Client.open(hub.url, settings, "platform")
        stack.push_async_callback(platform.close)
        await declare_platform(platform.js(), settings, deployment_consumers(AGENCIES))
        for agency in AGENCIES:
            ensure_agency_key(settings, agency)
        await publish_registry(platform.js(), load_registry(settings))
        reads = ReadService(
            platform.conn,
            platform.js(),
            settings.stream,
            verifier=Verifier(load_registry(settings)),
        )
        await reads.start()
        stack.push_async_callback(reads.stop)
        await stack.enter_async_context(admission_running(hub))
        kemlu = await Client.open(hub.url, settings, "kemlu")
        stack.push_async_callback(kemlu.close)
        publisher = agency_publisher(kemlu, settings)
        writer = await Client.open(hub.url, settings, "admission")  # the log's only writer
        stack.push_async_callback(writer.close)
        sealer = ensure_sealer_key(settings)[0]
        checkpointed: asyncio.Queue[Checkpoint] = asyncio.Queue()
        case_ids: list[str] = []

        async def opened(count: int) -> int:
            for _ in range(count):
                case_ids.append(new_case_id())
                published = await publisher.publish(
                    "case.opened",
                    OPENED,
                    case_id=case_ids[-1],
                    target="kp2mi",
                    time=datetime.now(UTC),
                )
            return int(published.stream_seq)

        async def requested(case_id: str) -> int:
            # A later event of an earlier case: its head moves, not only new heads appear.
            published = await publisher.publish(
                "document.requested",
                {"request_id": f"doc-{new_case_id()}", "kind": "nik"},
                case_id=case_id,
                target="dukcapil",
                time=datetime.now(UTC),
            )
            return int(published.stream_seq)

        async def not_an_event(case_id: str) -> int:
            # What admission could never have written: it keeps its place in the log, and
            # in its case's head.
            subject = f"lintas.kemlu.kp2mi.case.noted.{case_id}"
            ack = await writer.js().publish(subject, b"not an event", stream=settings.stream)
            return int(ack.seq)

        async def start() -> RunningCheckpointer:
            return await start_checkpointer(
                Parts(settings, hub.url),
                sealer,
                interval_s=0.05,
                on_checkpoint=checkpointed.put_nowait,
            )

        async def covered(last: int) -> None:
            """Await the round whose checkpoint covers the log up to ``last``."""
            async with asyncio.timeout(30):
                while (await checkpointed.get()).last_seq < last:
                    pass

        running = await start()
        await covered(await opened(3))
        await covered(await requested(case_ids[0]))
        await opened(1)
        await covered(await not_an_event(case_ids[1]))
        await running.stop()
        # Published while no checkpointer runs; the next one rebuilds the tree afresh.
        await opened(2)
        await requested(case_ids[2])
        running = await start()
        try:
            await covered(await requested(case_ids[0]))
            await covered(await not_an_event(case_ids[-1]))
            await covered(await opened(2))
        finally:
            await running.stop()
        stored = await read_checkpoints(platform.js(), settings)
        tree, heads_after = await _afresh(hub)

    assert len(stored) >= 6
    assert stored[-1].last_seq == tree.size
    for checkpoint in stored:
        size = checkpoint.last_seq
        assert (checkpoint.tree_size, checkpoint.root_hash) == (size, tree.root(size)), checkpoint
        heads = heads_after[size]
        assert (checkpoint.cases_size, checkpoint.cases_root) == (
            len(heads),
            _cases_root(heads),
        ), checkpoint
    # Each life of the checkpointer rebuilt its tree once, from the stream (1, then 1 again
    # after the restart: the last checkpoint's range), and every other round grew the kept
    # tree by what was new only.
    rebuilds = [g for g in grown_from if g == 1]
    assert len(rebuilds) == 2, grown_from
    assert len([g for g in grown_from if g < 0]) >= len(stored) - 1, grown_from
