"""Every JetStream object lintas runs on, declared here and nowhere else.

Streams: the event log (``LINTAS``, append-only), its quarantine (``LINTAS_QUARANTINE``: what
a consumer could not apply), its checkpoints (``LINTAS_CHECKPOINTS``), and the case key store
(``LINTAS_CASE_KEYS``, a KV bucket on a stream declared here so that its entries can be erased).
Consumers: durable pull consumers per agency (inbox and sent), the record and the watchdog.
:func:`declare_platform` declares them all, as the platform. The buckets of agencies' public
keys (``LINTAS_KEYS``, ``LINTAS_EXCHANGE_KEYS``) are configured here too, declared by the
platform with the event stream's replica count (``LINTAS_STREAM_REPLICAS``), or made by
whoever first publishes keys on a bus the platform never declared (``lintas keys publish``).

Declaring is idempotent and never overwrites. A stream or consumer that already exists with
another configuration is reported as a :class:`TopologyConflict` naming each field: quietly
"fixing" it could drop a retention guarantee or redeliver a whole history, so that change is
for an operator to make on purpose. The one exception is the intake's limits
(:data:`INTAKE_LIMITS`), which remove nothing it holds: an existing intake is updated to the
settings' limits. What the server answers to a create is checked the same
way: a server that ignores a field it does not know (``filter_subjects`` before nats-server
2.10) creates something else than asked, reported as :class:`TopologyNotApplied`.

The event log and its checkpoints are *kept* streams (:func:`kept_streams`): nothing may
leave them. :func:`dropping_settings` is the one rule for what in a stream's configuration
lets events go; :func:`declare_platform` refuses to start on such a stream
(:class:`StreamCanDropEvents`) and ``lintas verify`` reports it.

Both sides are compared in one normal form (:func:`stream_differences`,
:func:`consumer_differences`): "unlimited" is None whether written None, 0 or -1, durations
are seconds, enums their string values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import nats.js.errors
from nats.js import JetStreamManager
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ReplayPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)

from lintas.contracts.errors import PermanentError
from lintas.contracts.subjects import (
    EVERY_EVENT,
    checkpoints_filter,
    inbound_filters,
    intake_filter,
    intake_partition_filter,
    intake_partitioning,
    kv_subject,
    outbound_filter,
    quarantine_filter,
)
from lintas.infra.errors import bus_errors
from lintas.infra.settings import Settings

__all__ = [
    "CASE_KEYS_BUCKET",
    "EXCHANGE_BUCKET",
    "INTAKE_LIMITS",
    "KEYS_BUCKET",
    "ConsumerSpec",
    "StreamCanDropEvents",
    "TopologyConflict",
    "TopologyMissing",
    "TopologyNotApplied",
    "TopologyRefused",
    "agency_consumer",
    "agency_of",
    "agency_sent_consumer",
    "case_keys_stream",
    "case_keys_stream_config",
    "check_consumer",
    "check_kept_streams",
    "checkpoints_config",
    "checkpoints_stream",
    "consumer_config",
    "consumer_differences",
    "declare",
    "declare_platform",
    "deployment_consumers",
    "dropping_settings",
    "dropping_streams",
    "ensure_consumer",
    "ensure_key_buckets",
    "ensure_stream",
    "ensure_stream_config",
    "exchange_bucket_config",
    "kept_streams",
    "keys_bucket_config",
    "open_key_bucket",
    "quarantine_config",
    "quarantine_stream",
    "record_consumer",
    "staff_consumer",
    "stream_config",
    "stream_differences",
    "watchdog_consumer",
]

CREATED = "created"
UNCHANGED = "unchanged"
UPDATED = "updated"
# JetStream err_codes (nats-server's errors.json).
_CONSUMER_NOT_FOUND = 10014  # 10059 would be the stream itself missing
_STREAM_NAME_IN_USE = 10058  # "stream name already in use with a different configuration"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # JetStream names: no dots, wildcards or spaces


Differences = dict[str, tuple[object, object]]
"""Field name to (the server's value, lintas's value), both in normal form."""


def _detail(differences: Differences) -> str:
    return "; ".join(
        f"{field}: existing {have!r}, wanted {want!r}"
        for field, (have, want) in differences.items()
    )


class TopologyConflict(PermanentError):
    """A stream or consumer exists with a configuration other than the one lintas declares."""

    def __init__(self, kind: str, name: str, differences: Differences) -> None:
        self.kind = kind
        self.name = name
        self.differences = differences
        super().__init__(self._message())

    def _message(self) -> str:
        return (
            f"{self.kind} {self.name!r} exists with a different configuration "
            f"({_detail(self.differences)}); lintas does not overwrite it: change or remove "
            "it deliberately"
        )


class TopologyNotApplied(TopologyConflict):
    """The server created a stream or consumer, but not as asked: it ignored some fields.

    Typically a nats-server older than 2.10, which drops ``filter_subjects`` and so makes a
    consumer of the whole stream. What it created is left in place for an operator to see.
    """

    def _message(self) -> str:
        return (
            f"{self.kind} {self.name!r} was created, but the server did not apply the "
            f"configuration ({_detail(self.differences)}); it is probably older than "
            "nats-server 2.10 (lintas needs 2.11): upgrade it, then remove "
            f"the {self.kind} so lintas declares it again"
        )


class TopologyMissing(PermanentError):
    """A consumer this process may bind to but not create does not exist."""


class TopologyRefused(PermanentError):
    """JetStream would not create a stream or consumer as asked (retrying cannot help)."""

    def __init__(self, kind: str, name: str, error: nats.js.errors.APIError) -> None:
        super().__init__(
            f"JetStream refused to create {kind} {name}: "
            f"{error.description or error.__class__.__name__} (code {error.err_code}); "
            "check LINTAS_STREAM_REPLICAS against the number of servers"
        )


class StreamCanDropEvents(PermanentError):
    """The event log or the checkpoints stream is configured so that events can leave it,
    or valid ones never arrive (:func:`dropping_settings`): lintas refuses to run on it."""

    def __init__(self, found: dict[str, list[str]]) -> None:
        self.found = found
        named = "; ".join(f"stream {name!r}: {', '.join(why)}" for name, why in found.items())
        super().__init__(
            f"{named}. lintas does not run on a log that can lose events: restore the "
            "setting as the break-glass administrator (docs/OPERATIONS.md#break-glass), "
            "then `lintas verify` what the log still holds"
        )


def dropping_settings(config: StreamConfig) -> list[str]:
    """What in a stream's configuration lets events leave it, be rewritten, or never get
    in: one line per setting, each starting with the setting; empty if nothing does.

    For the two streams whose worth is that nothing leaves them (:func:`kept_streams`).
    Every limit counts, whatever the discard policy: ``discard=old`` removes the oldest
    events past it, ``discard=new`` refuses new ones, and either way the log stops holding
    every event the agencies sent. ``discard`` alone, with no limit, does nothing, so it is
    named only with a limit. Not named: what loses nothing (replicas, the duplicate window,
    ``no_ack``, republishing, sources: an event that did not come through admission is
    reported by ``lintas verify``).
    """
    found: list[str] = []
    retention = _plain(config.retention) or "limits"
    if retention != "limits":
        found.append(f"retention={retention} (events are removed once consumed)")
    if _plain(config.storage) == "memory":
        found.append("storage=memory (events are lost when the server stops)")
    if str(_plain(config.persist_mode) or "default") == "async":
        found.append("persist_mode=async (acknowledged events can be lost in a crash)")
    if age := _duration(_limit(config.max_age)):
        found.append(f"max_age={age:g}s (older events are removed)")
    discard = _plain(config.discard) or "old"
    past = "the oldest events are removed" if discard == "old" else "new events are refused"
    for name in ("max_msgs", "max_bytes"):
        if (value := _limit(getattr(config, name))) is not None:
            found.append(f"{name}={value:g} with discard={discard} (past it {past})")
    if (per_case := _limit(config.max_msgs_per_subject)) is not None:
        refused = discard == "new" and config.discard_new_per_subject
        found.append(
            f"max_msgs_per_subject={per_case:g} ("
            + (
                "a case's new events are refused"
                if refused
                else "a case's older events are removed"
            )
            + ")"
        )
    if (size := _limit(config.max_msg_size)) is not None:
        found.append(f"max_msg_size={size:g} (a larger valid event is refused)")
    if not config.deny_delete:
        found.append("deny_delete=false (events may be deleted)")
    if not config.deny_purge:
        found.append("deny_purge=false (the stream may be purged)")
    if config.allow_rollup_hdrs:
        found.append("allow_rollup_hdrs=true (a Nats-Rollup header purges a case, or all)")
    if config.allow_msg_ttl:
        found.append("allow_msg_ttl=true (a Nats-TTL header makes an event expire)")
    if config.sealed:
        found.append("sealed=true (no new event is accepted)")
    if config.mirror is not None:
        found.append(f"mirror={_source(config.mirror)} (takes no events of its own)")
    if config.subject_transform is not None:
        found.append(
            f"subject_transform={_transform(config.subject_transform)} (rewrites subjects)"
        )
    return found


def _kept_stream(
    settings: Settings, name: str, subjects: str, description: str | None, *, deny_delete: bool
) -> StreamConfig:
    """A stream that keeps every message it is given (no limit drops any), file-backed,
    deduplicating, replicated as the event stream is, never purged."""
    return StreamConfig(
        name=name,
        description=description,
        subjects=[subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        num_replicas=settings.stream_replicas,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=deny_delete,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
    )


def stream_config(settings: Settings) -> StreamConfig:
    """The event log: file-backed, deduplicating, and append-only (no delete, no purge)."""
    return _kept_stream(settings, settings.stream, EVERY_EVENT, None, deny_delete=True)


def quarantine_stream(settings: Settings) -> str:
    return f"{settings.stream}_QUARANTINE"


def quarantine_config(settings: Settings) -> StreamConfig:
    """Messages consumers could not apply, with the reason (:mod:`lintas.consumers.quarantine`).
    Entries are deleted once retried; purging everything at once is not allowed."""
    return _kept_stream(
        settings,
        quarantine_stream(settings),
        quarantine_filter(settings.stream),
        "messages lintas consumers could not apply, with the reason",
        deny_delete=False,
    )


def checkpoints_stream(settings: Settings) -> str:
    return f"{settings.stream}_CHECKPOINTS"


def checkpoints_config(settings: Settings) -> StreamConfig:
    """Signed checkpoints over ranges of the event stream (:mod:`lintas.audit.checkpoints`),
    one message each, in order; append-only like the event stream."""
    return _kept_stream(
        settings,
        checkpoints_stream(settings),
        checkpoints_filter(settings.stream),
        "signed checkpoints over ranges of the event stream",
        deny_delete=True,
    )


def kept_streams(settings: Settings) -> tuple[str, str]:
    """The streams nothing may leave: the event log and its checkpoints."""
    return settings.stream, checkpoints_stream(settings)


CASE_KEYS_BUCKET: Final = "LINTAS_CASE_KEYS"
"""The case key store (:mod:`lintas.infra.privacy.casekeys`)."""


def case_keys_stream(bucket: str = CASE_KEYS_BUCKET) -> str:
    return f"KV_{bucket}"


def case_keys_stream_config(settings: Settings, bucket: str = CASE_KEYS_BUCKET) -> StreamConfig:
    """A KV bucket's stream (one value per key, never replaced), with message delete
    allowed: erasure. JetStream's message delete overwrites the stored bytes, where a KV
    delete or purge only hides them."""
    return _create_only_bucket(
        settings,
        bucket,
        "lintas case data keys, wrapped per agency (erasable)",
        erasable=True,
    )


def _create_only_bucket(
    settings: Settings, bucket: str, description: str, *, erasable: bool
) -> StreamConfig:
    """A KV bucket's stream whose keys are written once: a second write to a key is refused
    on the server's word, so whoever may write cannot replace what is there."""
    return StreamConfig(
        name=f"KV_{bucket}",
        description=description,
        subjects=[kv_subject(bucket, ">")],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        num_replicas=settings.stream_replicas,
        max_msgs_per_subject=1,
        discard_new_per_subject=True,
        duplicate_window=120.0,
        allow_rollup_hdrs=False,
        deny_delete=not erasable,
        deny_purge=not erasable,
        allow_direct=True,
    )


