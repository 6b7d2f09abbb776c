"""What every event model shares, the marker for a child's identifying data, and the
form that data takes on the wire (:class:`Sealed`, see :mod:`lintas.contracts.sealed`)."""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ALLOW_CLEAR",
    "PERSONAL_KEY",
    "SEALED_KEY",
    "EventData",
    "Sealed",
    "personal",
]

PERSONAL_KEY: Final = "x-lintas-personal"
SEALED_KEY: Final = "x-lintas-sealed"
ALLOW_CLEAR: Final = "lintas.allow_clear"
"""Validation-context key: sealed fields may hold plaintext (a draft, or an upcast)."""

_B64URL = r"^[A-Za-z0-9_-]+$"


def personal(**kwargs: Any) -> Any:
    """A field holding identifying data of a child (UU 27/2022 specific personal data).

    Marked in the JSON Schema as ``"x-lintas-personal": true``; such fields never reach
    subjects, logs or traces. From the versions that seal them they are declared with
    :func:`lintas.contracts.sealed.sealed` instead, which marks them personal too.
    """
    return Field(json_schema_extra={PERSONAL_KEY: True}, **kwargs)


class Sealed(BaseModel):
    """A personal value encrypted with its case's data key (AES-256-GCM)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alg: Literal["A256GCM"] = Field(description="AES-256-GCM")
    gen: int = Field(ge=1, le=9999, description="generation of the case's data key")
    iv: str = Field(
        min_length=16, max_length=16, pattern=_B64URL, description="96-bit nonce, base64url"
    )
    ct: str = Field(
        min_length=22, max_length=20000, pattern=_B64URL, description="ciphertext || tag"
    )


def _marked(info: Any, key: str) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(key))


_MARKED: dict[tuple[type[BaseModel], str], frozenset[str]] = {}


def _fields_marked(model: type[BaseModel], key: str) -> frozenset[str]:
    # Asked for every event a reader decodes or folds: worked out once per model.
    found = _MARKED.get((model, key))
    if found is None:
        found = frozenset(n for n, i in model.model_fields.items() if _marked(i, key))
        _MARKED[(model, key)] = found
    return found


class EventData(BaseModel):
    """The ``data`` of one event type at one version. Published versions never change."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset()
    """The fields this version may carry to a partner abroad (none unless declared)."""
    CODED: ClassVar[frozenset[str]] = frozenset()
    """Fields that carry a code where an older version carried free text: null only when
    an upcast could not code that text (it is not carried forward), never on the wire."""

    @classmethod
    def family(cls) -> str:
        return cls.TYPE.partition(".")[0]

    @classmethod
    def personal_fields(cls) -> frozenset[str]:
        return _fields_marked(cls, PERSONAL_KEY)

    @classmethod
    def sealed_fields(cls) -> frozenset[str]:
        """The personal fields this version carries sealed (encrypted) on the wire."""
        return _fields_marked(cls, SEALED_KEY)

    def clear_fields(self) -> list[str]:
        """Sealed fields that hold plaintext (a draft, or an upcast older version)."""
        sealed = self.sealed_fields()
        if not sealed:
            return []
        return [
            name
            for name in sorted(sealed)
            if (value := getattr(self, name)) is not None and not isinstance(value, Sealed)
        ]

    @model_validator(mode="after")
    def _sealed_on_the_wire(self, info: ValidationInfo) -> EventData:
        if (info.context or {}).get(ALLOW_CLEAR):
            return self
        uncoded = sorted(name for name in self.CODED if getattr(self, name) is None)
        if uncoded:
            raise PydanticCustomError(
                "lintas_uncoded",
                "{fields} must hold a code in {type} v{version} (null only in an upcast "
                "from a version that carried free text)",
                {"fields": ", ".join(uncoded), "type": self.TYPE, "version": self.VERSION},
            )
        clear = self.clear_fields()
        if clear:
            raise PydanticCustomError(
                "lintas_clear_personal",
                "personal field {fields} must be sealed (encrypted) in {type} v{version}: "
                "publish through a Publisher holding the agency's case keys",
                {"fields": ", ".join(clear), "type": self.TYPE, "version": self.VERSION},
            )
        return self
