"""The identities a data directory knows, and the server authorization generated from them.

``<data_dir>/auth/`` (0700) holds:

* ``access.json``: the access description (:class:`lintas.infra.nats.access.Access`): who exists,
  with public nkeys;
* ``nkeys/<identity>.nk``: the seeds made here (0600; ``LINTAS_CREDENTIALS_DIR`` may point
  elsewhere);
* ``leaf/<partner>.password``: a partner's leaf-node password (0600; the hub keeps only its
  bcrypt hash);
* ``accounts.conf``: the ``accounts`` block generated from the description, which the
  embedded server runs with and a deployment includes.

The embedded default makes every role and agency it needs on first use
(:func:`ensure_local_identities`), so ``lintas demo`` and ``lintas up`` run with
authorization on and nothing to configure. ``lintas agency add`` adds one identity
(:func:`add_identity`). Both hold an ``flock`` on ``auth/.lock`` while they change the files,
so two processes starting at once make one set.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from lintas.contracts.agencies import PLATFORM_SERVICES, is_partner_abroad
from lintas.infra.files import write_private
from lintas.infra.nats.access import ROLES, Access, render_accounts, render_leaf_users
from lintas.infra.nats.credentials import create_seed, public_key, seed_path
from lintas.infra.settings import Settings

__all__ = [
    "Added",
    "access_path",
    "accounts_path",
    "add_identity",
    "ensure_local_identities",
    "leaf_password_path",
    "leaf_users_path",
    "load_access",
    "write_server_auth",
]


def access_path(settings: Settings) -> Path:
    return settings.auth_dir / "access.json"


def accounts_path(settings: Settings) -> Path:
    return settings.auth_dir / "accounts.conf"


def leaf_users_path(settings: Settings) -> Path:
    return settings.auth_dir / "leafnodes.conf"


def leaf_password_path(settings: Settings, partner: str) -> Path:
    return settings.auth_dir / "leaf" / f"{partner}.password"


def load_access(settings: Settings) -> Access:
    return Access.load(access_path(settings))


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    settings.auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(settings.auth_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, text + "\n")


@dataclass(frozen=True, slots=True)
class Added:
    """What :func:`add_identity` did."""

    identity: str
    public_key: str
    seed: Path | None  # where the seed was written, if this call made one
    new_key: bool  # False when the key was registered already
    leaf_password: Path | None  # a partner's leaf password file, if this call made one


def _register(
    settings: Settings, access: Access, identity: str, nkey: str | None
) -> tuple[str, Path | None, bool, Path | None]:
    made: Path | None = None
    if nkey is None:
        path = seed_path(settings, identity)
        if path.exists():
            nkey = public_key(path)
        else:
            nkey = create_seed(path)
            made = path
    new_key = access.add_nkey(identity, nkey)
    leaf: Path | None = None
    entry = access.identities[identity]
    if is_partner_abroad(identity) and not entry.leaf_user:
        password = secrets.token_urlsafe(24)
        leaf = leaf_password_path(settings, identity)
        leaf.unlink(missing_ok=True)  # a leftover without its hash is useless
        _write_secret(leaf, password)
        entry.leaf_user = f"leaf-{identity}"
        entry.leaf_password_bcrypt = bcrypt.hashpw(password.encode(), bcrypt.gensalt(11)).decode()
    return nkey, made, new_key, leaf


def write_server_auth(settings: Settings, access: Access) -> None:
    """``accounts.conf`` and ``leafnodes.conf`` from the description, replaced atomically."""
    for path, text in (
        (accounts_path(settings), render_accounts(access, settings)),
        (leaf_users_path(settings), render_leaf_users(access)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)


def add_identity(settings: Settings, identity: str, *, nkey: str | None = None) -> Added:
    """Register ``identity`` (an agency or a role) in this data dir's description.

    Without ``nkey`` its seed is made here (or the one here is used); with ``nkey`` the
    public key an agency made on its own machine is registered, and no secret is made here.
    A partner abroad also gets a leaf-node user and password. The server configs are
    generated again.
    """
    with _locked(settings):
        access = load_access(settings)
        key, made, new_key, leaf = _register(settings, access, identity, nkey)
        access.save(access_path(settings))
        write_server_auth(settings, access)
    return Added(identity, key, made, new_key, leaf)


def ensure_local_identities(settings: Settings, agencies: Iterable[str]) -> list[str]:
    """The embedded default's identities: every role and each of ``agencies`` not known yet,
    with seeds made here, and the demo's staff consumers allowed. Returns the identities
    added (the server must reload to let them in)."""
    with _locked(settings):
        path = access_path(settings)
        access = Access.load(path, simulated_staff=True)
        before = access.to_json()
        added = []
        # The platform's services that publish (the deadline watchdog) are identities too.
        for identity in dict.fromkeys((*ROLES, *PLATFORM_SERVICES, *agencies)):
            # One registered elsewhere (``agency add --nkey``) keeps only its own key.
            if identity not in access.identities:
                _register(settings, access, identity, None)
                added.append(identity)
        access.simulated_staff = True
        changed = access.to_json() != before
        if changed or not path.exists():
            access.save(path)
        if changed or not accounts_path(settings).exists():
            write_server_auth(settings, access)
    return added
