"""What every event model shares, and the marker for a child's identifying data."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PERSONAL_KEY", "EventData", "personal"]

PERSONAL_KEY = "x-lintas-personal"


def personal(**kwargs: Any) -> Any:
    """A field holding identifying data of a child (UU 27/2022 specific personal data).

    Marked in the JSON Schema as ``"x-lintas-personal": true``; such fields never reach
    subjects, logs or traces, and are the ones later encrypted per case.
    """
    return Field(json_schema_extra={PERSONAL_KEY: True}, **kwargs)


class EventData(BaseModel):
    """The ``data`` of one event type at one version. Published versions never change."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    @classmethod
    def family(cls) -> str:
        return cls.TYPE.partition(".")[0]

    @classmethod
    def personal_fields(cls) -> frozenset[str]:
        return frozenset(
            name
            for name, info in cls.model_fields.items()
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(PERSONAL_KEY)
        )
