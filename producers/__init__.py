"""lintas.producers: the SDK an agency system publishes through (directly, or through
its own database with the transactional outbox).

Publishing as one agency (:func:`connect`; :class:`Outbox` for the outbox)::

    async with connect("kemlu") as publisher:
        await publisher.publish("case.opened", data, case_id=case_id, target="kp2mi")

Every error a publish (or :func:`connect`) raises on purpose, by branch: retry on a
:class:`TransientError` (with the same ``event_id`` it is stored once), never on a
:class:`PermanentError`::

    LintasError
    ├── PermanentError              retrying the same publish cannot succeed
    │   ├── ContractError           the event breaks its contract; nothing published
    │   │   ├── EnvelopeError       the CloudEvents envelope itself is wrong
    │   │   ├── SubjectError        an agency id, case id or subject that breaks the scheme
    │   │   ├── UnknownEventType    no such event type
    │   │   ├── UnknownVersion      no such version of a known type
    │   │   └── InvalidEventData    the data does not match its type's model
    │   ├── SignatureError          a signer of another agency's than the Publisher's
    │   ├── GateRefused             the privacy gate refuses it; nothing published
    │   │   ├── ConsentMissing      no consent (or recorded override) covers scope and target
    │   │   ├── NotForAbroad        a field not declared for sharing abroad, going abroad
    │   │   ├── CaseErased          personal data for a case whose data was erased
    │   │   └── NotAuthorised       erasing a case it does not own; assigning one it does
    │   │                           not own unless it is the coordinator
    │   ├── NotAKeyHolder           it carries or grants a child's data, and the Publisher
    │   │                           has no case keys, or no wrap of the case's data key
    │   ├── NoExchangeKey           a consent names an agency with no known X25519 key
    │   ├── NoKeyStore              the case key store is not declared on this bus
    │   ├── SealBroken              a wrapped data key that does not open with its key
    │   ├── ReadRefused             the read service will not show what the gate needs
    │   ├── Refused                 admission refused it (``code``: docs/ADMISSION.md);
    │   │                           nothing of it entered the log
    │   ├── PublishRejected         JetStream refused it (another stream owns the subject)
    │   ├── AccessRefused           (connect) the bus refused the agency's credentials
    │   └── SigningKeyError         (connect) no signing key of the agency's here
    └── TransientError              worth retrying later
        ├── BusUnavailable          no answer, no stream listening yet, connection down
        │   └── NatsClientClosed    the nats-py client gave up reconnecting: a new client
        ├── ChainContention         the case's head kept moving under twenty attempts
        └── HeadMoved               (``expected_head``) the case has events since: nothing
                                    published; read the case again and decide again

Other docstrings of this package point here rather than drawing it again.
"""

from lintas.contracts.errors import (
    CaseErased,
    ConsentMissing,
    ContractError,
    EnvelopeError,
    GateRefused,
    InvalidEventData,
    LintasError,
    NotForAbroad,
    PermanentError,
    SignatureError,
    SubjectError,
    TransientError,
    UnknownEventType,
    UnknownVersion,
)
from lintas.infra.errors import BusUnavailable, NatsClientClosed
from lintas.infra.keys.signing import SigningKeyError
from lintas.infra.nats.bus import AccessRefused
from lintas.infra.privacy.casekeys import NoExchangeKey, NoKeyStore, NotAKeyHolder
from lintas.infra.privacy.sealing import SealBroken
from lintas.infra.reads import ReadRefused
from lintas.producers._admit import Admission
from lintas.producers._gate import NotAuthorised
from lintas.producers._wire import ChainContention, Draft, Refused
from lintas.producers.connection import connect, publisher_for
from lintas.producers.outbox import Outbox, OutboxRecord, OutboxRelay, ensure_outbox_table
from lintas.producers.publisher import CaseHead, HeadMoved, Published, Publisher, PublishRejected

__all__ = [
    "AccessRefused",
    "Admission",
    "BusUnavailable",
    "CaseErased",
    "CaseHead",
    "ChainContention",
    "ConsentMissing",
    "ContractError",
    "Draft",
    "EnvelopeError",
    "GateRefused",
    "HeadMoved",
    "InvalidEventData",
    "LintasError",
    "NatsClientClosed",
    "NoExchangeKey",
    "NoKeyStore",
    "NotAKeyHolder",
    "NotAuthorised",
    "NotForAbroad",
    "Outbox",
    "OutboxRecord",
    "OutboxRelay",
    "PermanentError",
    "PublishRejected",
    "Published",
    "Publisher",
    "ReadRefused",
    "Refused",
    "SealBroken",
    "SignatureError",
    "SigningKeyError",
    "SubjectError",
    "TransientError",
    "UnknownEventType",
    "UnknownVersion",
    "connect",
    "ensure_outbox_table",
    "publisher_for",
]
