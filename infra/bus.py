"""How a lintas command finds the bus: ``lintas demo`` then ``lintas export`` needs no setup.

In order: the configured ``LINTAS_NATS_URL``; else the embedded server already serving this
data directory (published in ``nats.url`` and ``nats.pid``); else an embedded server started
over the data directory's store for the duration of the command. An exclusive ``flock`` on
``nats.lock`` keeps two processes from starting two servers over one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.errors
from nats.aio.client import Client

from .embedded import LOG_NAME, EmbeddedNats
from .errors import BusUnavailable
from .settings import Settings

__all__ = [
    "LOCK_FILE",
    "PID_FILE",
    "URL_FILE",
    "connect",
    "embedded_url",
    "open_bus",
    "servers",
]

URL_FILE = "nats.url"
PID_FILE = "nats.pid"
LOCK_FILE = "nats.lock"

# How long a process that finds the lock taken waits for the holder to publish its URL:
# longer than EmbeddedNats.start's own timeout, so a slow start is not mistaken for a hang.
_LOCK_WAIT_S = 15.0
_POLL_S = 0.05
_PROBE_TIMEOUT_S = 0.5


def _read_published(data_dir: Path) -> tuple[str, int] | None:
    try:
        url = (data_dir / URL_FILE).read_text().strip()
        pid = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return (url, pid) if url else None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _publish(data_dir: Path, url: str, pid: int) -> None:
    # The pid first: readers take the URL file's presence to mean both are there.
    _write_atomically(data_dir / PID_FILE, f"{pid}\n")
    _write_atomically(data_dir / URL_FILE, f"{url}\n")


def _unpublish(data_dir: Path, url: str, pid: int) -> None:
    """Remove the files only if still ours: a later server may have replaced them."""
    if _read_published(data_dir) == (url, pid):
        for name in (URL_FILE, PID_FILE):
            (data_dir / name).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


async def _accepts_tcp(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return False
    if not host or not port:
        return False
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _quiet(_exc: Exception) -> None:
    """nats-py logs every failed attempt with a traceback; the caller reports once."""


def servers(url: str) -> list[str]:
    """``LINTAS_NATS_URL`` may list a cluster's nodes, comma-separated: any one that is up
    gets the client in, and it learns the rest."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, name: str, *, attempts: int = 3) -> Client:
    """Connect to ``url`` or raise :class:`BusUnavailable` within a few seconds.

    nats-py's defaults retry a refused first connection for about two minutes and log a
    traceback each time; a command someone is waiting on should say so at once.
    """
    try:
        return await nats.connect(
            servers=servers(url),
            name=name,
            connect_timeout=2,
            max_reconnect_attempts=attempts,
            reconnect_time_wait=0.5,
            error_cb=_quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"cannot reach NATS at {url} ({exc.__class__.__name__})") from None


async def embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded server serving ``data_dir``, if one is alive; stale files say None.

    Both checks are needed: a pid alone may have been recycled by an unrelated process, and
    a port alone may since belong to another server.
    """
    published = _read_published(data_dir)
    if published is None:
        return None
    url, pid = published
    if _pid_alive(pid) and await _accepts_tcp(url):
        return url
    return None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def _lock_or_url(settings: Settings) -> int | str:
    """The lock on the data dir (ours to start a server), or the URL its holder published."""
    data_dir = settings.data_dir
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LOCK_WAIT_S
    locked = False
    try:
        while not (locked := _try_lock(fd)):
            url = await embedded_url(data_dir)
            if url is not None:
                return url
            if loop.time() >= deadline:
                raise BusUnavailable(
                    f"another process holds {data_dir / LOCK_FILE} but published no NATS URL "
                    f"within {_LOCK_WAIT_S:g}s; see {settings.nats_store_dir / LOG_NAME}"
                )
            await asyncio.sleep(_POLL_S)
        return fd
    finally:
        if not locked:
            os.close(fd)


@asynccontextmanager
async def open_bus(settings: Settings) -> AsyncIterator[str]:
    """Yield the NATS URL to use, starting the embedded server for the block if need be.

    Processes that reuse another's embedded server do not keep it alive: it stops when the
    process that started it ends.
    """
    if settings.nats_url:
        yield settings.nats_url
        return
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # Also finds a server orphaned by a killed lintas process (it outlives its lock): reusing
    # it is safe, while a second server over the same store is not.
    url = await embedded_url(data_dir)
    if url is not None:
        yield url
        return
    got = await _lock_or_url(settings)
    if isinstance(got, str):
        yield got
        return
    try:
        server = EmbeddedNats(settings.nats_store_dir, binary=settings.nats_server_bin)
        async with server:
            url, pid = server.url, server.pid
            assert pid is not None
            _publish(data_dir, url, pid)
            try:
                yield url
            finally:
                _unpublish(data_dir, url, pid)
    finally:
        os.close(got)  # releases the flock
