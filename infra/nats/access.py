"""Who may do what on the bus: the one description every NATS permission is generated from.

Two halves, one module:

* :data:`RULES` says what each *kind* of identity may publish and subscribe to, as subject
  templates: ``agency`` (every agency alike: national, village or partner abroad) and the
  roles ``platform``, ``operator``, ``auditor`` and ``admin``. Nothing is written per agency
  by hand.
* :class:`Access` says *who* exists: each identity's public nkeys (and, for a partner
  abroad, the user its leaf node logs in with). It is data, kept in
  ``<data_dir>/auth/access.json`` and changed by ``lintas agency add``.

:func:`render_accounts` turns the two into the ``accounts`` block of a nats-server config:

* account ``LINTAS`` holds JetStream (the event, quarantine, checkpoints and key streams), the
  roles, and the national agencies and villages, each user with its own permissions;
* each partner abroad gets an account of its own (``PARTNER_<ID>``) with no JetStream and no
  subjects but what ``LINTAS`` exports to it: exactly what :data:`RULES` lets an agency do,
  as services. A partner's leaf node is bound to that account (:func:`render_leaf_users`),
  so whatever runs behind it sees only that. In a partner's account the JetStream API is
  imported under :data:`PARTNER_API` (``lintas_api.CONSUMER...``), because a server with
  JetStream answers ``$JS.API.>`` itself in every account ("JetStream not enabled").

What the rules allow, and why (docs/DEPLOYMENT.md has the long form):

* an **agency** publishes only ``lintas.<itself>.>``; binds to, pulls from and acknowledges
  only its own durable consumers (``agency-<a>``, ``sent-<a>``), which the platform declares
  with the filters ``lintas.*.<a>.>``, ``lintas.*.all.>`` and ``lintas.<a>.>``; quarantines
  only under its consumers' names; reads the public-key registries (Ed25519 and X25519);
  has no right on the case key store at all (the platform's custody service writes it
  after its checks, and reads an agency the case markers and its own wraps); and asks
  the read service
  (``lintas_read.<itself>.*``, :mod:`lintas.infra.reads`) for the few reads of the stream it
  needs and may not make directly: any direct get or stream message get on ``LINTAS`` takes
  its subject in the request body, which permissions cannot see, so it is not granted; the
  read service also erases and revokes case keys as the log calls for (deleting from the
  key store takes a sequence in the body, so it is not granted either).
  It subscribes only to its own inbox prefix (``_INBOX.<a>.>``), where pulled messages and
  replies arrive; never to ``lintas.>`` (core NATS would hand it every event in flight).
* the **auditor** reads the event, checkpoints and key streams (info, direct and stream gets) and
  publishes nothing else: no event, no checkpoint, no consumer.
* the **operator** reads consumer state, stream names and lists, the quarantine, which it
  may also delete entries from (``lintas dlq retry``), and the public-key registry (a
  retried message's signature is checked again); it asks the read service when a
  consumer's oldest unacknowledged message was stored (its lag) and how much the event
  stream holds, never for a message. It may not ask for the info of the event stream, the
  intake or the case key store: a subjects filter in the request body (which permissions
  cannot see) lists their stored subjects, and those name agencies and case ids (who wrote
  what to whom about which case, who holds which case's key).
* the **platform** (declaring streams and consumers, the record projector, the read service,
  checkpoints, the key registry) may do anything in ``LINTAS`` except publish events and
  anything in :data:`LOG_GUARD`: change, purge, delete or restore the event or checkpoints
  stream, or delete a message of them. No identity but the admin may.
* the **admin** is break-glass: generated, used by no lintas process, it may use the whole
  JetStream API (the :data:`LOG_GUARD` actions included) and publishes no event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lintas.contracts.agencies import is_agency_id, is_partner_abroad
from lintas.contracts.errors import PermanentError
from lintas.contracts.subjects import INTAKE_ROOT, READ_ROOT, quarantine_subject
from lintas.infra.nats.topology import (
    ADMISSION_LEASES_BUCKET,
    ADMITTED_IDS_BUCKET,
    EXCHANGE_BUCKET,
    KEYS_BUCKET,
    agency_consumer,
    agency_sent_consumer,
    case_keys_stream,
    checkpoints_stream,
    intake_stream,
    quarantine_stream,
    staff_consumer,
)
from lintas.infra.settings import Settings

__all__ = [
    "ACCOUNT",
    "LOG_GUARD",
    "PARTNER_API",
    "ROLES",
    "RULES",
    "Access",
    "AccessError",
    "Grant",
    "IdentityEntry",
    "account_of",
    "consumers_of",
    "grant_for",
    "inbox_prefix",
    "is_identity",
    "is_own_reply",
    "js_api_prefix",
    "render_accounts",
    "render_leaf_users",
    "render_partner_leaf",
]

ACCOUNT = "LINTAS"
"""The account that holds JetStream, the roles, the national agencies and the villages."""
JS_API = "$JS.API"
PARTNER_API = "lintas_api"
"""The JetStream API prefix in a partner's own account (imported from ``LINTAS``)."""
ROLES = ("platform", "operator", "auditor", "admin")
_NKEY = re.compile(r"U[A-Z2-7]{55}")


