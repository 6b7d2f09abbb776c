"""``lintas rebuild CONSUMER``: drop a projection and rebuild it from the log.

What happens on start when a projection's tables no longer match the code
(:mod:`lintas.consumers.rebuild`), on an operator's word: for a projection that is wrong
for another reason (a fold fixed without a schema change, a database restored from an old
backup). Run as the consumer's own identity (the platform for ``record`` and ``watchdog``,
the agency for its worklist, reading through the read service where it may not read the
stream), with the consumer stopped.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.engine import Engine

from lintas.cli._errors import fail
from lintas.consumers.app import Databases
from lintas.consumers.deadlines import DeadlinePolicy
from lintas.consumers.projections import Projection, RecordProjection, WorklistProjection
from lintas.consumers.rebuild import Rebuilt, build_of, catch_up, reset
from lintas.consumers.runner import ProjectionRunner
from lintas.consumers.watchdog import WatchdogProjection
from lintas.contracts import WATCHDOG, is_agency_id
from lintas.infra.bootstrap import Parts
from lintas.infra.db import TablesBusy, hold_tables
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import Verifier, trusted_registry
from lintas.infra.nats.bus import open_bus
from lintas.infra.nats.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_of,
    agency_sent_consumer,
    record_consumer,
    watchdog_consumer,
)
from lintas.infra.reads import ServiceReads
from lintas.infra.settings import Settings

__all__ = ["run_rebuild"]


@dataclass(frozen=True)
class _Target:
    """A projection, where it is kept, the consumers that feed it, and who they run as."""

    title: str
    database: str
    projection: Projection
    specs: tuple[ConsumerSpec, ...]
    identity: str
    agency: str | None = None


def _target(settings: Settings, name: str) -> _Target | None:
    if name == "record":
        return _Target(
            "the coordination record",
            "record",
            RecordProjection(),
            (record_consumer(),),
            "platform",
        )
    if name == WATCHDOG:
        projection = WatchdogProjection(DeadlinePolicy.from_settings(settings))
        return _Target(
            "the watchdog's deadlines", WATCHDOG, projection, (watchdog_consumer(),), "platform"
        )
    agency = agency_of(name) or name
    if not is_agency_id(agency):
        return None
    return _Target(
        f"the worklist of {agency}",
        f"worklist-{agency}",
        WorklistProjection(agency),
        (agency_consumer(agency), agency_sent_consumer(agency)),
        agency,
        agency,
    )


# A consumer stopped a moment ago leaves its last pull request until that expires (FastStream
# asks for a batch at a time, for at most a few seconds).
_STOPPED_WITHIN_S = 5.0
_IDLE_LOOKS = 3


async def _pulling(js: Any, settings: Settings, consumer: str) -> int | None:
    """How many pull requests wait on ``consumer`` once a stopped instance's have expired:
    0 when nobody consumes it (none seen in a few looks in a row: a running instance asks
    again as soon as a request ends), more while an instance runs (one busy applying a
    long batch asks for nothing meanwhile, and is not seen: the check guards, it does not
    lock). None when there is no such consumer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _STOPPED_WITHIN_S
    idle = 0
    while True:
        with bus_errors(f"reading consumer {consumer}"):
            try:
                info = await js.consumer_info(settings.stream, consumer)
            except nats.js.errors.NotFoundError:
                return None
        waiting = int(info.num_waiting or 0)
        idle = idle + 1 if not waiting else 0
        if idle >= _IDLE_LOOKS:
            return 0
        if waiting and loop.time() > deadline:
            return waiting
        await asyncio.sleep(0.2)


