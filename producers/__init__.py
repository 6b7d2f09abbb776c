"""lintas.producers: the SDK an agency system publishes through (directly, or through
its own database with the transactional outbox).

Publishing as one agency (:func:`connect`; :class:`Outbox` for the outbox)::

    async with connect("kemlu") as publisher:
        await publisher.publish("case.opened", data, case_id=case_id, target="kp2mi")

Every error a publish (or :func:`connect`) raises on purpose is exported here. Retry on a
:class:`TransientError` (with the same ``event_id`` it is stored once), never on a
:class:`PermanentError`. The tree is drawn once, in :mod:`lintas.contracts.errors` (this
package's own classes are marked ``(producers)`` there); what each means for a publish:

* permanent, nothing published: :class:`ContractError` (and below it
  :class:`EnvelopeError`, :class:`SubjectError`, :class:`UnknownEventType`,
  :class:`UnknownVersion`, :class:`InvalidEventData`); :class:`SignatureError` (a signer
  of another agency's than the Publisher's); :class:`GateRefused` (:class:`ConsentMissing`,
  :class:`NotForAbroad`, :class:`CaseErased`, :class:`NotAuthorised`: erasing a case it
  does not own, assigning one it does not own unless it is the coordinator);
  :class:`NotAKeyHolder` (it carries or grants a child's data, and the Publisher has no
  case keys, or no wrap of the case's data key); :class:`NoExchangeKey`,
  :class:`NoKeyStore`, :class:`SealBroken`, :class:`ReadRefused`; :class:`Refused`
  (admission refused it, ``code`` and ``field``: docs/ADMISSION.md);
  :class:`PublishRejected`; :class:`IntakeTooLarge` (the intake stores no message that
  large, ``LINTAS_INTAKE_MAX_MSG_SIZE``); and from :func:`connect`, :class:`AccessRefused` and
  :class:`SigningKeyError`;
* transient: :class:`BusUnavailable` (no answer, no stream listening yet, connection
  down; :class:`NatsClientClosed`: the client gave up reconnecting, make a new one;
  :class:`IntakeFull`: the intake holds ``LINTAS_INTAKE_MAX_BYTES``, admission is behind),
  :class:`ChainContention` (the case's head kept moving under twenty attempts),
  :class:`HeadMoved` (``expected_head``: the case has events since; nothing published,
  read the case again and decide again).

Other docstrings of this package point here rather than listing them again.
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
from lintas.producers._admit import Admission, IntakeFull, IntakeTooLarge
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
    "IntakeFull",
    "IntakeTooLarge",
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
