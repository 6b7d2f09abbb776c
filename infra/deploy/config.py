"""Rendering a deployment directory (``lintas infra config --out DIR``).

The shipped templates (``infra/deploy/production/``: three node configs, a partner's leaf
node, the compose file, Prometheus's ``prometheus.yml``; and ``infra/deploy/single-node.conf``)
are copied into ``DIR`` next to what is generated from this data directory's access
description:

* ``accounts.conf``: every identity's public nkeys and permissions (no demo staff);
* ``leafnodes.conf``: each partner abroad's leaf-node user, with a bcrypt hash;
* ``partners/<id>/leaf.conf`` + ``partner.conf`` (SECRET, 0600: the leaf password) +
  ``ca.pem``: what the partner runs on its own server;
* ``nkeys/<identity>.nk`` (0600): the seeds made in this data directory, for the compose
  trial, which runs every identity on one host. In a real deployment each agency keeps
  its own seed (``lintas agency add NAME --nkey <its public key>``), and none is copied;
* ``keys/<service>.key`` (0600): the signing keys of the platform's own services (the
  watchdog's, admission's, and the sealer's), made in this data directory if it has none,
  for the same trial;
* ``data/nats-{1,2,3}/``: the nodes' stores, made here so that they belong to whoever
  renders (the containers run as that user, not root).

Certificates are not made here: ``lintas infra certs --out DIR/certs`` (a private CA) or an
organisation's own, under the same names.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lintas.contracts import PLATFORM_SERVICES
from lintas.infra.files import replace_file
from lintas.infra.keys.signing import (
    SEALER,
    ensure_sealer_key,
    init_agency_key,
    private_key_path,
)
from lintas.infra.nats.access import Access, render_accounts, render_leaf_users, render_partner_leaf
from lintas.infra.nats.credentials import seed_path
from lintas.infra.nats.identities import ensure_local_identities, leaf_password_path, load_access
from lintas.infra.settings import Settings

__all__ = ["PRODUCTION_DIR", "Rendered", "render_deployment"]

PRODUCTION_DIR = Path(__file__).resolve().parent / "production"
NODE_CONFIGS = ("node-1.conf", "node-2.conf", "node-3.conf")
DEFAULT_HUBS = ("nats-leaf://nats-1:7422", "nats-leaf://nats-2:7422", "nats-leaf://nats-3:7422")


@dataclass(slots=True)
class Rendered:
    directory: Path
    files: list[Path] = field(default_factory=list)
    secrets: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _write(path: Path, text: str, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text, mode=0o600 if secret else 0o644)


def _copy_secret(source: Path, target: Path) -> None:
    _write(target, source.read_text(), secret=True)


def render_deployment(
    settings: Settings,
    out: Path,
    *,
    hub_urls: Sequence[str] = DEFAULT_HUBS,
    copy_seeds: bool = True,
) -> Rendered:
    """Write ``out``: templates, generated authorization, partners' leaf configs, seeds.

    Every role and ``LINTAS_AGENCIES`` agency gets an identity first if it has none.
    """
    ensure_local_identities(settings, settings.agencies)
    stored = load_access(settings)
    # A deployment has no simulated staff: render without the demo's consumers.
    access = Access(stored.identities, simulated_staff=False)
    done = Rendered(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*NODE_CONFIGS, "compose.yaml", "prometheus.yml"):
        shutil.copyfile(PRODUCTION_DIR / name, out / name)
        done.files.append(out / name)
    shutil.copyfile(PRODUCTION_DIR.parent / "single-node.conf", out / "single-node.conf")
    done.files.append(out / "single-node.conf")
    for node in range(1, len(NODE_CONFIGS) + 1):
        (out / "data" / f"nats-{node}").mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(out / "accounts.conf", render_accounts(access, settings))
    _write(out / "leafnodes.conf", render_leaf_users(access))
    done.files += [out / "accounts.conf", out / "leafnodes.conf"]
    ca = out / "certs" / "ca.pem"
    if not ca.exists():
        done.warnings.append(
            f"no {ca}: make the certificates with `lintas infra certs --out {out / 'certs'}` "
            "(then run this again, so partners get the CA too)"
        )
    for partner in access.partners():
        where = out / "partners" / partner
        password_file = leaf_password_path(settings, partner)
        if not password_file.exists():
            done.warnings.append(f"{partner}: no leaf password in {password_file}; skipped")
            continue
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Each leaf node its own server name: the hub tells its leaf nodes apart by it.
        template = (PRODUCTION_DIR / "partner-leaf.conf").read_text()
        _write(
            where / "leaf.conf",
            template.replace('"lintas-partner-leaf"', f'"lintas-leaf-{partner}"'),
        )
        text = render_partner_leaf(
            access,
            settings,
            partner,
            hub_urls=hub_urls,
            password=password_file.read_text().strip(),
            ca_file="ca.pem",
        )
        _write(where / "partner.conf", text, secret=True)
        done.files.append(where / "leaf.conf")
        done.secrets.append(where / "partner.conf")
        if ca.exists():
            shutil.copyfile(ca, where / "ca.pem")
            done.files.append(where / "ca.pem")
    if copy_seeds:
        for identity in sorted(access.identities):
            seed = seed_path(settings, identity)
            if seed.exists():
                target = out / "nkeys" / f"{identity}.nk"
                (out / "nkeys").mkdir(exist_ok=True, mode=0o700)
                _copy_secret(seed, target)
                done.secrets.append(target)
        for service in (*PLATFORM_SERVICES, SEALER):
            key = private_key_path(settings, service)
            if service == SEALER:
                ensure_sealer_key(settings)  # checkpoints and manifests: the sealer's alone
            elif not key.exists():  # made here, as the identities are: `keys publish` shares it
                init_agency_key(settings, service)
            (out / "keys").mkdir(exist_ok=True, mode=0o700)
            target = out / "keys" / key.name
            _write(target, key.read_text(), secret=True)
            done.secrets.append(target)
    return done