KEYS_BUCKET: Final = "LINTAS_KEYS"
"""Agencies' Ed25519 public keys (:mod:`lintas.infra.keys.signing`), one KV key per agency."""
EXCHANGE_BUCKET: Final = "LINTAS_EXCHANGE_KEYS"
"""Agencies' X25519 public keys (:mod:`lintas.infra.keys.exchange`), one KV key per agency."""


def keys_bucket_config(replicas: int = 1) -> KeyValueConfig:
    """With history: a rotation leaves the agency's previous list of keys behind.

    Made at the platform's first start (``lintas up``, ``lintas run platform``, the demo:
    :func:`lintas.infra.keys.signing.register_keys`) or by the first ``lintas keys
    publish``: the registry an auditor exports (``lintas keys export``) and keeps."""
    return KeyValueConfig(
        bucket=KEYS_BUCKET, history=16, description="agencies' public keys", replicas=replicas
    )


def exchange_bucket_config(replicas: int = 1) -> KeyValueConfig:
    """Made as :func:`keys_bucket_config`'s bucket is."""
    return KeyValueConfig(
        bucket=EXCHANGE_BUCKET,
        history=4,
        description="agencies' X25519 public keys, to wrap case data keys for",
        replicas=replicas,
    )


async def open_key_bucket(js: Any, bucket: str, replicas: int = 1) -> Any:
    """The public key bucket ``bucket`` (:data:`KEYS_BUCKET` or :data:`EXCHANGE_BUCKET`),
    made as configured here, with ``replicas``, if it is missing."""
    config = {KEYS_BUCKET: keys_bucket_config, EXCHANGE_BUCKET: exchange_bucket_config}[bucket]
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(config(replicas))