async def run_rebuild(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    target = _target(settings, args.consumer)
    if target is None:
        fail(
            f"[red]{args.consumer!r} has no projection: name 'record', 'watchdog', or an "
            "agency (its worklist)[/red]",
            highlight=False,
        )
        return 2
    async with open_bus(settings, agencies=[target.agency] if target.agency else []) as url:
        parts = Parts(settings, url, service="lintas-rebuild")
        databases = Databases(settings)
        try:
            return await _rebuild(parts, databases, target, console)
        finally:
            databases.dispose()
            await parts.close()


async def _rebuild(parts: Parts, databases: Databases, target: _Target, console: Console) -> int:
    settings = parts.settings
    nc = await parts.connect(target.identity, name="lintas-rebuild")
    try:
        js = parts.jetstream(nc, target.identity)
        for spec in target.specs:
            waiting = await _pulling(js, settings, spec.name)
            if waiting is None:
                fail(
                    f"[red]there is no consumer {spec.name} on the bus: nothing to "
                    "rebuild from[/red]"
                )
                return 1
            if waiting:
                # A running instance would go on from the position it holds, over the
                # rebuilt tables: it must be stopped first (it catches up when started).
                fail(
                    f"[red]{spec.name} is being consumed ({waiting} pull requests "
                    "waiting): stop it first, then rebuild[/red]",
                    highlight=False,
                )
                return 1
        verifier = parts.trust(await trusted_registry(settings, js), target.identity)
        engine, sqlite_lock = databases.for_consumer(target.database)
        try:
            # The lock, where the look above only guards: no consumer of these tables
            # (nor another rebuild, nor a dlq retry) writes them until the rebuild ends,
            # and none starts meanwhile.
            release = hold_tables(engine, target.projection.name, exclusive=True)
        except TablesBusy as exc:
            fail(f"[red]{exc}[/red]", highlight=False)
            return 1
        try:
            done = await _replay(parts, target, js, nc, engine, sqlite_lock, verifier, console)
        finally:
            release()
    finally:
        await nc.close()
    _report(console, target, done)
    return 0


async def _replay(
    parts: Parts,
    target: _Target,
    js: Any,
    nc: Any,
    engine: Engine,
    sqlite_lock: asyncio.Lock | None,
    verifier: Verifier | None,
    console: Console,
) -> tuple[list[Rebuilt], list[str]]:
    """Reset the target's tables and apply its consumers' messages from the log; returns
    what each consumer did, and every consumer reset."""
    settings = parts.settings
    lock = sqlite_lock or asyncio.Lock()
    names = [spec.name for spec in target.specs]
    forgotten = await asyncio.to_thread(reset, engine, target.projection, settings.stream, names)
    reads = (
        ServiceReads(nc, target.agency) if target.agency and parts.secured(target.agency) else None
    )
    done: list[Rebuilt] = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for spec in target.specs:
            runner = ProjectionRunner(
                consumer=spec.name,
                stream=settings.stream,
                projection=target.projection,
                engine=engine,
                lock=lock,
                max_deliver=settings.max_deliver,
                verifier=verifier,
                agency=target.agency,
                tracer_provider=parts.tracer_provider,
                build=build_of(engine, spec.name, settings.stream),
            )
            task = progress.add_task(spec.name, total=None)

            def update(position: int, through: int, task: TaskID = task) -> None:
                progress.update(task, completed=position, total=through)

            rebuilt = await catch_up(runner, js, spec, settings, reads=reads, progress=update)
            assert rebuilt is not None  # the consumer was found above
            progress.update(task, completed=rebuilt.through, total=rebuilt.through)
            done.append(rebuilt)
    return done, forgotten


def _report(console: Console, target: _Target, result: tuple[list[Rebuilt], list[str]]) -> None:
    done, forgotten = result
    names = [spec.name for spec in target.specs]
    for rebuilt in done:
        console.print(
            f"{rebuilt.consumer}: {rebuilt.applied} events applied up to stream sequence "
            f"{rebuilt.through}, {rebuilt.rejected} quarantined",
            highlight=False,
        )
    console.print(f"rebuilt {target.title} from the log", highlight=False)
    others = [name for name in forgotten if name not in names]
    if others:
        console.print(
            f"also reset (they share its tables): {', '.join(others)}; each catches up from "
            "the log when it next starts: restart them",
            highlight=False,
        )
