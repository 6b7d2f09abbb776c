"""``lintas agency add`` and ``lintas infra certs | config``: what they write, and that every
generated config is one nats-server accepts. Docker is not needed: the compose file is
checked by loading it and resolving every file it mounts."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lintas.cli import main
from lintas.infra.keys.signing import registry_from_kv
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.credentials import js_options, public_key, seed_path
from lintas.infra.nats.embedded import find_nats_server
from lintas.infra.nats.identities import access_path, accounts_path, load_access
from lintas.infra.nats.topology import agency_consumer, agency_sent_consumer, check_consumer
from lintas.infra.settings import Settings

pytestmark = pytest.mark.nats


def _valid(config: Path) -> None:
    """nats-server -t, run where the deployment runs it: in the config's directory."""
    done = subprocess.run(
        [str(find_nats_server()), "-t", "-c", config.name],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout + done.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings ``lintas`` itself reads here: the test's data dir, defaults otherwise."""
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    return Settings()


def test_a_rendered_deployment_is_valid_and_mounts_no_secret_where_it_does_not_belong(
    env: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "deploy"
    assert main(["infra", "certs", "--out", str(out / "certs"), *_hosts()]) == 0
    assert main(["infra", "config", "--out", str(out)]) == 0
    certs = out / "certs"
    assert _mode(certs / "ca-key.pem") == _mode(certs / "server-key.pem") == 0o600

    for name in ("node-1.conf", "node-2.conf", "node-3.conf", "single-node.conf"):
        _valid(out / name)
    _valid(out / "partners" / "my-jkm" / "leaf.conf")
    assert _mode(out / "partners" / "my-jkm" / "partner.conf") == 0o600
    accounts = (out / "accounts.conf").read_text()
    assert "staff-" not in accounts  # the demo's simulated staff are not deployed

    compose = yaml.safe_load((out / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"nats-1", "nats-2", "nats-3", "postgres", "jaeger", "platform"} <= set(services)
    assert {"partner-leaf", "my-jkm"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (out / source).exists(), f"{name} mounts {source}, which is not rendered"
                assert "ca-key.pem" not in source, f"{name} gets the CA's key"
        seeds = [v for v in service.get("volumes", []) if ".nk:" in v]
        if service.get("image", "").startswith("nats:"):
            assert seeds == [], f"{name} is a nats server and gets a seed"
        elif "build" in service:  # a lintas service: its own seeds (and keys), no other
            identities = _IDENTITIES.get(name, [name])
            assert seeds == [f"./nkeys/{i}.nk:/etc/lintas/nkeys/{i}.nk:ro" for i in identities]
            for identity in identities:
                assert _mode(out / "nkeys" / f"{identity}.nk") == 0o600
            keys = [v.split(":")[0] for v in service.get("volumes", []) if ".key:" in v]
            assert keys == [f"./keys/{k}.key" for k in _KEYS.get(name, [])]
            for key in keys:
                assert _mode(out / key) == 0o600
            assert service["user"] == "${LINTAS_UID:-10001}"  # never root by default
    for n in (1, 2, 3):
        mounted = {v.split(":")[1] for v in services[f"nats-{n}"]["volumes"]}
        assert "/etc/nats/node.conf" in mounted
        assert services[f"nats-{n}"]["command"] == ["-c", "/etc/nats/node.conf"]


# The identities each lintas service logs in as (default: its own name), and the signing
# keys it holds (default: none).
_IDENTITIES = {
    "reads": ["platform"],
    "watchdog": ["platform", "watchdog"],
    "checkpointer": ["platform"],
}
_KEYS = {"admission": ["admission"], "watchdog": ["watchdog"], "checkpointer": ["sealer"]}


def _hosts() -> list[str]:
    return [arg for n in (1, 2, 3) for arg in ("--host", f"nats-{n}")]


def test_certs_are_never_overwritten_and_the_ca_is_reused(env: Settings, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert main(["infra", "certs", "--out", str(out)]) == 0
    ca = (out / "ca.pem").read_bytes()
    assert main(["infra", "certs", "--out", str(out)]) == 1  # the server cert exists
    assert main(["infra", "certs", "--out", str(out), "--no-server", "--client", "kemlu"]) == 0
    assert (out / "ca.pem").read_bytes() == ca
    assert _mode(out / "client-kemlu-key.pem") == 0o600


async def test_agency_add_lets_a_new_agency_into_a_running_bus(env: Settings) -> None:
    settings = env
    async with open_bus(settings) as url:
        # Another process adds an agency while this one serves the embedded bus.
        code = await asyncio.to_thread(main, ["agency", "add", "desa-3301010001"])
        assert code == 0
        assert "desa-3301010001" in load_access(settings).identities
        key = public_key(seed_path(settings, "desa-3301010001"))
        assert key in accounts_path(settings).read_text()
        # The running server reloaded: the new agency logs in, finds its own consumers
        # (declared by the platform), and reads its key from the registry.
        nc = await connect(url, "t", settings=settings, identity="desa-3301010001")
        try:
            js = nc.jetstream(**js_options("desa-3301010001"))
            for spec in (
                agency_consumer("desa-3301010001"),
                agency_sent_consumer("desa-3301010001"),
            ):
                await check_consumer(js, settings.stream, spec, settings)
            agencies = {entry.agency for entry in (await registry_from_kv(js)).entries()}
            assert "desa-3301010001" in agencies
        finally:
            await nc.close()


def test_agency_add_with_its_own_public_key_makes_no_secret_here(env: Settings) -> None:
    from nkeys import PREFIX_BYTE_USER, encode_seed, from_seed

    their_key = from_seed(bytearray(encode_seed(os.urandom(32), PREFIX_BYTE_USER)))
    public = their_key.public_key.decode()
    assert main(["agency", "add", "th-dsdw", "--nkey", public]) == 0
    assert not seed_path(env, "th-dsdw").exists()
    entry = load_access(env).identities["th-dsdw"]
    assert entry.nkeys == [public]
    assert entry.leaf_user == "leaf-th-dsdw"  # a partner abroad: a leaf node of its own
    assert public in access_path(env).read_text()
    assert main(["agency", "add", "not an agency"]) == 2
