"""A JetStream cluster on loopback, run from the configs lintas ships in ``infra/deploy/``.

For fault tests and for trying the production layout on one machine. Each node is started
from its shipped ``cluster-node-N.conf`` with two things changed: every ``127.0.0.1:PORT``
becomes a port found free at start-up (so a cluster never collides with another server, such
as a system NATS on 4222, or with a parallel test), and ``store_dir`` becomes a directory
under ``root``. Everything else (server names, cluster name, routes between the nodes,
``sync_interval``) is the shipped file's. :func:`localize` is that rewrite.

A node is ready when its ``/healthz`` answers 200 (its JetStream is current) and every
running node names the same running node as JetStream meta leader, with routes to all the
others. ``kill`` sends SIGKILL, as a crash would; ``restart`` brings the node back on the
same ports and store, and waits for it to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lintas.infra.deploy
from lintas.infra.nats.embedded import (
    EmbeddedNatsError,
    ServerLifecycle,
    ServerProcess,
    find_nats_server,
)

__all__ = [
    "CLUSTER_CONFIGS",
    "DEPLOY_DIR",
    "SINGLE_NODE_CONFIG",
    "ClusterError",
    "ClusterNode",
    "LoopbackCluster",
    "NodeConfig",
    "free_ports",
    "localize",
    "read_node_config",
    "refused_port",
]

DEPLOY_DIR = Path(lintas.infra.deploy.__file__).resolve().parent
SINGLE_NODE_CONFIG = DEPLOY_DIR / "single-node.conf"
CLUSTER_CONFIGS = tuple(DEPLOY_DIR / f"cluster-node-{n}.conf" for n in (1, 2, 3))

LOG_NAME = "nats-server.log"
CONFIG_NAME = "nats-server.conf"
_HOST = "127.0.0.1"
_ADDRESS = re.compile(r"\b127\.0\.0\.1:(\d+)\b")
_STORE_DIR = re.compile(r'^(\s*store_dir:\s*)"[^"\n]*"', re.MULTILINE)
_SERVER_NAME = re.compile(r'^server_name:\s*"([A-Za-z0-9_-]+)"', re.MULTILINE)
_CLIENT = re.compile(r"^listen:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)
_HTTP = re.compile(r"^http:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)
_POLL_S = 0.1
_HTTP_TIMEOUT_S = 1.0


class ClusterError(EmbeddedNatsError):
    """The loopback cluster did not start or did not form; the message carries log tails."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One shipped node config, and what the launcher needs to know from it."""

    source: Path
    text: str
    name: str
    client_port: int
    http_port: int


def _one(pattern: re.Pattern[str], text: str, what: str, source: Path) -> str:
    found = pattern.findall(text)
    if len(found) != 1:
        raise ClusterError(f"{source}: expected one {what}, found {len(found)}")
    return str(found[0])


def read_node_config(path: Path) -> NodeConfig:
    """Read a shipped node config; refuse one the launcher could not rewrite safely."""
    text = path.read_text()
    _one(_STORE_DIR, text, 'quoted store_dir ("...")', path)
    return NodeConfig(
        source=path,
        text=text,
        name=_one(_SERVER_NAME, text, 'quoted top-level server_name ("...")', path),
        client_port=int(_one(_CLIENT, text, "top-level listen: 127.0.0.1:PORT", path)),
        http_port=int(_one(_HTTP, text, "top-level http: 127.0.0.1:PORT", path)),
    )