class AccessError(PermanentError):
    """The access description is malformed, or asked for something it cannot hold."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Subject templates; a template with ``{c}`` is repeated for each of the agency's consumers.

    Placeholders: ``{a}`` the agency, ``{c}`` a consumer, ``{api}`` the JetStream API prefix
    of the identity's account, ``{stream}`` ``{quarantine}`` ``{checkpoints}`` ``{keys}``
    ``{exchange}`` stream names, ``{q}`` the quarantine subject root,
    ``{read}`` the read service's root; ``{intake}`` the intake root and ``{intake_stream}``
    its stream, ``{ids}`` and ``{leases}`` admission's buckets, ``{case_keys}`` the case key
    store's stream.
    """

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()


LOG_GUARD = tuple(
    f"{{api}}.STREAM.{action}.{{{stream}}}"
    for stream in ("stream", "checkpoints")
    for action in ("UPDATE", "DELETE", "PURGE", "MSG.DELETE", "RESTORE")
)
"""What only the break-glass ``admin`` may do to the event log and its checkpoints: change
their limits or retention, delete, purge or restore them, delete a message. Denied to every
other identity, on top of whatever its rule allows (a restore needs the stream gone, but is
no way for a log to begin either)."""

_READ_STREAM = (
    "{api}.STREAM.INFO.{s}",
    "{api}.STREAM.MSG.GET.{s}",
    "{api}.DIRECT.GET.{s}",
    "{api}.DIRECT.GET.{s}.>",
)

