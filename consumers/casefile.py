"""An agency's case file: the personal fields it was sent, opened where it may.

The projection (:mod:`.gate`) keeps each field as it travelled, sealed; this view opens
them at read time with the agency's own wrapped data key from the case key store, so the
agency sees exactly what the case's consents give it now:

* ``shared``: the value (the agency holds the case's data key);
* ``not shared with you``: no consent gives this agency the case's data key (or it was
  withdrawn); the ciphertext is shown, never an error;
* ``erased``: the case's personal data was erased (its data keys destroyed everywhere);
* ``clear``: published before the field was sealed; the value is in the log, not here.

Nothing opened is written anywhere: the plaintext lives in the returned objects only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from lintas.consumers.gate import CaseFileRow, GateCaseRow
from lintas.consumers.projections import WorklistRow
from lintas.contracts import Sealed
from lintas.infra.privacy.casekeys import CaseKeys
from lintas.infra.privacy.sealing import SealBroken, open_value

__all__ = ["ERASED", "NOT_SHARED", "FileField", "knows_case", "read_case_file"]

NOT_SHARED = "not shared with you"
ERASED = "erased"
SHARED = "shared"
CLEAR = "clear"
BROKEN = "does not open (altered?)"


@dataclass(frozen=True, slots=True)
class FileField:
    seq: int
    time: datetime
    event_type: str
    source: str
    field: str
    access: str
    value: Any | None = None
    ciphertext: str | None = None

    def shown(self) -> str:
        """What a screen shows: the value only when shared."""
        if self.access == SHARED:
            return str(self.value)
        if self.access == ERASED:
            return "[erased]"
        if self.access == CLEAR:
            return "[in the clear in the log: published before sealing]"
        if self.access == NOT_SHARED:
            return f"[{NOT_SHARED}] {self.ciphertext or ''}".rstrip()
        return f"[{self.access}]"


def _rows(engine: Engine, agency: str, case_id: str) -> list[CaseFileRow]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(CaseFileRow)
                .where(CaseFileRow.agency == agency, CaseFileRow.case_id == case_id)
                .order_by(col(CaseFileRow.seq), col(CaseFileRow.field))
            )
        )


def knows_case(engine: Engine, agency: str, case_id: str) -> bool:
    """Whether ``agency``'s projection holds anything of the case: a work item, a consent
    book, a case-file field. An agency knows only the cases it took part in, so a case it
    has no part in is, to it, a case that does not exist."""
    present = set(inspect(engine).get_table_names())
    tables: tuple[type[SQLModel], ...] = (CaseFileRow, WorklistRow, GateCaseRow)
    with Session(engine) as session:
        for table in tables:
            if table.__tablename__ not in present:
                continue
            query = select(table).where(
                table.agency == agency,  # type: ignore[attr-defined]
                table.case_id == case_id,  # type: ignore[attr-defined]
            )
            if session.exec(query.limit(1)).first() is not None:
                return True
    return False


async def read_case_file(
    engine: Engine, agency: str, case_id: str, keys: CaseKeys | None
) -> list[FileField]:
    """The fields of ``case_id`` in ``agency``'s case file, opened with ``keys`` (the
    agency's own) where the agency holds the case's data key."""
    rows = _rows(engine, agency, case_id)
    # The key store knows of an erasure before this projection may have applied it.
    erased = (
        keys is not None and any(r.state == "sealed" for r in rows) and await keys.erased(case_id)
    )
    data_keys: dict[int, bytes | None] = {}
    unverified: set[int] = set()  # generations whose wrap this agency refuses to open
    fields = []
    for row in rows:
        if erased or row.state != "sealed" or row.sealed is None:
            access = ERASED if erased or row.state == "erased" else CLEAR
            fields.append(_field(row, access))
            continue
        sealed = Sealed.model_validate_json(row.sealed)
        if keys is not None and sealed.gen not in data_keys:
            try:
                data_keys[sealed.gen] = await keys.data_key(case_id, sealed.gen)
            except SealBroken:  # a wrap it cannot verify (WrapUnverified), or opens not
                data_keys[sealed.gen] = None
                unverified.add(sealed.gen)
        if sealed.gen in unverified:
            fields.append(_field(row, BROKEN, ciphertext=sealed.ct))
            continue
        key = data_keys.get(sealed.gen)
        if key is None:
            fields.append(_field(row, NOT_SHARED, ciphertext=sealed.ct))
            continue
        try:
            value = open_value(
                key, sealed, case_id=case_id, event_type=row.event_type, field=row.field
            )
        except SealBroken:
            fields.append(_field(row, BROKEN, ciphertext=sealed.ct))
            continue
        fields.append(_field(row, SHARED, value=value))
    return fields


def _field(
    row: CaseFileRow, access: str, *, value: Any | None = None, ciphertext: str | None = None
) -> FileField:
    return FileField(
        seq=row.seq,
        time=row.time,
        event_type=row.event_type,
        source=row.source,
        field=row.field,
        access=access,
        value=value,
        ciphertext=ciphertext,
    )
