"""The nats-server configs shipped in infra/deploy/: valid, on loopback, and as documented.

``nats-server -t`` parses a config and checks its options without starting anything (and
without touching the store directory), so the shipped files are checked as they are, next
to the ``accounts.conf`` lintas generates (single-node.conf includes it).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lintas.infra.nats.embedded import find_nats_server
from lintas.infra.nats.identities import accounts_path, ensure_local_identities
from lintas.infra.settings import Settings
from tests.support.cluster import (
    CLUSTER_CONFIGS,
    DEPLOY_DIR,
    SINGLE_NODE_CONFIG,
    ClusterError,
    free_ports,
    localize,
    read_node_config,
)

SHIPPED = sorted(DEPLOY_DIR.glob("*.conf"))
_ROUTE = re.compile(r"nats-route://127\.0\.0\.1:(\d+)")
_CLUSTER_LISTEN = re.compile(r"^cluster\s*\{[^}]*?^\s+listen:\s*127\.0\.0\.1:(\d+)", re.M | re.S)
_CLUSTER_NAME = re.compile(r"^cluster\s*\{[^}]*?^\s+name:\s*\"([^\"]+)\"", re.M | re.S)
_JETSTREAM = re.compile(r"^jetstream\s*\{(.*?)^\}", re.M | re.S)
_STORE_DIR = re.compile(r'^\s*store_dir:\s*"([^"]+)"', re.M)
_SYNC = re.compile(r"^\s*sync_interval:\s*(\S+)\s*$", re.M)
_ANY_ADDRESS = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}|localhost|0\.0\.0\.0):\d+")


def _placed(path: Path, directory: Path, text: str | None = None) -> Path:
    """``path`` (or ``text`` under its name) in ``directory``, next to a generated
    accounts.conf, as `lintas infra config` lays them out."""
    settings = Settings(data_dir=directory / "data", agencies=("kemlu", "my-jkm"))
    ensure_local_identities(settings, settings.agencies)
    (directory / "accounts.conf").write_text(accounts_path(settings).read_text())
    placed = directory / path.name
    placed.write_text(path.read_text() if text is None else text)
    return placed


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _jetstream_block(text: str) -> str:
    found = _JETSTREAM.findall(text)
    assert len(found) == 1
    return str(found[0])


def _uncommented(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_the_documented_configs_are_shipped() -> None:
    assert [p.name for p in SHIPPED] == [
        "cluster-node-1.conf",
        "cluster-node-2.conf",
        "cluster-node-3.conf",
        "single-node.conf",
    ]
    assert (DEPLOY_DIR / "README.md").is_file()


@pytest.mark.nats
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_nats_server_accepts_the_shipped_config(path: Path, tmp_path: Path) -> None:
    done = _check(_placed(path, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout + done.stderr


@pytest.mark.nats
def test_nats_server_t_really_checks_sync_interval(tmp_path: Path) -> None:
    """So that a passing ``-t`` above means something for the option that matters most."""
    bad = _placed(
        SINGLE_NODE_CONFIG, tmp_path, SINGLE_NODE_CONFIG.read_text().replace('"2m"', "sometimes")
    )
    done = _check(bad)
    assert done.returncode != 0
    assert "sync_interval" in done.stdout + done.stderr


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_listener_is_on_loopback(path: Path) -> None:
    addresses = _ANY_ADDRESS.findall(_uncommented(path.read_text()))
    assert addresses
    assert set(addresses) == {"127.0.0.1"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_sync_policy_is_stated_explicitly(path: Path) -> None:
    """JetStream fsyncs lazily by default: every shipped config says what it does instead."""
    found = _SYNC.findall(_jetstream_block(_uncommented(path.read_text())))
    assert len(found) == 1
    expected = '"2m"' if path == SINGLE_NODE_CONFIG else "always"
    assert found[0] == expected


def test_the_three_nodes_form_one_cluster() -> None:
    nodes = [read_node_config(path) for path in CLUSTER_CONFIGS]
    texts = [_uncommented(node.text) for node in nodes]
    assert len({node.name for node in nodes}) == 3
    assert {name for t in texts for name in _CLUSTER_NAME.findall(t)} == {"lintas"}

    cluster_ports = [int(_CLUSTER_LISTEN.findall(t)[0]) for t in texts]
    ports = [p for node, cp in zip(nodes, cluster_ports, strict=True) for p in
             (node.client_port, node.http_port, cp)]  # fmt: skip
    assert len(set(ports)) == len(ports) == 9

    for own, text in zip(cluster_ports, texts, strict=True):
        routes = sorted(int(p) for p in _ROUTE.findall(text))
        assert routes == sorted(set(cluster_ports) - {own})

    store_dirs = [_STORE_DIR.findall(_jetstream_block(t)) for t in texts]
    assert all(len(found) == 1 for found in store_dirs)
    assert len({found[0] for found in store_dirs}) == 3


def test_the_single_node_matches_the_embedded_default() -> None:
    text = _uncommented(SINGLE_NODE_CONFIG.read_text())
    assert 'server_name: "lintas-single"' in text
    assert _STORE_DIR.findall(_jetstream_block(text)) == [".lintas/nats"]
    assert "cluster" not in text
    assert 'include "accounts.conf"' in text  # authorization on, as embedded


@pytest.mark.nats
def test_the_single_node_without_its_accounts_is_not_valid(tmp_path: Path) -> None:
    """So that the include is real: the shipped file needs the generated authorization."""
    alone = tmp_path / "single-node.conf"
    alone.write_text(SINGLE_NODE_CONFIG.read_text())
    assert _check(alone).returncode != 0


def test_localize_moves_every_port_and_the_store_and_nothing_else(tmp_path: Path) -> None:
    node = read_node_config(CLUSTER_CONFIGS[0])
    shipped = sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", node.text)})
    ports = dict(zip(shipped, free_ports(len(shipped)), strict=True))
    local = localize(node.text, ports, tmp_path / "store")

    for old, new in ports.items():
        assert f"127.0.0.1:{old}" not in local
        assert f"127.0.0.1:{new}" in local
    assert _STORE_DIR.findall(local) == [str(tmp_path / "store")]
    changed = [
        (a, b) for a, b in zip(node.text.splitlines(), local.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == len(shipped) + 1  # each address once, plus the store_dir line
    assert all("127.0.0.1:" in a or "store_dir" in a for a, _ in changed)


@pytest.mark.nats
def test_a_localized_config_is_still_valid(tmp_path: Path) -> None:
    node = read_node_config(CLUSTER_CONFIGS[1])
    shipped = sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", node.text)})
    local = tmp_path / "node.conf"
    ports = dict(zip(shipped, free_ports(len(shipped)), strict=True))
    local.write_text(localize(node.text, ports, tmp_path / "store"))
    done = _check(local)
    assert done.returncode == 0, done.stdout + done.stderr


def test_localize_refuses_a_port_it_cannot_map(tmp_path: Path) -> None:
    text = read_node_config(CLUSTER_CONFIGS[2]).text
    with pytest.raises(ClusterError, match="no runtime port"):
        localize(text, {}, tmp_path)


def test_a_config_the_launcher_cannot_read_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.conf"
    odd.write_text(CLUSTER_CONFIGS[0].read_text().replace('server_name: "lintas-n1"', ""))
    with pytest.raises(ClusterError, match="server_name"):
        read_node_config(odd)