RULES: Mapping[str, Rule] = {
    "agency": Rule(
        publish=(
            # Its events, sent for admission (lintas.admission), which alone writes the log.
            "{intake}.{a}.*",
            "{read}.{a}.>",  # case heads, its own messages, gaps: lintas.infra.reads
            "{api}.CONSUMER.INFO.{stream}.{c}",  # bind to its own durable consumers...
            "{api}.CONSUMER.MSG.NEXT.{stream}.{c}",  # ...pull from them...
            "$JS.ACK.{stream}.{c}.>",  # ...acknowledge what they delivered
            "{q}.{c}",  # quarantine what they cannot apply
            "{api}.STREAM.MSG.GET.{keys}",  # the public-key registry
            "{api}.STREAM.MSG.GET.{exchange}",  # agencies' X25519 keys, to wrap data keys for
            # Nothing of the case key store: the platform's custody service
            # (lintas.infra.privacy.custody, on {read}.{a}.*) writes it, after its checks, and
            # reads an agency its markers and own wraps. A direct get whose subject ends in a
            # literal '>' or '*' token is a filter to the server, so no direct-get permission
            # can keep an agency to its own wraps.
        ),
        subscribe=("_INBOX.{a}.>",),
    ),
    "auditor": Rule(
        publish=(
            "{api}.INFO",
            *(t.replace("{s}", "{stream}") for t in _READ_STREAM),
            *(t.replace("{s}", "{checkpoints}") for t in _READ_STREAM),
            *(t.replace("{s}", "{keys}") for t in _READ_STREAM),
        ),
        subscribe=("_INBOX.auditor.>",),
    ),
    "operator": Rule(
        publish=(
            "{api}.INFO",
            # Names, configurations and message counts: a list request takes no subjects
            # filter (the server refuses one).
            "{api}.STREAM.NAMES",
            "{api}.STREAM.LIST",
            "{api}.CONSUMER.NAMES.*",
            "{api}.CONSUMER.LIST.*",
            "{api}.CONSUMER.INFO.*.*",
            # Its info too (quarantined counts per consumer): its subjects name consumers.
            *(t.replace("{s}", "{quarantine}") for t in _READ_STREAM),
            "{api}.STREAM.MSG.DELETE.{quarantine}",  # lintas dlq retry removes what it applied
            # The public keys: lintas dlq retry checks a message's signature again.
            *(t.replace("{s}", "{keys}") for t in _READ_STREAM),
            # lintas status: a consumer's lag (when its oldest unacknowledged message was
            # stored) and how much the event stream holds, which the read service tells, as
            # the operator may neither read the stream nor ask for its info.
            "{read}.operator.oldest-unacked",
            "{read}.operator.stream-state",
        ),
        subscribe=("_INBOX.operator.>",),
        # Whose subjects name agencies and cases: a subjects filter in an info request's
        # body lists them. Not granted above; denied as well, so that no widening of the
        # rule later grants them by accident.
        deny_publish=(
            "{api}.STREAM.INFO.{stream}",
            "{api}.STREAM.INFO.{intake_stream}",
            "{api}.STREAM.INFO.{case_keys}",
        ),
    ),
    "admission": Rule(
        # The writer of the event log: what it pulls from the intake, judged, goes to
        # LINTAS, and the answer to the sender's own inbox. It may not change a stream.
        publish=(
            "lintas.>",
            "_INBOX.*.>",
            "{api}.STREAM.INFO.{stream}",
            "{api}.STREAM.MSG.GET.{stream}",
            "{api}.DIRECT.GET.{stream}.>",
            "{api}.CONSUMER.INFO.{intake_stream}.*",
            "{api}.CONSUMER.MSG.NEXT.{intake_stream}.*",
            "$JS.ACK.{intake_stream}.>",
            "{api}.STREAM.INFO.KV_{ids}",
            "{api}.STREAM.MSG.GET.KV_{ids}",
            "{api}.DIRECT.GET.KV_{ids}.>",
            "$KV.{ids}.*",
            "{api}.STREAM.INFO.KV_{leases}",
            "{api}.STREAM.MSG.GET.KV_{leases}",
            "{api}.DIRECT.GET.KV_{leases}.>",
            "$KV.{leases}.*",
            "{api}.STREAM.INFO.{keys}",
            "{api}.STREAM.MSG.GET.{keys}",
            "{api}.DIRECT.GET.{keys}.>",
        ),
        subscribe=("_INBOX.admission.>",),
    ),
    "platform": Rule(
        publish=(">",),
        subscribe=(">",),
        # Events come from agencies only, and the log outlives everyone's mistakes.
        deny_publish=("lintas.>", *LOG_GUARD),
    ),
    # Break-glass: no lintas process connects as it. It may change, purge or delete the
    # streams nothing else may (a deliberate repair, docs/OPERATIONS.md#break-glass), but
    # publishes no event.
    "admin": Rule(
        publish=("{api}.>",),
        subscribe=("_INBOX.admin.>",),
    ),
}


def is_identity(name: str) -> bool:
    return name in ROLES or is_agency_id(name)


def _check_identity(name: str) -> None:
    if not is_identity(name):
        raise AccessError(
            f"{name!r} is neither an agency id (kp2mi, desa-<code>, my-jkm, ...) nor a role "
            f"({', '.join(ROLES)})"
        )


def account_of(identity: str) -> str:
    """``LINTAS``, or the partner's own account."""
    if is_partner_abroad(identity):
        return "PARTNER_" + identity.upper().replace("-", "_")
    return ACCOUNT


def js_api_prefix(identity: str) -> str:
    """The JetStream API prefix ``identity``'s account sees."""
    return PARTNER_API if account_of(identity) != ACCOUNT else JS_API


