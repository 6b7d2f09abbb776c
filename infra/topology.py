"""The JetStream objects lintas runs on: one append-only stream and durable pull consumers.

Declaring is idempotent and never overwrites. A stream or consumer that already exists with
another configuration is reported as a :class:`TopologyConflict` naming each field: quietly
"fixing" it could drop a retention guarantee or redeliver a whole history, so that change is
for an operator to make on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import nats.js.errors
from nats.js import JetStreamManager
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ReplayPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from lintas.contracts.errors import PermanentError
from lintas.contracts.subjects import ROOT, inbound_filters, outbound_filter

from .errors import bus_errors
from .settings import Settings

__all__ = [
    "ConsumerSpec",
    "TopologyConflict",
    "agency_consumer",
    "agency_sent_consumer",
    "consumer_config",
    "declare",
    "deployment_consumers",
    "ensure_consumer",
    "ensure_stream",
    "record_consumer",
    "staff_consumer",
    "stream_config",
]

CREATED = "created"
UNCHANGED = "unchanged"
# JetStream err_codes (nats-server's errors.json).
_CONSUMER_NOT_FOUND = 10014  # 10059 would be the stream itself missing
_STREAM_NAME_IN_USE = 10058  # "stream name already in use with a different configuration"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # JetStream names: no dots, wildcards or spaces


class TopologyConflict(PermanentError):
    """A stream or consumer exists with a configuration other than the one lintas declares."""

    def __init__(self, kind: str, name: str, differences: dict[str, tuple[object, object]]) -> None:
        self.kind = kind
        self.name = name
        self.differences = differences
        detail = "; ".join(
            f"{field}: existing {have!r}, wanted {want!r}"
            for field, (have, want) in differences.items()
        )
        super().__init__(
            f"{kind} {name!r} exists with a different configuration ({detail}); lintas does "
            "not overwrite it: change or remove it deliberately"
        )


def stream_config(settings: Settings) -> StreamConfig:
    """The event log: file-backed, deduplicating, and append-only (no delete, no purge)."""
    return StreamConfig(
        name=settings.stream,
        subjects=[f"{ROOT}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        num_replicas=1,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
    )


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: its name and the subjects it reads."""

    name: str
    filter_subjects: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
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
        deliver_policy=DeliverPolicy.ALL,
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


def record_consumer() -> ConsumerSpec:
    return ConsumerSpec("record", (f"{ROOT}.>",), "every event, for the coordination record")


def deployment_consumers(agencies: Iterable[str]) -> list[ConsumerSpec]:
    """The record projector and, per agency, its inbox and sent consumers."""
    specs = [record_consumer()]
    for agency in agencies:
        specs += [agency_consumer(agency), agency_sent_consumer(agency)]
    return specs


def staff_consumer(agency: str) -> ConsumerSpec:
    return ConsumerSpec(
        f"staff-{agency}", tuple(inbound_filters(agency)), f"simulated staff of {agency}"
    )


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _seconds(value: float | None) -> float:
    # The server answers in nanoseconds, which nats-py turns back into float seconds.
    return round(value or 0.0, 6)


def _stream_fields(cfg: StreamConfig) -> dict[str, object]:
    """The fields lintas sets, in a form where server defaults compare equal to ours."""
    return {
        "subjects": sorted(cfg.subjects or []),
        "storage": _plain(cfg.storage),
        "retention": _plain(cfg.retention),
        "discard": _plain(cfg.discard),
        "num_replicas": cfg.num_replicas or 1,
        "duplicate_window": _seconds(cfg.duplicate_window),
        "deny_delete": bool(cfg.deny_delete),
        "deny_purge": bool(cfg.deny_purge),
        "allow_direct": bool(cfg.allow_direct),
    }


def _consumer_fields(cfg: ConsumerConfig) -> dict[str, object]:
    # The description is left out: it is for people and cannot change what is delivered.
    filters = cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else [])
    return {
        "durable_name": cfg.durable_name,
        "filter_subjects": sorted(filters),
        "ack_policy": _plain(cfg.ack_policy),
        "deliver_policy": _plain(cfg.deliver_policy),
        "replay_policy": _plain(cfg.replay_policy),
        "ack_wait": _seconds(cfg.ack_wait),
        "max_deliver": cfg.max_deliver,
        "max_ack_pending": cfg.max_ack_pending,
    }


def _check(kind: str, name: str, have: dict[str, object], want: dict[str, object]) -> None:
    differences = {f: (have[f], want[f]) for f in want if have[f] != want[f]}
    if differences:
        raise TopologyConflict(kind, name, differences)


async def ensure_stream(js: JetStreamManager, settings: Settings) -> str:
    """Create the stream if missing; ``"created"`` or ``"unchanged"``."""
    want = stream_config(settings)
    with bus_errors(f"declaring stream {settings.stream}"):
        try:
            info = await js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(want)
                return CREATED
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
                # Created meanwhile by another process, with another configuration.
                info = await js.stream_info(settings.stream)
    _check("stream", settings.stream, _stream_fields(info.config), _stream_fields(want))
    return UNCHANGED


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
            await js.add_consumer(stream, want)
            return CREATED
    _check("consumer", spec.name, _consumer_fields(info.config), _consumer_fields(want))
    return UNCHANGED


async def declare(
    js: JetStreamManager, settings: Settings, specs: Iterable[ConsumerSpec]
) -> dict[str, str]:
    """The stream, then each consumer: what happened to each, by name."""
    outcome = {settings.stream: await ensure_stream(js, settings)}
    for spec in specs:
        outcome[spec.name] = await ensure_consumer(js, settings.stream, spec, settings)
    return outcome
