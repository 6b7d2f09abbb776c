"""``lintas keys init | list | publish | export``: agencies' key pairs and the registries."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.contracts import is_agency_id
from lintas.infra.files import open_private
from lintas.infra.keys.exchange import (
    EXCHANGE_BUCKET,
    exchange_key_path,
    init_exchange_key,
    load_recipients,
    publish_recipients,
)
from lintas.infra.keys.signing import (
    KEYS_BUCKET,
    Registry,
    fingerprint,
    init_agency_key,
    load_registry,
    private_key_path,
    publish_registry,
    registry_bytes,
    spoken,
    trusted_registry,
)
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.outage import run_to_end
from lintas.infra.nats.topology import ensure_key_buckets
from lintas.infra.settings import Settings


async def _publish_keys(settings: Settings, console: Console) -> int:
    registry = load_registry(settings)
    recipients = load_recipients(settings)
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-keys", settings=settings, identity="platform")
        try:
            # Made here as the platform makes them (the event stream's replicas), on a bus
            # it has not set up yet; left as they are, and refused, with other replicas:
            # a registry kept at R1 on an R3 cluster is what the platform would refuse.
            await ensure_key_buckets(nc.jetstream(), settings)
            count = await publish_registry(nc.jetstream(), registry)
            exchange = await publish_recipients(nc.jetstream(), recipients)
        finally:
            await nc.close()
    console.print(f"{len(registry.entries())} keys of {count} agencies in {KEYS_BUCKET}")
    console.print(f"X25519 keys of {exchange} agencies in {EXCHANGE_BUCKET}")
    return 0


def _export_keys(settings: Settings, out: Path, console: Console) -> int:
    if out.exists():
        fail(f"[red]{out} exists: a registry is never overwritten[/red]", highlight=False)
        return 1
    registry = run_to_end(_platform_registry(settings))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_private(out, mode=0o644) as sink:  # public keys: nothing here is secret
        sink.write(registry_bytes(registry) + b"\n")
    agencies = sorted({entry.agency for entry in registry.entries()})
    console.print(
        f"{len(registry.entries())} keys of {len(agencies)} holders ({', '.join(agencies)}) "
        f"written to {out}\nfingerprint {fingerprint(registry)}\n{spoken(fingerprint(registry))}\n"
        "publish the fingerprint where auditors read it (or read it out to them): "
        "`lintas verify --keys` prints the fingerprint of the file it is given",
        highlight=False,
        soft_wrap=True,
    )
    return 0


async def _platform_registry(settings: Settings) -> Registry:
    async with open_bus(settings) as url:
        # The auditor may read the registry, and nothing it does here writes the bus.
        nc = await connect(url, "lintas-keys-export", settings=settings, identity="auditor")
        try:
            registry = await trusted_registry(settings, nc.jetstream())
        finally:
            await nc.close()
    return registry


def _keys_init(settings: Settings, agency: str, console: Console) -> int:
    if not is_agency_id(agency):
        fail(f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]")
        return 2
    made = 0
    if not private_key_path(settings, agency).exists():
        entry = init_agency_key(settings, agency)
        made += 1
        console.print(
            f"{agency}: signing key {entry.keyid}, valid from {entry.valid_from.isoformat()}; "
            f"private key in {settings.data_dir / 'keys'} (0600), public key registered",
            highlight=False,
        )
    if not exchange_key_path(settings, agency).exists():
        key = init_exchange_key(settings, agency)
        made += 1
        console.print(
            f"{agency}: exchange key {key.kid} (X25519, receives case data keys); private "
            f"key in {settings.data_dir / 'keys'} (0600), public key in keys/exchange.json",
            highlight=False,
        )
    if not made:
        fail(
            f"[red]{agency} already has both keys in {settings.data_dir / 'keys'} (rotate, "
            "do not overwrite)[/red]"
        )
        return 1
    return 0


def _keys_json(settings: Settings) -> dict[str, Any]:
    """The public keys this data dir trusts: key ids and validity, never key material."""
    recipients = load_recipients(settings)
    exchange = []
    for agency in recipients.agencies():
        key = recipients.get(agency)
        assert key is not None
        exchange.append({"agency": agency, "kid": key.kid, "algorithm": "X25519"})
    return {
        "signing": [
            {
                "agency": entry.agency,
                "keyid": entry.keyid,
                "algorithm": "Ed25519",
                "valid_from": entry.valid_from.isoformat(),
                "valid_until": entry.valid_until.isoformat() if entry.valid_until else None,
            }
            for entry in load_registry(settings).entries()
        ],
        "exchange": exchange,
    }


def run_keys(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.keys_command == "publish":
        return run_to_end(_publish_keys(settings, console))
    if args.keys_command == "export":
        return _export_keys(settings, args.out, console)
    if args.keys_command == "init":
        return _keys_init(settings, args.agency, console)
    if args.json:
        print_json(console, _keys_json(settings))
        return 0
    for entry in load_registry(settings).entries():
        until = entry.valid_until.isoformat() if entry.valid_until else "no end"
        console.print(
            f"{entry.agency:16} {entry.keyid:36} {entry.valid_from.isoformat()} .. {until}",
            highlight=False,
        )
    recipients = load_recipients(settings)
    for agency in recipients.agencies():
        key = recipients.get(agency)
        assert key is not None
        console.print(f"{agency:16} {key.kid:36} X25519 (receives case data keys)", highlight=False)
    return 0