def inbox_prefix(identity: str) -> str:
    """Replies to ``identity`` arrive under this prefix, which no one else may subscribe to."""
    _check_identity(identity)
    return f"_INBOX.{identity}"


_REPLY_TOKEN = r"[^\s.*>\x00-\x1f\x7f]+"
_SERVICE_REPLY = re.compile(rf"_R_(?:\.{_REPLY_TOKEN})+")
"""The reply subject nats-server gives a request that crossed an account's service import."""


def is_own_reply(identity: str, reply: str, *, imported: bool = False) -> bool:
    """Whether a platform service may answer ``identity`` on ``reply``, a subject the
    requester chose: only a literal subject under its own inbox prefix (which no one else
    reads), or, with ``imported``, the reply nats-server made for a request that came through
    a partner's service import. The service publishes with its own rights, which reach the
    JetStream API and the platform's buckets: anything else would be the requester writing
    there through it; and a value that is no subject (a space in a header) would make its
    connection's protocol line unparseable and the server close it."""
    own = re.escape(inbox_prefix(identity))
    if re.fullmatch(rf"{own}(?:\.{_REPLY_TOKEN})+", reply):
        return True
    return imported and _SERVICE_REPLY.fullmatch(reply) is not None


def consumers_of(agency: str, *, simulated_staff: bool = False) -> list[str]:
    """The durable consumers an agency may use (the demo's simulated staff's too, if asked)."""
    names = [agency_consumer(agency).name, agency_sent_consumer(agency).name]
    if simulated_staff:
        names.append(staff_consumer(agency).name)
    return names


