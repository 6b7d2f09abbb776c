"""Codes that travel in clear where a free text once did, and their labels.

What an agency's system must read without the case's key (an issuing office, a port of
entry, a placement, an officer's role, a legal basis) travels as a code from a published
code list, constrained so tightly that it cannot carry a child's name or birth date; what
needs words travels sealed (:mod:`lintas.contracts.sealed`). The labels below are for
display only: a code not in them is shown as itself, and a label never travels.

Code lists:

* an office: a bare Kemendagri region code (``kode wilayah``, ``35``, ``65.03``,
  ``65.03.01``, ``65.03.01.2001``) is the civil-registration office (Disdukcapil) of that
  province, regency or city, district or village; ``KBRI-``/``KJRI-``/``KRI-`` and the
  UN/LOCODE of its city is an Indonesian mission abroad (``KJRI-MYBKI``, Kota Kinabalu);
  ``BP3MI-`` and a province code is KP2MI's office in that province (``BP3MI-35``);
* a port of entry: the UN/LOCODE of an Indonesian place (``IDNNX``, Nunukan);
* a placement: the kind of institution and the region code of the regency or city it is
  in, with an ordinal when a region has more than one (``SENTRA-32.75``);
* an officer's reference: the unit's prefix and a number (``P2MI-07``), never a name;
* a legal citation: ``UU|PP|Perppu|Perpres|Permen|Perda <n>/<year>`` with an optional
  ``Pasal <n>[letter]`` and ``ayat (<n>)`` (``UU 35/2014 Pasal 59A``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Final, Literal

from pydantic import Field

__all__ = [
    "CITATION_PATTERN",
    "ERASURE_REASONS",
    "INSTITUTIONS",
    "INSTITUTION_PATTERN",
    "OFFICER_REF_PATTERN",
    "OFFICER_ROLES",
    "OFFICES",
    "OFFICE_PATTERN",
    "PORTS",
    "PORT_PATTERN",
    "ErasureReason",
    "InstitutionCode",
    "LegalCitation",
    "OfficeCode",
    "OfficerRef",
    "OfficerRole",
    "PortCode",
    "citations_in",
    "cited",
    "code_of",
    "label",
]

_REGION = r"[0-9]{2}(\.[0-9]{2}(\.[0-9]{2}(\.[0-9]{4})?)?)?"
_LOCODE_CITY = r"[A-Z]{2}[A-Z2-9]{3}"
OFFICE_PATTERN: Final = rf"^({_REGION}|(KBRI|KJRI|KRI)-{_LOCODE_CITY}|BP3MI-[0-9]{{2}})$"
PORT_PATTERN: Final = r"^ID[A-Z2-9]{3}$"
INSTITUTION_PATTERN: Final = r"^(SENTRA|BALAI|LOKA|LPKS|UPTD-PPA)-[0-9]{2}\.[0-9]{2}(-[0-9]{1,2})?$"
OFFICER_REF_PATTERN: Final = r"^[A-Z0-9]{2,10}-[0-9]{1,6}$"
CITATION_PATTERN: Final = (
    r"^(UU|PP|Perppu|Perpres|Permen|Perda) [0-9]{1,4}/[0-9]{4}"
    r"( Pasal [0-9]{1,3}[A-Z]?( ayat \([0-9]{1,2}\))?)?$"
)

OfficeCode = Annotated[
    str,
    Field(
        max_length=16,
        pattern=OFFICE_PATTERN,
        description="a Disdukcapil by its Kemendagri region code ('65.03'), a mission by "
        "type and UN/LOCODE ('KJRI-MYBKI') or a BP3MI by province code ('BP3MI-35')",
    ),
]
PortCode = Annotated[
    str,
    Field(
        max_length=5, pattern=PORT_PATTERN, description="UN/LOCODE of the port of entry ('IDNNX')"
    ),
]
InstitutionCode = Annotated[
    str,
    Field(
        max_length=20,
        pattern=INSTITUTION_PATTERN,
        description="kind of institution and the region code it is in ('SENTRA-32.75')",
    ),
]
OfficerRef = Annotated[
    str,
    Field(
        max_length=17,
        pattern=OFFICER_REF_PATTERN,
        description="pseudonymous reference of the case officer: unit prefix and a number "
        "('P2MI-07'), never a name",
    ),
]
LegalCitation = Annotated[
    str,
    Field(
        max_length=48,
        pattern=CITATION_PATTERN,
        description="a provision of Indonesian law ('UU 35/2014 Pasal 59A')",
    ),
]

OfficerRole = Literal[
    "consular_protection_officer",
    "social_worker",
    "child_protection_officer",
    "police_investigator",
    "kpai_commissioner",
    "data_protection_officer",
]
ErasureReason = Literal[
    "no_longer_necessary",
    "consent_withdrawn",
    "subject_request",
    "unlawful_processing",
    "retention_ended",
    "court_order",
]

OFFICES: Final[dict[str, str]] = {
    "35": "Disdukcapil Provinsi Jawa Timur",
    "35.25": "Disdukcapil Kabupaten Gresik",
    "65.03": "Disdukcapil Kabupaten Nunukan",
    "32.75": "Disdukcapil Kota Bekasi",
    "KBRI-MYKUL": "KBRI Kuala Lumpur",
    "KJRI-MYBKI": "KJRI Kota Kinabalu",
    "KJRI-MYKCH": "KJRI Kuching",
    "KJRI-MYJHB": "KJRI Johor Bahru",
    "KJRI-MYPEN": "KJRI Penang",
    "KJRI-SAJED": "KJRI Jeddah",
    "KBRI-SARUH": "KBRI Riyadh",
    "BP3MI-35": "BP3MI Jawa Timur",
}
PORTS: Final[dict[str, str]] = {
    "IDNNX": "Nunukan",
    "IDJKT": "Jakarta (Soekarno-Hatta)",
    "IDBTH": "Batam",
    "IDSUB": "Surabaya",
}
INSTITUTIONS: Final[dict[str, str]] = {
    "SENTRA-32.75": "Sentra Terpadu Pangudi Luhur (Bekasi)",
}
OFFICER_ROLES: Final[dict[str, str]] = {
    "consular_protection_officer": "consular protection officer (Pelaksana Fungsi Pelindungan WNI)",
    "social_worker": "social worker (Pekerja Sosial)",
    "child_protection_officer": "child protection officer (UPTD PPA)",
    "police_investigator": "police investigator (Penyidik)",
    "kpai_commissioner": "KPAI commissioner",
    "data_protection_officer": "data protection officer (Pejabat Pelindungan Data Pribadi)",
}
ERASURE_REASONS: Final[dict[str, str]] = {
    "no_longer_necessary": "no longer necessary for its purpose",
    "consent_withdrawn": "consent withdrawn",
    "subject_request": "request of the data subject or their parent or guardian",
    "unlawful_processing": "processed unlawfully",
    "retention_ended": "retention period ended",
    "court_order": "court order",
}

_TABLES = (OFFICES, PORTS, INSTITUTIONS, OFFICER_ROLES, ERASURE_REASONS)
_WORDS = (OFFICER_ROLES, ERASURE_REASONS)  # codes that are words already: the label alone
_REGION_ONLY = re.compile(_REGION)


def label(code: str | None) -> str:
    """A code with its label, for display; a code not in the tables as itself."""
    if code is None:
        return "not coded"
    for table in _TABLES:
        if code in table:
            return table[code] if any(table is w for w in _WORDS) else f"{table[code]} ({code})"
    if _REGION_ONLY.fullmatch(code):
        return f"Disdukcapil {code}"
    return code


def cited(basis: Sequence[str] | None) -> str:
    """A legal basis (citations) for display."""
    return "; ".join(basis) if basis is not None else "not coded"


def code_of(text: object, table: dict[str, str], pattern: str) -> str | None:
    """The code a free text of an older version names, or None: the text itself if it is
    a code already, else the code whose label it is (case and spacing aside). Used by
    upcasters only; what cannot be coded is not carried forward (docs/CONTRACTS.md)."""
    if not isinstance(text, str):
        return None
    value = text.strip()
    if re.fullmatch(pattern, value):
        return value
    wanted = " ".join(value.lower().split())
    for code, name in table.items():
        short, _, inner = name.lower().partition(" (")
        if wanted in (name.lower(), short, inner.removesuffix(")")):
            return code
    return None


def citations_in(text: object) -> list[str] | None:
    """The legal citations a free-text legal basis of an older version holds, each as a
    :data:`LegalCitation`; None when none of its parts is one."""
    if not isinstance(text, str):
        return None
    found = []
    for part in re.split(r"[;,]", text):
        candidate = " ".join(re.sub(r"\((?![0-9]{1,2}\))[^)]*\)", "", part).split())
        if re.fullmatch(CITATION_PATTERN, candidate):
            found.append(candidate)
    return found[:5] or None