async def ensure_key_buckets(js: Any, settings: Settings) -> dict[str, str]:
    """Both public key buckets, made with the event stream's replica count if missing; one
    that exists with fewer replicas (made before the platform declared them, or by a
    ``lintas keys publish`` on a bus it never declared) is a :class:`TopologyConflict`:
    the registry of keys must survive what the log survives."""
    outcome = {}
    for bucket in (KEYS_BUCKET, EXCHANGE_BUCKET):
        name = f"KV_{bucket}"
        with bus_errors(f"declaring the key bucket {bucket}"):
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    await open_key_bucket(js, bucket, settings.stream_replicas)
                except nats.js.errors.APIError as exc:
                    # e.g. 10074: more replicas than servers; 10005: a peer is offline
                    raise TopologyRefused("stream", name, exc) from None
                outcome[name] = CREATED
                continue
        have = info.config.num_replicas or 1
        if have != settings.stream_replicas:
            raise TopologyConflict(
                "stream", name, {"num_replicas": (have, settings.stream_replicas)}
            )
        outcome[name] = UNCHANGED
    return outcome


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: its name, the subjects it reads, and from where.

    ``deliver_new``: only events published after the consumer is created, not the history
    (simulated staff react to what happens while they are there).
    """

    name: str
    filter_subjects: tuple[str, ...]
    description: str = ""
    deliver_new: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a valid JetStream consumer name")
        if not self.filter_subjects:
            raise ValueError(f"consumer {self.name!r} has no filter subject")


def consumer_config(spec: ConsumerSpec, settings: Settings) -> ConsumerConfig:
    filters = list(spec.filter_subjects)
    return ConsumerConfig(
        durable_name=spec.name,
        description=spec.description or None,
        # filter_subjects needs nats-server 2.10; one filter keeps the field every server knows.
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW if spec.deliver_new else DeliverPolicy.ALL,
        replay_policy=ReplayPolicy.INSTANT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        # Bounds redelivery work after a crash; a few pulls' worth keeps pipelines full.
        max_ack_pending=4 * settings.batch_size,
    )


def agency_consumer(agency: str) -> ConsumerSpec:
    return ConsumerSpec(
        f"agency-{agency}", tuple(inbound_filters(agency)), f"events addressed to {agency}"
    )


def agency_sent_consumer(agency: str) -> ConsumerSpec:
    """An agency's worklist also needs its own answers, which its inbound filter omits."""
    return ConsumerSpec(
        f"sent-{agency}", (outbound_filter(agency),), f"events {agency} published itself"
    )


