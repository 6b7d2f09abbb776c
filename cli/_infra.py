"""``lintas agency add`` and ``lintas infra certs | config``: identities and deployment files."""

from __future__ import annotations

import argparse

from rich.console import Console

from lintas.cli._errors import fail
from lintas.contracts import is_agency_id
from lintas.contracts.agencies import is_partner_abroad
from lintas.infra.deploy.certs import issue_certs
from lintas.infra.deploy.config import DEFAULT_HUBS, render_deployment
from lintas.infra.keys.signing import (
    init_agency_key,
    load_registry,
    private_key_path,
    publish_registry,
)
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.identities import access_path, accounts_path, add_identity
from lintas.infra.nats.outage import run_to_end
from lintas.infra.nats.topology import agency_consumer, agency_sent_consumer, declare_platform
from lintas.infra.settings import Settings

__all__ = ["run_infra"]


async def _agency_add(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    name: str = args.name
    if not is_agency_id(name):
        fail(f"[red]{name!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]")
        return 2
    added = add_identity(settings, name, nkey=args.nkey)
    lines = []
    if added.seed is not None:
        lines.append(f"nkey seed {added.seed} (0600; give it to {name}, keep it off any repo)")
    lines.append(
        f"public nkey {added.public_key} "
        + ("registered" if added.new_key else "was registered already")
    )
    if added.leaf_password is not None:
        lines.append(
            f"leaf-node password {added.leaf_password} (0600); `lintas infra config` writes "
            f"{name}'s leaf config with it"
        )
    if not private_key_path(settings, name).exists() and not any(
        entry.agency == name for entry in load_registry(settings).entries()
    ):
        entry = init_agency_key(settings, name)
        lines.append(
            f"signing key {entry.keyid} (private key in {private_key_path(settings, name)})"
        )
    # On the embedded bus the running server reloads its authorization here; a cluster
    # reloads the configs `lintas infra config` renders (nats-server --signal reload).
    async with open_bus(settings, agencies=[name], changed=[name]) as url:
        nc = await connect(url, "lintas-agency-add", settings=settings, identity="platform")
        try:
            js = nc.jetstream()
            specs = [agency_consumer(name), agency_sent_consumer(name)]
            outcome = await declare_platform(js, settings, specs)
            agencies = await publish_registry(js, load_registry(settings))
        finally:
            await nc.close()
    lines.append(
        "consumers "
        + ", ".join(f"{spec.name} ({outcome[spec.name]})" for spec in specs)
        + f" on {url}"
    )
    lines.append(
        f"public keys of {agencies} {'agency' if agencies == 1 else 'agencies'} in the "
        "LINTAS_KEYS bucket"
    )
    where = (
        "its own account, reached through its leaf node" if is_partner_abroad(name) else "LINTAS"
    )
    lines.append(f"account: {where}; authorization in {accounts_path(settings)}")
    console.print(f"[green]{name}[/green] added ({access_path(settings)}):", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if settings.nats_url:
        console.print(
            "  the cluster lets it in once its servers reload the authorization: "
            "`lintas infra config --out DIR`, copy accounts.conf, `nats-server --signal reload`",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _certs(args: argparse.Namespace, console: Console) -> int:
    issued = issue_certs(args.out, hosts=args.host, clients=args.client, server=not args.no_server)
    console.print(
        f"{'made' if issued.made_ca else 'reused'} CA {issued.ca} (its key ca-key.pem stays "
        "with whoever issues certificates: never on a server)",
        highlight=False,
    )
    if issued.server:
        console.print(
            f"server certificate {issued.server} (+ server-key.pem, 0600)", highlight=False
        )
    for name, path in issued.clients.items():
        console.print(f"client certificate for {name}: {path}", highlight=False)
    return 0


def _config(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    done = render_deployment(
        settings, args.out, hub_urls=args.hub or DEFAULT_HUBS, copy_seeds=not args.no_seeds
    )
    console.print(f"deployment in {done.directory}:", highlight=False)
    for path in done.files:
        console.print(f"  {path.relative_to(done.directory)}", highlight=False)
    for path in done.secrets:
        console.print(f"  {path.relative_to(done.directory)}  (secret, 0600)", highlight=False)
    for warning in done.warnings:
        console.print(f"[yellow]  {warning}[/yellow]", highlight=False, soft_wrap=True)
    return 0


def run_infra(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.command == "agency":
        return run_to_end(_agency_add(settings, args, console))
    if args.infra_command == "certs":
        return _certs(args, console)
    return _config(settings, args, console)
