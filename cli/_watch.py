"""``lintas status [--json]`` and ``lintas watch``: the platform at a glance, for operators.

Both read the same snapshot (:mod:`lintas.consumers.status`); ``watch`` redraws it in
place with ``rich.live.Live`` on every sample (no auto-refresh thread: the picture
changes only when a new sample is in, so nothing flickers between samples).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lintas.cli._errors import fail
from lintas.cli._signals import stop_on_signals
from lintas.consumers.app import Databases
from lintas.consumers.status import (
    AGE_BUCKETS,
    BusSample,
    NothingRunYet,
    Status,
    StatusReads,
    build_status,
    read_projections,
    sample_bus,
    status_reads,
)
from lintas.contracts import TransientError
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.settings import Settings

__all__ = ["render_status", "run_status", "run_watch"]

_AGES = {"under_1d": "<1d", "1d_to_7d": "1-7d", "7d_to_30d": "7-30d", "over_30d": ">30d"}


def _require_store(settings: Settings) -> None:
    if settings.nats_url is None and not settings.nats_store_dir.exists():
        raise NothingRunYet(
            f"nothing has run yet in {settings.data_dir}: no event store there (start "
            "`lintas up`, or try `lintas demo`; or set LINTAS_NATS_URL / LINTAS_DATA_DIR)"
        )


async def _snapshot(
    js: Any,
    settings: Settings,
    databases: Databases,
    previous: BusSample | None,
    reads: StatusReads | None = None,
) -> tuple[Status, BusSample]:
    now = datetime.now(UTC)
    sample = await sample_bus(js, settings, now, reads)

    def engine_for(database: str) -> Any:
        return databases.for_consumer(database)[0]

    projections = await asyncio.to_thread(
        read_projections, engine_for, settings, settings.agencies, now
    )
    return build_status(settings, sample, previous, projections, settings.agencies, now), sample


# -- rendering --------------------------------------------------------------------------------


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:02.0f}h"


def _alert(text: str, bad: bool) -> Text:
    return Text(text, style="bold red" if bad else "")


def render_status(status: Status) -> RenderableType:
    stream = status.stream
    head = Text.assemble(
        ("lintas ", "bold"),
        (f"{stream.name}: {_count(stream.messages)} events", "bold cyan"),
        f" · {_rate(stream.events_per_second)}/s" if stream.events_per_second is not None else "",
        f" · {_size(stream.bytes)}" if stream.bytes is not None else "",
        " · quarantined ",
        _alert(f"{status.quarantined:,}", status.quarantined > 0),
        f" · {status.at:%Y-%m-%d %H:%M:%S} UTC",
    )
    agencies = Table(box=box.SIMPLE_HEAVY, title="agencies", title_justify="left")
    for name, justify in (
        ("agency", "left"),
        ("pending", "right"),
        ("unacked", "right"),
        ("lag", "right"),
        ("ev/s", "right"),
        ("open", "right"),
        *((_AGES[bucket], "right") for bucket, _ in AGE_BUCKETS),
        ("overdue", "right"),
        ("escalated", "right"),
        ("quarantined", "right"),
    ):
        agencies.add_column(name, justify=justify)  # type: ignore[arg-type]
    for agency, row in status.agencies.items():
        ages = [_count(row.open.by_age[b]) if row.open else "-" for b, _ in AGE_BUCKETS]
        agencies.add_row(
            agency,
            _count(row.pending),
            _count(row.ack_pending),
            _age(row.lag_s),
            _rate(row.events_per_second),
            _count(row.open.total if row.open else None),
            *ages,
            _alert(_count(row.overdue), bool(row.overdue)),
            _alert(_count(row.escalated), bool(row.escalated)),
            _alert(f"{row.quarantined:,}", row.quarantined > 0),
        )
    platform = Table(box=box.SIMPLE_HEAVY, title="platform consumers", title_justify="left")
    for name in ("consumer", "pending", "unacked", "lag", "ev/s"):
        platform.add_column(name, justify="left" if name == "consumer" else "right")
    for name, consumer in status.consumers.items():
        if name.startswith(("agency-", "sent-")):
            continue
        platform.add_row(
            name,
            _count(consumer.pending),
            _count(consumer.ack_pending),
            _age(consumer.lag_s),
            _rate(consumer.events_per_second),
        )
    watchdog = status.watchdog
    foot = (
        Text(
            f"watchdog: {watchdog.followed:,} hand-offs followed, {watchdog.open:,} open, "
            f"{watchdog.overdue:,} overdue, {watchdog.escalated:,} escalated to KPAI"
        )
        if watchdog is not None
        else Text("watchdog: not run yet on this data", style="dim")
    )
    problems = [Text(problem, style="yellow") for problem in status.problems]
    return Group(head, agencies, platform, foot, *problems)


# -- the commands -----------------------------------------------------------------------------


async def run_status(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.sample < 0:
        fail("[red]--sample must be 0 or more seconds[/red]")
        return 2
    _require_store(settings)
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-status", settings=settings, identity="operator")
        databases = Databases(settings)
        try:
            js = nc.jetstream()
            reads = status_reads(nc, js, settings)
            previous = None
            if args.sample > 0:
                previous = await sample_bus(js, settings, datetime.now(UTC), reads)
                await asyncio.sleep(args.sample)
            status, _ = await _snapshot(js, settings, databases, previous, reads)
        finally:
            databases.dispose()
            await nc.close()
    if args.json:
        console.print_json(data=status.to_json())
    else:
        console.print(render_status(status))
    return 0


async def run_watch(
    settings: Settings,
    args: argparse.Namespace,
    console: Console,
    *,
    frames: int | None = None,
) -> int:
    """Until Ctrl-C (or ``frames`` samples, for tests)."""
    if args.interval <= 0:
        fail("[red]--interval must be more than 0 seconds[/red]")
        return 2
    _require_store(settings)
    with stop_on_signals(enabled=frames is None) as stop:
        async with open_bus(settings) as url:
            # Reconnects forever: the dashboard says the bus is away, and carries on.
            nc = await connect(
                url, "lintas-watch", settings=settings, identity="operator", reconnect_forever=True
            )
            databases = Databases(settings)
            try:
                js = nc.jetstream()
                reads = status_reads(nc, js, settings)
                status, previous = await _snapshot(js, settings, databases, None, reads)
                shown = 1
                with Live(
                    render_status(status),
                    console=console,
                    auto_refresh=False,
                    redirect_stdout=False,
                    redirect_stderr=False,
                ) as live:
                    while frames is None or shown < frames:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), args.interval)
                        if stop.is_set():
                            break
                        try:
                            status, previous = await _snapshot(
                                js, settings, databases, previous, reads
                            )
                            view: RenderableType = render_status(status)
                        except TransientError as exc:
                            view = Group(
                                render_status(status),
                                Text(f"{exc}; showing the last sample, retrying", style="bold red"),
                            )
                        live.update(view, refresh=True)
                        shown += 1
            finally:
                databases.dispose()
                await nc.close()
    return 0