def agency_of(consumer: str) -> str | None:
    """Whose worklist a consumer feeds: ``a`` for :func:`agency_consumer` and
    :func:`agency_sent_consumer` names (``agency-<a>``, ``sent-<a>``), else None."""
    for prefix in ("agency-", "sent-"):
        if consumer.startswith(prefix):
            return consumer.removeprefix(prefix) or None
    return None


def record_consumer() -> ConsumerSpec:
    return ConsumerSpec("record", (EVERY_EVENT,), "every event, for the coordination record")


def watchdog_consumer(name: str = "watchdog") -> ConsumerSpec:
    """The deadline watchdog reads every event: whether a notice is due depends on all that
    its case holds, and its tracked position must cover the whole case (see
    ``consumers/watchdog.py``)."""
    return ConsumerSpec(name, (EVERY_EVENT,), "every event, for hand-off deadlines")


def deployment_consumers(agencies: Iterable[str]) -> list[ConsumerSpec]:
    """The record projector, the deadline watchdog and, per agency, its inbox and sent
    consumers."""
    specs = [record_consumer(), watchdog_consumer()]
    for agency in agencies:
        specs += [agency_consumer(agency), agency_sent_consumer(agency)]
    return specs


def staff_consumer(agency: str) -> ConsumerSpec:
    """The demo's simulated staff: they react to events published once they are there."""
    return ConsumerSpec(
        f"staff-{agency}",
        tuple(inbound_filters(agency)),
        f"simulated staff of {agency}",
        deliver_new=True,
    )


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _seconds(value: float | None) -> float:
    # The server answers in nanoseconds, which nats-py turns back into float seconds.
    return round(value or 0.0, 6)