def localize(text: str, ports: Mapping[int, int], store_dir: Path) -> str:
    """``text`` with every loopback port mapped through ``ports`` and its store moved.

    Raises if the config names a loopback port that ``ports`` does not map: a route left
    pointing at a shipped port would reach some other server, or nothing.
    """
    missing = sorted({int(p) for p in _ADDRESS.findall(text)} - set(ports))
    if missing:
        raise ClusterError(f"no runtime port for shipped port(s) {missing}")
    text = _ADDRESS.sub(lambda m: f"{_HOST}:{ports[int(m.group(1))]}", text)
    return _STORE_DIR.sub(lambda m: f"{m.group(1)}{json.dumps(str(store_dir))}", text)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now (held together while chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where connections are refused for the block: bound, never listening.
    A port merely free when chosen may be taken meanwhile (another suite on the machine
    started a nats-server there, and a test meant to find nothing found its stream)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((_HOST, 0))
        yield int(held.getsockname()[1])


def _get_json(url: str) -> tuple[int, Any]:
    """(HTTP status, decoded body); (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"null")
        except ValueError:
            body = None
        return int(exc.code), body
    except (OSError, ValueError):
        return 0, None


class ClusterNode:
    """One nats-server of the cluster: its rendered config, store, ports and process."""

    def __init__(self, shipped: NodeConfig, directory: Path, client_port: int, http_port: int):
        self.shipped = shipped
        self.name = shipped.name
        self.directory = directory
        self.client_port = client_port
        self.http_port = http_port
        self.process = ServerProcess(self.log_path)
        # Launched and not stopped or killed on purpose: if its process is gone, it crashed.
        self.wanted = False

    @property
    def url(self) -> str:
        return f"nats://{_HOST}:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{_HOST}:{self.http_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def store_dir(self) -> Path:
        return self.directory / "store"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def proc(self) -> asyncio.subprocess.Process | None:
        return self.process.proc

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def log_tail(self) -> str:
        return self.process.log_tail()

    async def launch(self, binary: Path) -> None:
        self.wanted = True
        await self.process.launch(binary, ["-c", str(self.config_path)])

    async def kill(self) -> None:
        """SIGKILL: a crash of the process, no goodbye to the cluster (unlike ``stop``).

        What nats-server had written is still in the operating system's buffers: this is
        not a crash of the machine, which would lose what was not yet fsynced.
        """
        self.wanted = False
        await self.process.kill()

    async def stop(self, grace: float) -> None:
        """SIGTERM (JetStream flushes its store), SIGKILL after ``grace`` s."""
        self.wanted = False
        await self.process.stop(grace)

    async def state(self) -> tuple[bool, str | None, set[str]]:
        """(healthz ok, the meta leader it names, the servers it has routes to)."""
        (health, _), (_, jsz), (_, routez) = await asyncio.gather(
            asyncio.to_thread(_get_json, f"{self.monitor_url}/healthz"),
            asyncio.to_thread(_get_json, f"{self.monitor_url}/jsz"),
            asyncio.to_thread(_get_json, f"{self.monitor_url}/routez"),
        )
        meta = (jsz or {}).get("meta_cluster") or {}
        peers = {str(r.get("remote_name")) for r in (routez or {}).get("routes") or []}
        return health == 200, meta.get("leader") or None, peers

    async def varz(self) -> dict[str, Any]:
        _, body = await asyncio.to_thread(_get_json, f"{self.monitor_url}/varz")
        return body if isinstance(body, dict) else {}


class LoopbackCluster(ServerLifecycle):
    """The shipped cluster configs, run on free loopback ports with stores under ``root``.

    ``async with LoopbackCluster(tmp_path) as cluster:`` starts every node and waits for the
    cluster to form; ``cluster.urls`` are the client URLs to give a client so it fails over.
    """

    def __init__(
        self,
        root: Path,
        *,
        configs: Sequence[Path] = CLUSTER_CONFIGS,
        binary: Path | None = None,
    ) -> None:
        self.root = root
        self._configs = [read_node_config(path) for path in configs]
        names = [c.name for c in self._configs]
        if len(set(names)) != len(names):
            raise ClusterError(f"server names must be unique, got {names}")
        self._binary = binary
        self._resolved: Path | None = None
        self.nodes: dict[str, ClusterNode] = {}

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes.values()]

    def node(self, name: str) -> ClusterNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise ClusterError(f"no node {name!r} (nodes: {', '.join(self.nodes)})") from None

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes.values() if node.running]

    def _render(self) -> None:
        """Map every shipped loopback port to a free one, write each node's config."""
        shipped_ports = sorted({int(p) for c in self._configs for p in _ADDRESS.findall(c.text)})
        ports = dict(zip(shipped_ports, free_ports(len(shipped_ports)), strict=True))
        self.nodes = {}
        for cfg in self._configs:
            node = ClusterNode(
                cfg, self.root / cfg.name, ports[cfg.client_port], ports[cfg.http_port]
            )
            node.directory.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(localize(cfg.text, ports, node.store_dir))
            self.nodes[cfg.name] = node

    async def start(self, timeout: float = 30.0, attempts: int = 3) -> None:  # noqa: ASYNC109
        """Start every node, return once the cluster has formed.

        A port found free can be taken by another process before nats-server binds it;
        then every node is stopped and the cluster starts again on new ports.
        """
        self._resolved = await asyncio.to_thread(find_nats_server, self._binary)
        for attempt in range(1, attempts + 1):
            self._render()
            try:
                for node in self.nodes.values():
                    await node.launch(self._resolved)
                await self.wait_formed(timeout)
            except ClusterError as exc:
                await self.stop()
                if attempt < attempts and "address already in use" in str(exc):
                    continue
                raise
            except BaseException:
                await self.stop()
                raise
            return

    async def wait_formed(self, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Wait until the running nodes form a cluster; return the meta leader's name.

        Formed: every running node is healthy (``/healthz``: its JetStream is current),
        names the same running node as meta leader, and has routes to every other running
        node. Raises :class:`ClusterError` with log tails if a node exits or time runs out.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: dict[str, tuple[bool, str | None, set[str]]] = {}
        while True:
            nodes = self.running()
            for node in self.nodes.values():
                if node.wanted and node.proc is not None and node.proc.returncode is not None:
                    raise self._error(f"{node.name} exited with code {node.proc.returncode}")
            states = await asyncio.gather(*(node.state() for node in nodes))
            seen = {node.name: state for node, state in zip(nodes, states, strict=True)}
            names = set(seen)
            leaders = {leader for _, leader, _ in seen.values()}
            if (
                nodes
                and all(healthy for healthy, _, _ in seen.values())
                and len(leaders) == 1
                and leaders <= names
                and all(names - {name} <= peers for name, (_, _, peers) in seen.items())
            ):
                return str(leaders.pop())
            if loop.time() >= deadline:
                raise self._error(f"the cluster did not form within {timeout:g}s: {seen}")
            await asyncio.sleep(_POLL_S)

    def _error(self, problem: str) -> ClusterError:
        tails = "\n".join(
            f"{node.name} ({node.log_path}):\n{node.log_tail()}" for node in self.nodes.values()
        )
        return ClusterError(f"{problem}\n{tails}")

    async def meta_leader(self) -> str:
        """The meta leader's name, once the running nodes agree on one."""
        return await self.wait_formed()

    async def kill(self, name: str) -> None:
        """SIGKILL one node; the others carry on (a three-node cluster keeps its quorum)."""
        await self.node(name).kill()

    async def restart(self, name: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start a stopped or killed node again, same ports and store; wait until current."""
        node = self.node(name)
        if node.running:
            raise ClusterError(f"{name} is still running")
        if self._resolved is None:
            raise ClusterError("the cluster was never started")
        await node.launch(self._resolved)
        await self.wait_formed(timeout)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after ``grace`` s). Idempotent."""
        await asyncio.gather(*(node.stop(grace) for node in self.nodes.values()))
