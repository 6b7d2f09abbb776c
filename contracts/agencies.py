"""Who takes part: agency ids as they appear in subjects and envelopes.

Agency ids are short lowercase tokens. Besides the national agencies below, a village
is ``desa-<code>`` (its Kemendagri village code) and a partner abroad is ``<cc>-<agency>``
(ISO 3166 alpha-2 country code first, e.g. ``my-jkm``). ``all`` is not an agency: it is
the broadcast target.

The platform's own services that publish events are participants too, with their own
key and subjects (``watchdog``: the deadline watchdog, which tells an agency that a
hand-off is overdue and escalates to KPAI). They are not agencies of the government and
run no worklist, but they sign and are addressed like one, so the same rules hold:
a participant signs only as itself and publishes only under ``lintas.<itself>.>``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

__all__ = [
    "ADMISSION",
    "BROADCAST",
    "NATIONAL_AGENCIES",
    "PLATFORM_SERVICES",
    "WATCHDOG",
    "agency_name",
    "is_agency_id",
    "is_partner_abroad",
    "is_village",
]

BROADCAST: Final = "all"

NATIONAL_AGENCIES: Final[dict[str, str]] = {
    "kp2mi": "Kementerian Pelindungan Pekerja Migran Indonesia (KemenP2MI)",
    "kemlu": "Kementerian Luar Negeri and missions abroad (KBRI/KJRI)",
    "dukcapil": "Ditjen Kependudukan dan Pencatatan Sipil (Kemendagri)",
    "kemensos": "Kementerian Sosial",
    "kemenpppa": "Kementerian Pemberdayaan Perempuan dan Perlindungan Anak (with UPTD PPA)",
    "kemnaker": "Kementerian Ketenagakerjaan (Desmigratif)",
    "kpai": "Komisi Perlindungan Anak Indonesia",
}

WATCHDOG: Final = "watchdog"
ADMISSION: Final = "admission"

PLATFORM_SERVICES: Final[dict[str, str]] = {
    WATCHDOG: "lintas deadline watchdog (run by the platform operator)",
    ADMISSION: "lintas admission: the only writer of the event log, signs receipts",
}

_VILLAGE = re.compile(r"desa-[0-9]{4,13}")
_PARTNER = re.compile(r"(?!id-)[a-z]{2}-[a-z0-9]{2,16}")
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def is_village(agency: str) -> bool:
    return bool(_VILLAGE.fullmatch(agency))


def is_partner_abroad(agency: str) -> bool:
    return not is_village(agency) and bool(_PARTNER.fullmatch(agency))


@lru_cache(maxsize=4096)  # checked several times for every event read; ids are few
def is_agency_id(agency: str) -> bool:
    """True for a national agency, a platform service, a village or a partner abroad (never
    for ``all``)."""
    if agency == BROADCAST or not _TOKEN.fullmatch(agency):
        return False
    return (
        agency in NATIONAL_AGENCIES
        or agency in PLATFORM_SERVICES
        or is_village(agency)
        or is_partner_abroad(agency)
    )


def agency_name(agency: str) -> str:
    if agency in NATIONAL_AGENCIES:
        return NATIONAL_AGENCIES[agency]
    if agency in PLATFORM_SERVICES:
        return PLATFORM_SERVICES[agency]
    if is_village(agency):
        return f"Village {agency.removeprefix('desa-')} (Desa Migran Emas)"
    if is_partner_abroad(agency):
        country, _, body = agency.partition("-")
        return f"Partner abroad {body.upper()} ({country.upper()})"
    return agency
