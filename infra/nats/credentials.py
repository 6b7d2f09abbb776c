"""How a lintas process proves who it is to NATS, and what it connects with.

Every process connects as one identity (:mod:`lintas.infra.nats.access`): an agency, or the
``platform``, ``operator`` or ``auditor`` role. Each identity has an nkey: an Ed25519 key
pair whose seed (the private half) lives in ``<credentials dir>/<identity>.nk``, 0600, never
in the repository, and whose public key the server's authorization config lists. The server
sends a nonce, the client signs it with the seed: nothing secret crosses the wire or sits in
the server's config.

:func:`connect_options` gathers what nats-py (and FastStream's broker) need for one
identity: the seed file, the identity's own inbox prefix (its permissions let it subscribe
there and nowhere else), the JetStream API prefix its account sees, and TLS when configured.
An identity without a seed file connects without credentials: a bus without authorization
(a test server, a developer's own) still works as before.

Raises :class:`CredentialsError` (permanent): a seed file that is malformed or would be
overwritten. The whole tree: :mod:`lintas.contracts.errors`.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import nkeys

from lintas.contracts.errors import PermanentError
from lintas.infra.files import write_private
from lintas.infra.nats.access import inbox_prefix, is_identity, js_api_prefix
from lintas.infra.settings import Settings

__all__ = [
    "CredentialsError",
    "connect_options",
    "create_seed",
    "js_options",
    "public_key",
    "seed_path",
    "tls_context",
    "uses_credentials",
]


class CredentialsError(PermanentError):
    """A seed file is malformed, missing where required, or would be overwritten."""


def seed_path(settings: Settings, identity: str) -> Path:
    if not is_identity(identity):
        raise CredentialsError(f"{identity!r} is not an agency id or a role")
    return settings.nkeys_dir / f"{identity}.nk"


def create_seed(path: Path) -> str:
    """A new user nkey: its seed written to ``path`` (0600 from the start); its public key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    try:
        # No newline: nats-py reads the file's bytes as the seed, whole.
        write_private(path, seed)
    except FileExistsError:
        raise CredentialsError(f"{path} exists: a seed is never overwritten") from None
    return public_key(path)


def public_key(path: Path) -> str:
    """The public key (``U...``) of the user seed in ``path``."""
    try:
        raw = bytearray(path.read_bytes().strip())
        pair = nkeys.from_seed(raw)
        key = str(pair.public_key.decode())
    except FileNotFoundError:
        raise CredentialsError(f"no nkey seed at {path}") from None
    except (nkeys.NkeysError, ValueError) as exc:
        raise CredentialsError(f"{path} is not an nkey seed ({exc.__class__.__name__})") from None
    if not key.startswith("U"):
        raise CredentialsError(f"{path} holds a {key[0]}-type nkey, not a user's (U...)")
    return key


def uses_credentials(settings: Settings, identity: str) -> bool:
    """Whether ``identity`` logs in with an nkey here: then the bus enforces permissions, and
    an agency must ask the read service for what it may not read itself."""
    return seed_path(settings, identity).exists()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Trust the private CA (``LINTAS_NATS_TLS_CA``), present a client certificate if one is
    configured; None when no TLS setting is given (then a ``tls://`` URL uses the system CAs)."""
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None
    )
    if settings.nats_tls_cert:
        context.load_cert_chain(
            str(settings.nats_tls_cert),
            str(settings.nats_tls_key) if settings.nats_tls_key else None,
        )
    return context


def js_options(identity: str | None) -> dict[str, Any]:
    """Options for ``nc.jetstream()``: a partner's account sees the API under its prefix."""
    if identity is None:
        return {}
    prefix = js_api_prefix(identity)
    return {} if prefix == "$JS.API" else {"prefix": prefix}


def connect_options(settings: Settings, identity: str | None) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` / ``NatsBroker`` to connect as ``identity``."""
    options: dict[str, Any] = {}
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    if identity is None:
        return options
    options["inbox_prefix"] = inbox_prefix(identity)
    path = seed_path(settings, identity)
    if path.exists():
        public_key(path)  # a broken seed says so here, not as an authorization failure
        if path.read_bytes() != path.read_bytes().strip():
            raise CredentialsError(f"{path}: remove the whitespace around the seed")
        options["nkeys_seed"] = str(path)
    return options
