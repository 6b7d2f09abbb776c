"""Sealed personal fields: a child's identifying data, encrypted per case.

From the versions that carry them sealed (``case.opened`` v3, ``document.issued`` v3, ...),
every field marked personal holds a :class:`Sealed` value on the wire: the field's value
as canonical JSON, encrypted with AES-256-GCM under its case's data key. The data key is
never in an event; it is wrapped per agency in a key store (``lintas.infra.privacy.casekeys``), so
who can read a field is decided by who holds a wrapped key, and erasing a case is
destroying its keys (crypto-shredding): the signed, chained events keep their ciphertext.

A sealed field's type is ``Sealed | <plaintext type>``: the plaintext is accepted only while
an event is a *draft* (built by a producer, before the Publisher seals it) or when an older
version that carried the field in the clear is *upcast*; an event decoded from the wire at
a sealed version must carry :class:`Sealed` values (the check is in
:class:`~lintas.contracts.EventData`). The JSON Schema shows ``Sealed`` only, with the
plaintext's own schema under ``x-lintas-sealed``.

Encryption, for agencies that do not use lintas' Python code::

    plaintext = RFC 8785 canonical JSON of the field's value (UTF-8)
    aad       = "lintas:" + case id + ":" + event type + ":" + field name   (UTF-8)
    ct        = AES-256-GCM(data key of generation ``gen``, iv, plaintext, aad) || tag
    iv, ct    base64url without padding
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import Discriminator, Field, StringConstraints, Tag, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

from lintas.contracts._base import ALLOW_CLEAR, PERSONAL_KEY, SEALED_KEY, Sealed

__all__ = [
    "ALGORITHM",
    "ALLOW_CLEAR",
    "CLEAR_TAG",
    "SEALED_KEY",
    "SEALED_TAG",
    "Sealed",
    "SealedText64",
    "SealedText120",
    "SealedText500",
    "SealedText1000",
    "SealedText2000",
    "aad",
    "same_fields",
    "sealed",
    "sealed_text",
    "sealed_union",
]

ALGORITHM: Final = "A256GCM"
SEALED_TAG: Final = "sealed"
CLEAR_TAG: Final = "clear"


def _sealed_or_clear(value: Any) -> str:
    if isinstance(value, Sealed) or (isinstance(value, dict) and "alg" in value):
        return SEALED_TAG
    return CLEAR_TAG


def sealed_union(plain: Any) -> Any:
    """``Sealed | plain``, discriminated (a dict with ``alg`` is sealed), the plaintext
    hidden from the JSON Schema. Used to build the module-level aliases below."""
    clear = Annotated[plain, Tag(CLEAR_TAG)]
    # A type built at run time: mypy sees the static aliases below instead.
    return Annotated[
        Annotated[Sealed, Tag(SEALED_TAG)] | SkipJsonSchema[clear],  # type: ignore[misc]
        Discriminator(_sealed_or_clear),
    ]


def _text(max_length: int) -> Any:
    return Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_length)]


if TYPE_CHECKING:  # what a reader holds: sealed on the wire, text in a draft or an upcast
    SealedText64 = Sealed | str
    SealedText120 = Sealed | str
    SealedText500 = Sealed | str
    SealedText1000 = Sealed | str
    SealedText2000 = Sealed | str
else:
    SealedText64 = sealed_union(_text(64))
    SealedText120 = sealed_union(_text(120))
    SealedText500 = sealed_union(_text(500))
    SealedText1000 = sealed_union(_text(1000))
    SealedText2000 = sealed_union(_text(2000))


def sealed(plain: Any, **kwargs: Any) -> Any:
    """A personal field carried sealed: marked ``x-lintas-personal`` and, under
    ``x-lintas-sealed``, the JSON Schema of its plaintext."""
    schema = TypeAdapter(plain).json_schema()
    schema.pop("title", None)
    return Field(json_schema_extra={PERSONAL_KEY: True, SEALED_KEY: schema}, **kwargs)


def sealed_text(max_length: int, **kwargs: Any) -> Any:
    """:func:`sealed` for a free text of at most ``max_length`` characters."""
    return sealed(_text(max_length), **kwargs)


def aad(case_id: str, event_type: str, field: str) -> bytes:
    """The associated data a sealed field is bound to: its case, event type and field."""
    return f"lintas:{case_id}:{event_type}:{field}".encode()


def same_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The upcaster to a version that seals personal fields: the fields are the same, and
    the plaintext an older version carried is kept (readers see it as it was stored)."""
    return dict(data)
