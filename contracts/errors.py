"""The error tree of lintas: every error it raises on purpose, drawn here once.

Every such error derives from :class:`LintasError`, and is either *permanent* (retrying the
same input can never succeed) or *transient* (it may succeed later). Callers decide by the
branch, not the leaf; only the consumer edge turns them into ack, nak-with-delay or
quarantine. The classes defined here are the contracts' own; the others live in the module
named beside them, and each package exports those it can raise (``lintas.producers`` every
error a publish can raise). Other docstrings name the errors they raise and point here.

::

    LintasError
    ├── PermanentError
    │   ├── ContractError            bad input: names the event type, version and field
    │   │   ├── EnvelopeError        not JSON, or the CloudEvents envelope itself is wrong
    │   │   ├── SubjectError         a subject, agency id or case id that breaks the scheme
    │   │   ├── UnknownEventType     no such type in the registry
    │   │   ├── UnknownVersion       no such version of a known type (e.g. newer than ours)
    │   │   └── InvalidEventData     the data does not match the model of its type/version
    │   ├── SignatureError           unsigned, wrongly signed, or signed with another's key
    │   │   └── UnknownKey           (infra.keys.signing) a key id the registry does not hold
    │   ├── GateRefused              the privacy gate refuses it (lintas.contracts.gate)
    │   │   ├── ConsentMissing       no consent (or recorded override) covers scope and target
    │   │   ├── NotForAbroad         a field not declared for cross-border sharing, going abroad
    │   │   ├── CaseErased           personal data for a case whose data was erased
    │   │   └── NotAuthorised        (producers) erasing or assigning a case it does not own
    │   ├── AuthorityRefused         its source may not say it about this case now
    │   │                            (lintas.contracts.authority: carries the Refusal)
    │   ├── Refused                  (producers) admission refused the event: its code
    │   ├── PublishRejected          (producers) JetStream refused the message
    │   ├── IntakeTooLarge           (producers) larger than the intake stores
    │   ├── ReadRefused              (infra.reads) the read service will not show it
    │   ├── AccessRefused            (infra.nats.bus) the bus refused the credentials
    │   ├── AccessError              (infra.nats.access) a malformed access description
    │   ├── CredentialsError         (infra.nats.credentials) a seed file that does not hold
    │   ├── SigningKeyError          (infra.keys.registry) a key or registry file that does not
    │   ├── SealBroken               (infra.privacy.sealing) a sealed value that does not open
    │   │   └── WrapUnverified       (infra.privacy.custody) a wrap its recipient cannot verify
    │   ├── CustodyRefused           (infra.privacy.custody) the platform will not store it
    │   ├── NotAKeyHolder            (infra.privacy.casekeys) no wrap of the case's data key
    │   ├── NoKeyStore               (infra.privacy.casekeys) the key store is not declared
    │   ├── NoExchangeKey            (infra.privacy.casekeys) an agency with no X25519 key
    │   ├── TopologyConflict         (infra.nats.topology) exists with another configuration
    │   │   └── TopologyNotApplied   the server created it, but not as asked
    │   ├── TopologyMissing          (infra.nats.topology) a consumer the platform must declare
    │   ├── TopologyRefused          (infra.nats.topology) JetStream refused to create it
    │   ├── StreamCanDropEvents      (infra.nats.topology) a kept stream's setting drops events
    │   ├── CertError                (infra.deploy.certs) certificates that cannot be made
    │   ├── ArchiveError             (audit.archive) an archive that is not one
    │   ├── NoSuchStream             (audit.stream) nothing to read
    │   ├── NotAFreshStore           (audit.replay) a replay never writes a used database
    │   ├── UnknownCase              (consumers.projections) no such case in the record
    │   ├── NothingRunYet            (consumers.status) no consumer has run here
    │   ├── MetricsPortUnavailable   (infra.observability.metrics) a port it cannot listen on
    │   └── DemoRefused              (demo.run) the demo's own bus is taken
    ├── TransientError               broker down, timeout, database busy: retry later
    │   ├── BusUnavailable           (infra.errors) no answer, no stream yet, connection down
    │   │   ├── NatsClientClosed     the nats-py client gave up reconnecting: a new client
    │   │   └── IntakeFull           (producers) the intake holds all it may: admission behind
    │   ├── ChainContention          (producers) the case's head kept moving
    │   ├── HeadMoved                (producers) a conditional publish found newer events
    │   ├── ReplayWorkerDied         (audit.replay) a replay worker process died
    │   └── DemoTimeout              (demo.run) the demo's cases did not finish in time
    ├── EmbeddedNatsError            (infra.nats.embedded) the embedded server would not start
    │   ├── NatsBinaryNotFound       (also permanent) nothing to launch
    │   ├── UnsupportedNatsServer    (also permanent) older than 2.11, or unreadable version
    │   └── PortInUse                (also permanent) the port is taken
    └── CheckpointRaced              (audit.checkpoints) another checkpointer wrote first
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lintas.contracts.authority import Refusal

__all__ = [
    "AuthorityRefused",
    "CaseErased",
    "ConsentMissing",
    "ContractError",
    "EnvelopeError",
    "GateRefused",
    "InvalidEventData",
    "LintasError",
    "NotForAbroad",
    "PermanentError",
    "SignatureError",
    "SubjectError",
    "TransientError",
    "UnknownEventType",
    "UnknownVersion",
]


class LintasError(Exception):
    """Root of every error lintas raises on purpose."""


class PermanentError(LintasError):
    """Retrying the same input cannot succeed."""


class TransientError(LintasError):
    """May succeed when tried again later."""


class ContractError(PermanentError, ValueError):
    """An event or envelope that breaks its contract.

    ``event_type``, ``version`` and ``field`` say where, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        event_type: str | None = None,
        version: int | None = None,
        field: str | None = None,
    ) -> None:
        self.event_type = event_type
        self.version = version
        self.field = field
        where = []
        if event_type is not None:
            where.append(event_type if version is None else f"{event_type} v{version}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class EnvelopeError(ContractError):
    """The message is not a well-formed lintas CloudEvents envelope."""


class SubjectError(ContractError):
    """A subject, agency id or case id that does not follow the subject scheme."""


class UnknownEventType(ContractError):
    """The event type is not registered."""


class UnknownVersion(ContractError):
    """The type is known, the version is not (a newer producer, or a typo)."""


class InvalidEventData(ContractError):
    """``data`` does not validate against the model of its type and version."""


class SignatureError(PermanentError):
    """The event's signature does not prove that its ``source`` agency published it as is."""


class GateRefused(PermanentError):
    """The privacy gate refuses the event: the Publisher publishes nothing, and a receiving
    consumer quarantines it. The message names types, agencies and fields, never values."""


class ConsentMissing(GateRefused):
    """No ``consent.recorded`` covers the event's scope and target, and no
    ``consent.overridden`` names them (or the one that did was withdrawn)."""


class NotForAbroad(GateRefused):
    """An event to a partner abroad carries a field its contract does not declare for
    cross-border sharing."""


class CaseErased(GateRefused):
    """Personal data for a case whose personal data was erased (``case.erased``)."""


class AuthorityRefused(PermanentError):
    """The authority policy refuses the event: its source may not say it about this case in
    the case's state (:func:`lintas.contracts.authority.judge`). A reader quarantines it and
    folds nothing of it. Carries the :class:`~lintas.contracts.authority.Refusal`."""

    def __init__(self, refusal: Refusal, *, event_type: str, source: str) -> None:
        self.refusal = refusal
        self.code = refusal.code
        self.event_type = event_type
        where = f", field {refusal.field!r}" if refusal.field else ""
        super().__init__(
            f"{event_type} from {source} refused ({refusal.code}{where}): {refusal.reason}"
        )