def _limit(value: float | None) -> float | None:
    """A count or size limit; None, 0 and -1 all mean unlimited to the server."""
    return None if value is None or value <= 0 else value


def _duration(value: float | None) -> float | None:
    """An optional duration in seconds; None and 0 both mean none."""
    return round(value, 6) if value else None


def _text(value: str | None) -> str | None:
    return value or None


def _source(source: Any) -> str | None:
    return None if source is None else str(source.name)


def _transform(value: Any) -> str | None:
    """A subject transform or republish rule, as ``src -> dest``."""
    return None if value is None else f"{value.src} -> {value.dest}"


def _stream_fields(cfg: StreamConfig) -> dict[str, object]:
    """Everything that decides what the stream keeps and who may remove it, in normal form."""
    return {
        "subjects": sorted(cfg.subjects or []),
        "storage": _plain(cfg.storage),
        "retention": _plain(cfg.retention),
        "discard": _plain(cfg.discard),
        "discard_new_per_subject": bool(cfg.discard_new_per_subject),
        "num_replicas": cfg.num_replicas or 1,
        "duplicate_window": _seconds(cfg.duplicate_window),
        "deny_delete": bool(cfg.deny_delete),
        "deny_purge": bool(cfg.deny_purge),
        # A Nats-Rollup header purges a subject, a Nats-TTL header expires a message.
        "allow_rollup_hdrs": bool(cfg.allow_rollup_hdrs),
        "allow_msg_ttl": bool(cfg.allow_msg_ttl),
        "allow_direct": bool(cfg.allow_direct),
        "no_ack": bool(cfg.no_ack),  # publishers would get no acknowledgement
        "sealed": bool(cfg.sealed),
        "max_age": _duration(_limit(cfg.max_age)),
        "max_msgs": _limit(cfg.max_msgs),
        "max_bytes": _limit(cfg.max_bytes),
        "max_msgs_per_subject": _limit(cfg.max_msgs_per_subject),
        "max_msg_size": _limit(cfg.max_msg_size),
        "max_consumers": _limit(cfg.max_consumers),
        "mirror": _source(cfg.mirror),
        "sources": sorted(str(_source(s)) for s in cfg.sources or []),
        "subject_transform": _transform(cfg.subject_transform),
        "republish": _transform(cfg.republish),
    }