@dataclass(frozen=True, slots=True)
class Grant:
    """One identity's permissions, as nats-server reads them."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()

    def to_conf(self) -> dict[str, Any]:
        publish: dict[str, Any] = {"allow": list(self.publish)}
        if self.deny_publish:
            publish["deny"] = list(self.deny_publish)
        return {"publish": publish, "subscribe": {"allow": list(self.subscribe)}}


def _expand(templates: Iterable[str], values: Mapping[str, str], consumers: list[str]) -> list[str]:
    out: list[str] = []
    for template in templates:
        for consumer in consumers if "{c}" in template else [""]:
            subject = template.format_map({**values, "c": consumer})
            if subject not in out:
                out.append(subject)
    return out


def grant_for(
    identity: str, settings: Settings, *, api: str | None = None, simulated_staff: bool = False
) -> Grant:
    """What ``identity`` may publish and subscribe to, from :data:`RULES`.

    ``api``: the JetStream API prefix to write (default: the one its account sees).
    """
    _check_identity(identity)
    rule = RULES[identity if identity in RULES else "agency"]
    values = {
        "a": identity,
        "api": api or js_api_prefix(identity),
        "stream": settings.stream,
        "quarantine": quarantine_stream(settings),
        "checkpoints": checkpoints_stream(settings),
        "keys": f"KV_{KEYS_BUCKET}",
        "exchange": f"KV_{EXCHANGE_BUCKET}",
        "q": quarantine_subject(settings.stream, "").rstrip("."),
        "read": READ_ROOT,
        "intake": INTAKE_ROOT,
        "intake_stream": intake_stream(settings),
        "ids": ADMITTED_IDS_BUCKET,
        "leases": ADMISSION_LEASES_BUCKET,
        "case_keys": case_keys_stream(),
    }
    consumers = (
        consumers_of(identity, simulated_staff=simulated_staff) if identity not in RULES else []
    )
    # Denied to all but the admin even where the rule grants nothing like it: a rule widened
    # later must not open the log by accident.
    guard = () if identity == "admin" else LOG_GUARD
    return Grant(
        publish=tuple(_expand(rule.publish, values, consumers)),
        subscribe=tuple(_expand(rule.subscribe, values, consumers)),
        deny_publish=tuple(_expand((*rule.deny_publish, *guard), values, consumers)),
    )


# -- who exists ----------------------------------------------------------------------------


@dataclass(slots=True)
class IdentityEntry:
    """An identity's public nkeys (several while one is being rotated) and, for a partner
    abroad, its leaf node's user and the bcrypt hash of that user's password."""

    nkeys: list[str] = field(default_factory=list)
    leaf_user: str | None = None
    leaf_password_bcrypt: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"nkeys": list(self.nkeys)}
        if self.leaf_user:
            doc["leaf"] = {"user": self.leaf_user, "password_bcrypt": self.leaf_password_bcrypt}
        return doc


class Access:
    """Which identities exist, with their public keys: ``access.json``."""

    def __init__(
        self, identities: Mapping[str, IdentityEntry] | None = None, *, simulated_staff: bool
    ) -> None:
        self.identities: dict[str, IdentityEntry] = dict(identities or {})
        self.simulated_staff = simulated_staff

    def agencies(self) -> list[str]:
        return sorted(name for name in self.identities if name not in ROLES)

    def partners(self) -> list[str]:
        return [a for a in self.agencies() if is_partner_abroad(a)]

    def add_nkey(self, identity: str, public_key: str) -> bool:
        """Let ``public_key`` in as ``identity``; False if it already was."""
        _check_identity(identity)
        if not _NKEY.fullmatch(public_key):
            raise AccessError(f"{public_key!r} is not a NATS user public nkey (U + 55 base32)")
        for name, entry in self.identities.items():
            if public_key in entry.nkeys and name != identity:
                raise AccessError(f"nkey {public_key} already belongs to {name}")
        entry = self.identities.setdefault(identity, IdentityEntry())
        if public_key in entry.nkeys:
            return False
        entry.nkeys.append(public_key)
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "simulated_staff": self.simulated_staff,
            "identities": {
                name: self.identities[name].to_json() for name in sorted(self.identities)
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "access.json") -> Access:
        try:
            access = cls(simulated_staff=bool(doc.get("simulated_staff", False)))
            for name, item in dict(doc["identities"]).items():
                _check_identity(name)
                access.identities[name] = IdentityEntry()
                for key in item.get("nkeys", []):
                    access.add_nkey(name, key)
                leaf = item.get("leaf")
                if leaf:
                    access.identities[name].leaf_user = str(leaf["user"])
                    access.identities[name].leaf_password_bcrypt = str(leaf["password_bcrypt"])
        except (KeyError, TypeError, ValueError, AccessError) as exc:
            raise AccessError(f"{where} is malformed: {exc}") from None
        return access

    @classmethod
    def load(cls, path: Path, *, simulated_staff: bool = False) -> Access:
        if not path.exists():
            return cls(simulated_staff=simulated_staff)
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            raise AccessError(f"{path} is not JSON") from None
        return cls.from_json(doc, str(path))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)


# -- nats-server configuration ---------------------------------------------------------------

_HEADER = (
    "# Generated by lintas from {source} and the rules in lintas.infra.nats.access: do not edit,\n"
    "# change the description and generate again (`lintas agency add`, `lintas infra config`).\n"
    "# Public keys and password hashes only: nothing here is secret.\n"
)


class _Commented(dict[str, Any]):
    """A map rendered with a ``# comment`` line above it."""

    def __init__(self, comment: str, items: Mapping[str, Any]) -> None:
        super().__init__(items)
        self.comment = comment


def _users(access: Access, names: Iterable[str], settings: Settings) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    for name in names:
        grant = grant_for(name, settings, simulated_staff=access.simulated_staff).to_conf()
        for key in access.identities[name].nkeys:
            users.append(_Commented(name, {"nkey": key, "permissions": grant}))
    return users


def _partner_services(partner: str, settings: Settings, access: Access) -> list[tuple[str, str]]:
    """(subject in LINTAS, subject in the partner's account) of every service it may use."""
    grant = grant_for(partner, settings, api=JS_API, simulated_staff=access.simulated_staff)
    return [
        (subject, subject.replace(f"{JS_API}.", f"{PARTNER_API}.", 1)) for subject in grant.publish
    ]


