"""How a lintas command finds the bus: ``lintas demo`` then ``lintas export`` needs no setup.

In order: the configured ``LINTAS_NATS_URL``; else the embedded server already serving this
data directory (published in ``nats.url`` and ``nats.pid``); else an embedded server started
over the data directory's store for the duration of the command. An exclusive ``flock`` on
``nats.lock`` keeps two processes from starting two servers over one store.

The embedded server keeps its port per data directory (``nats.port``, kept when it stops):
started again, by its owner when it dies or by the next command, it listens where it did, so
the long-running processes that were using it reconnect to it where they are
(:mod:`lintas.infra.nats.outage`). Only when that port has been taken meanwhile does it
take another, and they exit for their supervisor to restart them.

The embedded server runs with authorization on, like a deployment: before it starts (or
when it already runs and an agency is new), every role and agency the command needs gets
an identity in the data directory (:mod:`lintas.infra.nats.identities`), and the server runs
with the generated ``accounts.conf`` (reloaded with SIGHUP when it changes). The process
that starts the server also runs the read service agencies' publishers and consumers ask
(:mod:`lintas.infra.reads`), for as long as the server runs.

Errors::

    AccessRefused (permanent)          NATS refused the identity's credentials
    UnsupportedNatsServer (permanent)  the server is older than lintas needs
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import structlog
from nats.aio.client import Client

from lintas.contracts.errors import PermanentError
from lintas.infra.errors import BusUnavailable, note_denial, watch_denials
from lintas.infra.keys.signing import Registry, Verifier, trusted_registry
from lintas.infra.nats.access import ACCOUNT
from lintas.infra.nats.credentials import connect_options, js_options, uses_credentials
from lintas.infra.nats.embedded import (
    LOG_NAME,
    MIN_NATS_SERVER,
    EmbeddedNats,
    EmbeddedNatsError,
    PortInUse,
    UnsupportedNatsServer,
)
from lintas.infra.nats.headers import read_headers_fast
from lintas.infra.nats.identities import accounts_path, ensure_local_identities
from lintas.infra.nats.outage import Outage, end_tasks
from lintas.infra.reads import ReadService
from lintas.infra.settings import Settings

__all__ = [
    "LOCK_FILE",
    "PID_FILE",
    "PORT_FILE",
    "URL_FILE",
    "AccessRefused",
    "connect",
    "embedded_url",
    "log_nats_error",
    "open_bus",
    "platform_services",
    "read_service",
    "registry_source",
    "servers",
]

_log = structlog.get_logger("lintas.bus")


class AccessRefused(PermanentError):
    """NATS refused the credentials: an unknown or revoked nkey, a wrong password."""


URL_FILE = "nats.url"
PID_FILE = "nats.pid"
LOCK_FILE = "nats.lock"
PORT_FILE = "nats.port"

# How long a process that finds the lock taken waits for the holder to publish its URL:
# longer than EmbeddedNats.start's own timeout, so a slow start is not mistaken for a hang.
_LOCK_WAIT_S = 15.0
_POLL_S = 0.05
_PROBE_TIMEOUT_S = 0.5
_RESTART_BACKOFF_S = 1.0


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


def log_nats_error(identity: str) -> Callable[[Exception], Awaitable[None]]:
    """An ``error_cb`` that says when the server refused something as not permitted.

    nats-py reports a permissions violation only here (the request itself just times out),
    so this log line is where an operator sees a misconfigured or misbehaving identity.
    """

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            _log.warning("nats.permission_denied", identity=identity, detail=str(exc))

    return on_error


def servers(url: str) -> list[str]:
    """``LINTAS_NATS_URL`` may list a cluster's nodes, comma-separated: any one that is up
    gets the client in, and it learns the rest."""
    return [part.strip() for part in url.split(",") if part.strip()]


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or (
        "authorization violation" in str(exc).lower()
    )


async def connect(
    url: str,
    name: str,
    *,
    settings: Settings | None = None,
    identity: str | None = None,
    attempts: int = 3,
    reconnect_forever: bool = False,
    outage: Outage | None = None,
) -> Client:
    """Connect to ``url`` as ``identity`` (its nkey from ``settings``' credentials dir,
    TLS as configured), or raise :class:`BusUnavailable` within a few seconds, or
    :class:`AccessRefused` if the server refuses the credentials.

    nats-py's defaults retry a refused first connection for about two minutes and log a
    traceback each time; a command someone is waiting on should say so at once.

    ``reconnect_forever``: the first connection still fails fast, but once connected the
    client never gives up reconnecting (processes that run for long: the watchdog's
    ticker, ``lintas watch``). ``attempts=-1`` would also retry the *first* connection
    forever, hanging a command whose bus is down.

    ``outage``: the process's (:class:`~lintas.infra.nats.outage.Outage`), which then
    follows this connection: away for too long, the process gives up for its supervisor.
    """
    options: dict[str, Any] = connect_options(settings, identity) if settings else {}
    if outage is not None:
        options |= outage.follow(name)
    refusals: list[Exception] = []
    denials: list[str] = []
    log_error = log_nats_error(identity or name)

    async def on_error(exc: Exception) -> None:
        if _refused(exc):
            refusals.append(exc)
        if "permissions violation" in str(exc).lower():
            note_denial(denials, f"{identity or name}: {exc}")
        await log_error(exc)

    try:
        nc = await nats.connect(
            servers=servers(url),
            name=name,
            connect_timeout=2,
            max_reconnect_attempts=attempts,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            **options,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        if refusals or _refused(exc):
            who = identity or "an anonymous client"
            if "nkeys_seed" in options:
                how = f"the nkey in {options['nkeys_seed']}"
            elif settings is not None and identity is not None:
                how = f"no credentials (no {identity}.nk in {settings.nkeys_dir})"
            else:
                how = "no credentials"
            raise AccessRefused(
                f"NATS at {url} refused {who}, which presented {how}: is its public key in "
                "the server's authorization (`lintas agency add`, `lintas infra config`)?"
            ) from None
        raise BusUnavailable(f"cannot reach NATS at {url} ({exc.__class__.__name__})") from None
    await _refuse_old_server(nc, url)
    # What the server refuses this client, for bus_errors(..., nc) to tell from a timeout.
    watch_denials(nc, denials)
    read_headers_fast(nc)
    if reconnect_forever:
        # nats-py reads the option afresh on every reconnect.
        nc.options["max_reconnect_attempts"] = -1
    return nc


def registry_source(
    url: str, settings: Settings, identity: str
) -> Callable[[], Awaitable[Registry]]:
    """What a long-running :class:`~lintas.infra.keys.signing.Verifier` refreshes from: the
    registry :func:`~lintas.infra.keys.signing.trusted_registry` reads, on a short connection of
    its own as ``identity`` (a refresh is rare: the runner's may be busy or reconnecting)."""

    async def read() -> Registry:
        nc = await connect(url, f"lintas-{identity}-keys", settings=settings, identity=identity)
        try:
            return await trusted_registry(settings, nc.jetstream(**js_options(identity)))
        finally:
            await nc.close()

    return read


async def _refuse_old_server(nc: Client, url: str) -> None:
    """An older server accepts what lintas sends and does something else with it (ignores a
    consumer's ``filter_subjects``, or the case filter that holds a publish to the head of
    the case's hash chain): refuse it before anything is declared or published."""
    version = nc.connected_server_version
    try:
        found = (version.major, version.minor, version.patch)
    except ValueError:  # a version nats-py cannot parse: not one lintas can vouch for
        found = None
    if found is not None and found >= MIN_NATS_SERVER:
        return
    await nc.close()
    shown = "an unknown version" if found is None else "v" + ".".join(map(str, found))
    minimum = ".".join(map(str, MIN_NATS_SERVER))
    raise UnsupportedNatsServer(
        f"NATS at {url} is nats-server {shown}; lintas needs nats-server >= {minimum} "
        "(with JetStream): upgrade the server, or unset LINTAS_NATS_URL to use the embedded one"
    )


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


def _adopt_global_store(store_dir: Path) -> None:
    """Streams made before authorization was on belong to the global account ``$G``; with
    accounts they belong to ``LINTAS``. JetStream keeps each account's streams in a
    directory of its name, so the older store is renamed once, before the server starts."""
    jetstream = store_dir / "jetstream"
    old, new = jetstream / "$G", jetstream / ACCOUNT
    if old.is_dir() and not new.exists():
        old.rename(new)
        _log.warning("bus.store_adopted", moved=str(old), to=str(new))


async def _reload(settings: Settings, url: str, added: list[str]) -> None:
    """Make the running embedded server read the regenerated ``accounts.conf`` (SIGHUP), and
    wait until it lets the first new identity in."""
    try:
        pid = int((settings.data_dir / PID_FILE).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return  # not ours to signal, or gone: a server started later reads the file anyway
    probes = [name for name in added if uses_credentials(settings, name)]
    if not probes:
        return  # keys registered from elsewhere: nothing here to log in with
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LOCK_WAIT_S
    while True:
        try:
            nc = await connect(url, "lintas-reload-probe", settings=settings, identity=probes[0])
        except AccessRefused:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(_POLL_S)  # the server reloads in its own time: no event to await
            continue
        await nc.close()
        return


@asynccontextmanager
async def read_service(
    settings: Settings, url: str, *, run: bool = True, outage: Outage | None = None
) -> AsyncIterator[ReadService | None]:
    """The read service, as the platform, for the block (nothing if not ``run``: None).

    Every process using the embedded bus runs one (they share the work as a queue group),
    so agencies always have one; on a configured cluster ``lintas up`` / ``lintas run reads``
    run it. ``outage``: the process's, following its connection (:func:`connect`).
    """
    if not run:
        yield None
        return
    nc = await connect(
        url,
        "lintas-reads",
        settings=settings,
        identity="platform",
        reconnect_forever=True,
        outage=outage,
    )
    js = nc.jetstream()
    # Whom a case's owner is, it counts from signed events only, as the record does.
    verifier = Verifier(
        await trusted_registry(settings, js), refresh=registry_source(url, settings, "platform")
    )
    service = ReadService(nc, js, settings.stream, verifier=verifier)
    try:
        await service.start()
        yield service
    finally:
        await service.stop()
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.close()


@asynccontextmanager
async def platform_services(
    settings: Settings, url: str, *, run: bool = True
) -> AsyncIterator[ReadService | None]:
    """What every agency needs of the platform, for the block (nothing if not ``run``): the
    read service, and admission, the only writer of the event log.

    Every process using the embedded bus runs both (read requests are shared as a queue
    group, intake partitions by lease), so an agency on it always has them; on a configured
    cluster ``lintas up`` runs both, and a deployment ``lintas run reads`` (or ``run
    platform``) and ``lintas run admission``, each as its own identity. Yields the read
    service (its health is the process's too).
    """
    # Admission is built on infra, not the other way round: imported when a process runs it.
    from lintas.admission.running import admission_service

    async with (
        read_service(settings, url, run=run) as reads,
        admission_service(settings, url, run=run),
    ):
        yield reads


@asynccontextmanager
async def open_bus(
    settings: Settings, *, agencies: Iterable[str] = (), changed: Iterable[str] = ()
) -> AsyncIterator[str]:
    """Yield the NATS URL to use, starting the embedded server for the block if need be.

    On the embedded bus, ``agencies`` (and ``LINTAS_AGENCIES``) get identities first, and
    the platform's services (:func:`platform_services`) run for the block; ``changed``
    names identities whose keys were just changed (``lintas agency add``), which a running
    server must reload to let in.
    Processes that reuse another's embedded server do not keep it alive: it stops when the
    process that started it ends.
    """
    if settings.nats_url:
        yield settings.nats_url
        return
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    added = ensure_local_identities(settings, dict.fromkeys((*settings.agencies, *agencies)))
    added += [name for name in changed if name not in added]
    # Also finds a server orphaned by a killed lintas process (it outlives its lock): reusing
    # it is safe, while a second server over the same store is not.
    url = await embedded_url(data_dir)
    if url is None:
        got = await _lock_or_url(settings)
        if isinstance(got, int):
            async with _own_server(settings, got) as url:
                yield url
            return
        url = got
    if added:
        await _reload(settings, url, added)
    async with platform_services(settings, url):
        yield url


def _remembered_port(data_dir: Path) -> int | None:
    try:
        port = int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


async def _start_embedded(settings: Settings) -> EmbeddedNats:
    """The data directory's server, on the port it had (any free one the first time, or
    when that one has been taken meanwhile); the port is remembered for the next start."""
    data_dir = settings.data_dir
    remembered = _remembered_port(data_dir)
    for port in dict.fromkeys((remembered, None)):
        server = EmbeddedNats(
            settings.nats_store_dir,
            port=port,
            binary=settings.nats_server_bin,
            config=accounts_path(settings),
            client_options=connect_options(settings, "platform"),
        )
        try:
            await server.start()
        except PortInUse:
            _log.warning("bus.port_taken", port=port, data_dir=str(data_dir))
            continue
        chosen = urlsplit(server.url).port
        if chosen != remembered:
            _write_atomically(data_dir / PORT_FILE, f"{chosen}\n")
        return server
    raise AssertionError("unreachable: a server on a free port raises, it is not PortInUse")


async def _keep_serving(settings: Settings, box: list[EmbeddedNats]) -> None:
    """Start the server again, on its port, whenever it dies under its owner: processes
    using it reconnect on their own (docs/OPERATIONS.md, "when the bus goes away")."""
    data_dir = settings.data_dir
    while True:
        server = box[0]
        url, pid = server.url, server.pid
        assert pid is not None
        code = await server.exited()
        _log.error("bus.server_died", exit_code=code, log=str(server.log_path))
        await server.stop()
        while True:
            try:
                box[0] = await _start_embedded(settings)
                break
            except EmbeddedNatsError as exc:
                _log.error("bus.server_restart_failed", error=str(exc))
                await asyncio.sleep(_RESTART_BACKOFF_S)  # nothing to await: try again later
        new = box[0]
        assert new.pid is not None
        _unpublish(data_dir, url, pid)
        _publish(data_dir, new.url, new.pid)
        _log.warning("bus.server_restarted", url=new.url, pid=new.pid)


@asynccontextmanager
async def _own_server(settings: Settings, lock_fd: int) -> AsyncIterator[str]:
    data_dir = settings.data_dir
    try:
        _adopt_global_store(settings.nats_store_dir)
        box = [await _start_embedded(settings)]
        keeper: asyncio.Task[None] | None = None
        try:
            url, pid = box[0].url, box[0].pid
            assert pid is not None
            _publish(data_dir, url, pid)
            keeper = asyncio.create_task(_keep_serving(settings, box))
            try:
                async with platform_services(settings, url):
                    yield url
            finally:
                await end_tasks([keeper])
                server = box[0]
                if server.pid is not None:
                    _unpublish(data_dir, server.url, server.pid)
        finally:
            await box[0].stop()
    finally:
        os.close(lock_fd)  # releases the flock