_START_FIELDS = {"by_start_sequence": "opt_start_seq", "by_start_time": "opt_start_time"}


def _consumer_fields(cfg: ConsumerConfig) -> dict[str, object]:
    """Everything that decides what is delivered, when and how often, in normal form.

    The description is left out: it is for people and cannot change what is delivered.
    ``max_waiting`` only when set: the server fills in its own default otherwise.
    """
    filters = cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else [])
    deliver_policy = _plain(cfg.deliver_policy)
    start = _START_FIELDS.get(str(deliver_policy))
    fields: dict[str, object] = {
        "durable_name": cfg.durable_name,
        "filter_subjects": sorted(filters),
        "ack_policy": _plain(cfg.ack_policy),
        "deliver_policy": deliver_policy,
        # The server keeps a start position only for the policies that use one.
        "opt_start_seq": (cfg.opt_start_seq or None) if start == "opt_start_seq" else None,
        "opt_start_time": cfg.opt_start_time if start == "opt_start_time" else None,
        "replay_policy": _plain(cfg.replay_policy),
        "ack_wait": _seconds(cfg.ack_wait),
        "backoff": [round(b, 6) for b in cfg.backoff] if cfg.backoff else None,
        "max_deliver": _limit(cfg.max_deliver),
        "max_ack_pending": _limit(cfg.max_ack_pending),
        "headers_only": bool(cfg.headers_only),
        "sample_freq": _text(cfg.sample_freq),
        "rate_limit_bps": _limit(cfg.rate_limit_bps),
        # A durable with an inactivity threshold is deleted by the server when idle.
        "inactive_threshold": _duration(cfg.inactive_threshold),
        # A pull consumer has none; with one the server pushes to whoever listens there.
        "deliver_subject": _text(cfg.deliver_subject),
        "deliver_group": _text(cfg.deliver_group),
    }
    if cfg.max_waiting is not None:
        fields["max_waiting"] = cfg.max_waiting
    return fields


def _differences(
    fields: Callable[[Any], dict[str, object]], existing: Any, wanted: Any
) -> Differences:
    have, want = fields(existing), fields(wanted)
    return {f: (have.get(f), want[f]) for f in want if have.get(f) != want[f]}


def stream_differences(existing: StreamConfig, wanted: StreamConfig) -> Differences:
    """How ``existing`` (as the server reports it) differs from ``wanted``, field by field."""
    return _differences(_stream_fields, existing, wanted)


def consumer_differences(existing: ConsumerConfig, wanted: ConsumerConfig) -> Differences:
    """How ``existing`` (as the server reports it) differs from ``wanted``, field by field."""
    return _differences(_consumer_fields, existing, wanted)


async def ensure_stream(js: JetStreamManager, settings: Settings) -> str:
    """Create the event stream if missing; ``"created"`` or ``"unchanged"``."""
    return await ensure_stream_config(js, stream_config(settings))


async def ensure_stream_config(
    js: JetStreamManager, want: StreamConfig, updatable: frozenset[str] = frozenset()
) -> str:
    """Create a stream as ``want`` says if missing; report, never overwrite, a different one.

    Except where it differs only in ``updatable`` fields (normal-form names of
    :func:`stream_differences`): then it is updated to ``want``, ``"updated"``. Only for
    fields whose update removes nothing the stream holds (:data:`INTAKE_LIMITS`)."""
    name = want.name or ""
    with bus_errors(f"declaring stream {name}"):
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            try:
                created = await js.add_stream(want)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise TopologyRefused("stream", name, exc) from None
                # Created meanwhile by another process, with another configuration.
                info = await js.stream_info(name)
            except nats.js.errors.APIError as exc:
                # e.g. 10074: more replicas (LINTAS_STREAM_REPLICAS) than servers
                raise TopologyRefused("stream", name, exc) from None
            else:
                if differences := stream_differences(created.config, want):
                    raise TopologyNotApplied("stream", name, differences) from None
                return CREATED
    if not (differences := stream_differences(info.config, want)):
        return UNCHANGED
    if not differences.keys() <= updatable:
        raise TopologyConflict("stream", name, differences)
    with bus_errors(f"updating the limits of stream {name}"):
        try:
            updated = await js.update_stream(want)
        except nats.js.errors.APIError as exc:
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise
            raise TopologyRefused("stream", name, exc) from None
    if differences := stream_differences(updated.config, want):
        raise TopologyNotApplied("stream", name, differences)
    return UPDATED