def accounts_block(access: Access, settings: Settings) -> dict[str, Any]:
    """The ``accounts`` map of a nats-server config, as data."""
    main = [n for n in sorted(access.identities) if account_of(n) == ACCOUNT]
    exports: list[dict[str, Any]] = []
    accounts: dict[str, Any] = {}
    for partner in access.partners():
        name = account_of(partner)
        imports = []
        for theirs, ours in _partner_services(partner, settings, access):
            export: dict[str, Any] = {"service": theirs, "accounts": [name]}
            if ".CONSUMER.MSG.NEXT." in theirs:
                export["response_type"] = "stream"  # one pull request, many messages
            exports.append(export)
            service: dict[str, Any] = {"service": {"account": ACCOUNT, "subject": theirs}}
            if ours != theirs:
                service["to"] = ours
            imports.append(service)
        # Admission answers on the partner's own inbox, published in LINTAS: the partner's
        # account sees that inbox, and only that one, as a stream import.
        inbox = f"{inbox_prefix(partner)}.>"
        exports.append({"stream": inbox, "accounts": [name]})
        imports.append({"stream": {"account": ACCOUNT, "subject": inbox}})
        accounts[name] = {"users": _users(access, [partner], settings), "imports": imports}
    lintas: dict[str, Any] = {"jetstream": "enabled", "users": _users(access, main, settings)}
    if exports:
        lintas["exports"] = exports
    return {ACCOUNT: lintas, **accounts}


def _conf(value: Any, indent: int) -> str:
    """nats-server config syntax: quoted strings (no ``$VAR`` expansion inside quotes)."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines = ["{"]
        for key, item in value.items():
            if isinstance(item, _Commented):
                lines.append(f"{pad}  # {item.comment}")
            lines.append(f"{pad}  {key}: {_conf(item, indent + 1)}")
        return "\n".join([*lines, f"{pad}}}"])
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        lines = ["["]
        for item in value:
            if isinstance(item, _Commented):
                lines.append(f"{pad}  # {item.comment}")
            lines.append(f"{pad}  {_conf(item, indent + 1)}")
        return "\n".join([*lines, f"{pad}]"])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _conf_body(doc: Mapping[str, Any]) -> str:
    """Top-level entries of a config file."""
    return "".join(f"{key}: {_conf(item, 0)}\n" for key, item in doc.items())


def render_accounts(access: Access, settings: Settings, source: str = "access.json") -> str:
    """The ``accounts`` block (with every user and permission) as nats-server config text."""
    return _HEADER.format(source=source) + _conf_body(
        {"accounts": accounts_block(access, settings)}
    )


def render_leaf_users(access: Access, source: str = "access.json") -> str:
    """For inside a hub's ``leafnodes {}`` block: the user each partner's leaf node logs in
    with, bound to the partner's account."""
    users = [
        {
            "user": entry.leaf_user,
            "password": entry.leaf_password_bcrypt,
            "account": account_of(partner),
        }
        for partner in access.partners()
        if (entry := access.identities[partner]).leaf_user and entry.leaf_password_bcrypt
    ]
    return _HEADER.format(source=source) + _conf_body({"authorization": {"users": users}})


def render_partner_leaf(
    access: Access,
    settings: Settings,
    partner: str,
    *,
    hub_urls: Iterable[str],
    password: str,
    ca_file: str | None,
) -> str:
    """The partner's side: its local users (the same permissions as on the hub) and the
    remote that binds them to its account on the hub. Holds the leaf password: keep 0600."""
    entry = access.identities.get(partner)
    if entry is None or not is_partner_abroad(partner) or not entry.leaf_user:
        raise AccessError(f"{partner!r} is not a partner abroad with a leaf user here")
    urls = [url.replace("://", f"://{entry.leaf_user}:{password}@", 1) for url in hub_urls]
    remote: dict[str, Any] = {"urls": urls, "account": "LOCAL"}
    if ca_file:
        remote["tls"] = {"ca_file": ca_file}
    local = {"users": _users(access, [partner], settings)}
    doc = {"accounts": {"LOCAL": local}, "leafnodes": {"remotes": [remote]}}
    header = (
        f"# Generated by lintas for partner {partner}: its leaf node's local users and its\n"
        "# remote to the lintas hub. SECRET: holds the leaf password. Keep it 0600, never commit.\n"
    )
    return header + _conf_body(doc)
