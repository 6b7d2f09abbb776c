"""A bus with authorization on, from the configs lintas generates, for the access tests.

The hub is the shipped ``single-node.conf`` next to the generated ``accounts.conf`` and
``leafnodes.conf``, with a leaf-node listener; partners' leaf nodes are separate
nats-server processes running the generated partner config. :class:`Client` is one
connection as one identity that remembers what the server refused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS

from lintas.infra.deploy.config import PRODUCTION_DIR
from lintas.infra.nats.access import render_partner_leaf
from lintas.infra.nats.credentials import connect_options, js_options
from lintas.infra.nats.embedded import EmbeddedNats, find_nats_server
from lintas.infra.nats.identities import (
    accounts_path,
    ensure_local_identities,
    leaf_password_path,
    leaf_users_path,
    load_access,
)
from lintas.infra.nats.outage import end_reconnects
from lintas.infra.settings import Settings
from tests.support.cluster import SINGLE_NODE_CONFIG, free_ports

AGENCIES = ("kemlu", "dukcapil", "kp2mi", "desa-3525012001", "my-jkm")


class Client:
    """A connection as ``identity`` that records the errors the server sends it."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self.nc: NATS | None = None

    async def _on_error(self, exc: Exception) -> None:
        async with self._changed:
            self.errors.append(str(exc).lower())
            self._changed.notify_all()

    @classmethod
    async def open(cls, url: str, settings: Settings, identity: str, **options: Any) -> Client:
        client = cls(identity)
        client.nc = await nats.connect(
            url,
            error_cb=client._on_error,
            max_reconnect_attempts=1,
            connect_timeout=2,
            **{**connect_options(settings, identity), **options},
        )
        return client

    @property
    def conn(self) -> NATS:
        assert self.nc is not None
        return self.nc

    def js(self) -> Any:
        return self.conn.jetstream(**js_options(self.identity))

    async def refused(self, fragment: str, within_s: float = 5.0) -> bool:
        """Whether the server reports a permissions violation naming ``fragment``."""
        wanted = fragment.lower()

        def seen() -> bool:
            return any("permissions violation" in e and wanted in e for e in self.errors)

        try:
            async with asyncio.timeout(within_s), self._changed:
                await self._changed.wait_for(seen)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self.nc.close()


@dataclass
class Tally:
    """Violations tried, and whether each was refused."""

    tried: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, what: str, refused: bool) -> None:
        self.tried.append((what, refused))

    @property
    def allowed(self) -> list[str]:
        return [what for what, refused in self.tried if not refused]

    def summary(self, scope: str) -> str:
        refused = sum(1 for _, r in self.tried if r)
        return f"{scope}: {len(self.tried)} violations tried, {refused} refused"


def shipped_single_node() -> str:
    """The shipped file, but for its store: the launcher names that one (``-sd``), and
    nats-server refuses it twice."""
    return re.sub(r"^\s*store_dir:.*$", "", SINGLE_NODE_CONFIG.read_text(), flags=re.M)