async def ensure_consumer(
    js: JetStreamManager, stream: str, spec: ConsumerSpec, settings: Settings
) -> str:
    """Create the durable consumer if missing; ``"created"`` or ``"unchanged"``."""
    want = consumer_config(spec, settings)
    with bus_errors(f"declaring consumer {spec.name} on {stream}"):
        try:
            info = await js.consumer_info(stream, spec.name)
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code != _CONSUMER_NOT_FOUND:
                raise
            created = await js.add_consumer(stream, want)
            if differences := consumer_differences(created.config, want):
                raise TopologyNotApplied("consumer", spec.name, differences) from None
            return CREATED
    if differences := consumer_differences(info.config, want):
        raise TopologyConflict("consumer", spec.name, differences)
    return UNCHANGED


async def check_consumer(
    js: JetStreamManager, stream: str, spec: ConsumerSpec, settings: Settings
) -> None:
    """Check that the durable consumer exists as lintas declares it, without creating it:
    what an agency does on a secured bus, where only the platform may create consumers."""
    want = consumer_config(spec, settings)
    with bus_errors(f"looking up consumer {spec.name} on {stream}"):
        try:
            info = await js.consumer_info(stream, spec.name)
        except nats.js.errors.NotFoundError:
            raise TopologyMissing(
                f"consumer {spec.name!r} does not exist on stream {stream}: the platform "
                "declares it (`lintas agency add`, or `lintas up`)"
            ) from None
    if differences := consumer_differences(info.config, want):
        raise TopologyConflict("consumer", spec.name, differences)


async def declare(
    js: JetStreamManager, settings: Settings, specs: Iterable[ConsumerSpec]
) -> dict[str, str]:
    """The stream, then each consumer: what happened to each, by name."""
    outcome = {settings.stream: await ensure_stream(js, settings)}
    for spec in specs:
        outcome[spec.name] = await ensure_consumer(js, settings.stream, spec, settings)
    return outcome


async def declare_platform(
    js: JetStreamManager, settings: Settings, specs: Iterable[ConsumerSpec]
) -> dict[str, str]:
    """Everything a lintas deployment declares, in one call: the event stream and its
    consumers, then the quarantine stream they rely on (a consumer that cannot quarantine a
    poison message stalls rather than drop it), the checkpoints stream, the case key
    store and the public key buckets (all with the event stream's replica count). What
    happened to each, by name.

    First the streams nothing may leave are checked (:func:`check_kept_streams`): lintas
    does not start on a log that can lose events. Nothing here updates a stream but the
    intake's limits (:data:`INTAKE_LIMITS`), which the platform's identity may update; the
    log guard (:mod:`lintas.infra.nats.access`) keeps it from updating the log."""
    await check_kept_streams(js, settings)
    outcome = await declare(js, settings, specs)
    for config in (
        quarantine_config(settings),
        checkpoints_config(settings),
        case_keys_stream_config(settings),
        intake_config(settings),
        admitted_ids_config(settings),
        admission_leases_config(settings),
    ):
        updatable = INTAKE_LIMITS if config.name == intake_stream(settings) else frozenset()
        outcome[config.name or ""] = await ensure_stream_config(js, config, updatable)
    outcome |= await ensure_key_buckets(js, settings)
    for partition in range(settings.admission_partitions):
        spec = admission_consumer(partition)
        outcome[spec.name] = await ensure_consumer(js, intake_stream(settings), spec, settings)
    return outcome