def hub_config(directory: Path, settings: Settings, leaf_port: int, http_port: int) -> Path:
    """The shipped single node, next to the generated authorization, plus a leaf listener."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "accounts.conf").write_text(accounts_path(settings).read_text())
    (directory / "leafnodes.conf").write_text(leaf_users_path(settings).read_text())
    text = shipped_single_node() + (
        f"\nhttp: 127.0.0.1:{http_port}\n"
        f'leafnodes {{\n  listen: 127.0.0.1:{leaf_port}\n  include "leafnodes.conf"\n}}\n'
    )
    path = directory / "hub.conf"
    path.write_text(text)
    return path


@dataclass
class Hub:
    settings: Settings
    server: EmbeddedNats
    leaf_port: int
    http_port: int

    @property
    def url(self) -> str:
        return self.server.url


@asynccontextmanager
async def secured_hub(
    tmp_path: Path, agencies: tuple[str, ...] = AGENCIES, batch_size: int = 16, **overrides: Any
) -> AsyncIterator[Hub]:
    settings = Settings(
        data_dir=tmp_path / "data", agencies=agencies, batch_size=batch_size, **overrides
    )
    ensure_local_identities(settings, agencies)
    leaf_port, http_port = free_ports(2)
    config = hub_config(tmp_path / "hub", settings, leaf_port, http_port)
    server = EmbeddedNats(
        tmp_path / "hub" / "store",
        config=config,
        client_options=connect_options(settings, "platform"),
    )
    await server.start()
    try:
        yield Hub(settings, server, leaf_port, http_port)
    finally:
        await server.stop()
        await end_reconnects()  # of the test's clients, before its event loop closes


def leafz(http_port: int) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/leafz", timeout=1) as resp:
            return list(json.loads(resp.read()).get("leafs") or [])
    except OSError:
        return []


@dataclass
class Leaf:
    url: str
    http_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def partner_conf(
    hub: Hub, partner: str, *, password: str | None = None, tamper: bool = False
) -> str:
    """The generated partner side; ``tamper``: as the partner could edit it on its own
    server, without the local permissions (the hub's account boundary must still hold)."""
    settings = hub.settings
    access = load_access(settings)
    secret = password or leaf_password_path(settings, partner).read_text().strip()
    urls = [f"nats-leaf://127.0.0.1:{hub.leaf_port}"]
    text = render_partner_leaf(
        access, settings, partner, hub_urls=urls, password=secret, ca_file=None
    )
    if not tamper:
        return text
    entry = access.identities[partner]
    user = urls[0].replace("://", f"://{entry.leaf_user}:{secret}@", 1)
    keys = ", ".join(f'{{nkey: "{key}"}}' for key in entry.nkeys)
    return (
        f"accounts: {{ LOCAL: {{ users: [{keys}] }} }}\n"
        f'leafnodes: {{ remotes: [ {{ urls: ["{user}"], account: "LOCAL" }} ] }}\n'
    )


def start_leaf(directory: Path, partner_text: str) -> Leaf:
    """The shipped partner-leaf.conf, on a free loopback port, with ``partner_text`` as
    its partner.conf; returns once the leaf serves its monitoring port.

    A port chosen free can be taken before nats-server binds it (by a leaf started just
    before, not yet listening): such a start exits at once and is tried on other ports.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "partner.conf").write_text(partner_text)
    shipped = (PRODUCTION_DIR / "partner-leaf.conf").read_text()
    assert "listen: 0.0.0.0:4222" in shipped
    log = directory / "leaf.log"
    for _ in range(5):
        port, http_port = free_ports(2)
        (directory / "leaf.conf").write_text(
            shipped.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}").replace(
                '"lintas-partner-leaf"', f'"lintas-leaf-{directory.name}"'
            )
            + f"\nhttp: 127.0.0.1:{http_port}\n"
        )
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(find_nats_server()), "-c", "leaf.conf"],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        leaf = Leaf(f"nats://127.0.0.1:{port}", http_port, proc, log)
        if _serving(leaf):
            return leaf
        stop_leaf(leaf)
    raise AssertionError(f"leaf {directory.name} did not start:\n{leaf.log_text()[-3000:]}")


def _serving(leaf: Leaf, within_s: float = 15.0) -> bool:
    """Whether the leaf's monitoring port answers before the process exits or time is up
    (a blocking wait: the leaf is a child process that announces nothing)."""
    deadline = time.monotonic() + within_s
    while leaf.proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{leaf.http_port}/healthz", timeout=1
            ) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


async def leaves_connected(*leaves: Leaf, within_s: float = 30.0) -> None:
    """Until each leaf has its connection to the hub; on failure, what each leaf logged."""
    try:
        await until(lambda: all(leafz(leaf.http_port) for leaf in leaves), "leaf nodes", within_s)
    except AssertionError as exc:
        logs = "\n".join(
            f"--- {leaf.log} (exit {leaf.proc.poll()}):\n{leaf.log_text()[-3000:]}"
            for leaf in leaves
        )
        raise AssertionError(f"{exc}\n{logs}") from None


async def until(check: Any, what: str, within_s: float = 15.0) -> None:
    """Poll ``check()`` (a server's state, which announces nothing) until it holds;
    ``check`` may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s

    async def holds() -> bool:
        result = check()
        return bool(await result if inspect.isawaitable(result) else result)

    while not await holds():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def stop_leaf(leaf: Leaf) -> None:
    if leaf.proc.poll() is None:
        leaf.proc.terminate()
        try:
            leaf.proc.wait(10)
        except subprocess.TimeoutExpired:
            leaf.proc.kill()
            leaf.proc.wait()


@asynccontextmanager
async def admission_running(hub: Hub) -> AsyncIterator[Any]:
    """Admission on the hub as a deployment runs it (``lintas run admission``: its own
    identity, seed and receipt key), for the block. The platform must be declared first."""
    from lintas.admission.running import admission_service

    async with admission_service(hub.settings, hub.url) as service:
        yield service


def agency_publisher(client: Client, settings: Settings, **kw: Any) -> Any:
    """``client``'s agency's Publisher as on a secured bus: signing with its key, reading
    heads through the read service, sending through admission (``kw``: e.g. its ``keys``)."""
    from lintas.infra.keys.signing import Signer
    from lintas.infra.nats.topology import intake_stream
    from lintas.infra.reads import ServiceReads
    from lintas.producers import Admission, Publisher

    agency = client.identity
    return Publisher(
        client.js(),
        agency,
        stream=settings.stream,
        signer=Signer.load(settings, agency),
        reads=ServiceReads(client.conn, agency),
        admission=Admission(client.conn, client.js(), intake_stream(settings)),
        **kw,
    )