async def dropping_streams(js: JetStreamManager, settings: Settings) -> dict[str, list[str]]:
    """:func:`dropping_settings` of each of :func:`kept_streams` that exists and has any,
    by name. Needs only stream info: the auditor may ask."""
    found: dict[str, list[str]] = {}
    for name in kept_streams(settings):
        with bus_errors(f"reading the configuration of stream {name}"):
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                continue
        if why := dropping_settings(info.config):
            found[name] = why
    return found


async def check_kept_streams(js: JetStreamManager, settings: Settings) -> None:
    """Raise :class:`StreamCanDropEvents` if the event log or the checkpoints stream can lose
    events: what every lintas process that declares checks when it starts."""
    if found := await dropping_streams(js, settings):
        raise StreamCanDropEvents(found)


# -- admission (lintas.admission) -------------------------------------------------------------


def intake_stream(settings: Settings) -> str:
    return f"{settings.stream}_INTAKE"


def intake_config(settings: Settings) -> StreamConfig:
    """What agencies send, until admission has answered it: a work queue, partitioned by
    case on the way in (the partition token is computed by the server from the case id),
    so one admission writer per partition sees each case's events in the order sent.
    No deduplication: a sender that lost its answer sends the same event again and must
    get an answer again (admission is idempotent by event id)."""
    return StreamConfig(
        name=intake_stream(settings),
        description="events sent by agencies, waiting for admission",
        subjects=[intake_filter()],
        subject_transform=SubjectTransform(
            src=intake_filter(),
            dest=intake_partitioning(settings.admission_partitions),
        ),
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        # Past a limit the server refuses the new message (the sender is told at once)
        # rather than drop one that is waiting for admission.
        discard=DiscardPolicy.NEW,
        max_msg_size=settings.intake_max_msg_size,
        max_bytes=settings.intake_max_bytes,
        num_replicas=settings.stream_replicas,
        duplicate_window=1.0,  # the sender sets no Nats-Msg-Id here (see above)
        allow_direct=False,
    )


INTAKE_LIMITS: Final = frozenset({"discard", "max_msg_size", "max_bytes"})
"""The intake's fields that :func:`declare_platform` brings an existing intake to (an
earlier version declared it without limits, or the settings changed). None of them removes
a waiting message on update: with ``discard=new`` the server enforces ``max_bytes`` only
on new messages, and ``max_msg_size`` only on publish."""


def admission_consumer(partition: int) -> ConsumerSpec:
    return ConsumerSpec(
        name=f"admission-{partition}",
        filter_subjects=(intake_partition_filter(partition),),
        description=f"the admission writer of intake partition {partition}",
    )


ADMITTED_IDS_BUCKET: Final = "LINTAS_ADMITTED_IDS"
"""Every admitted event id, with its case: an id is admitted once, whatever the headers."""
ADMISSION_LEASES_BUCKET: Final = "LINTAS_ADMISSION_LEASES"
"""Which admission instance writes which partition (a lease renewed while it runs)."""
ADMISSION_LEASE_S: Final = 6.0


def admitted_ids_config(settings: Settings) -> StreamConfig:
    """The first admission of an id wins, and no one erases it."""
    return _create_only_bucket(
        settings, ADMITTED_IDS_BUCKET, "every admitted event id and its case", erasable=False
    )


def admission_leases_config(settings: Settings) -> StreamConfig:
    """A lease not renewed for :data:`ADMISSION_LEASE_S` ages out, and another instance
    takes the partition over."""
    return StreamConfig(
        name=f"KV_{ADMISSION_LEASES_BUCKET}",
        description="admission partition leases",
        subjects=[kv_subject(ADMISSION_LEASES_BUCKET, ">")],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        num_replicas=settings.stream_replicas,
        max_msgs_per_subject=1,
        max_age=ADMISSION_LEASE_S,
        duplicate_window=ADMISSION_LEASE_S / 2,
        allow_rollup_hdrs=True,
        deny_delete=False,
        deny_purge=False,
        allow_direct=True,
    )
