"""``lintas report CASE --html PATH``: one case's audit page, on a real stream.

The page shows every hand-off, a lane per agency, each event's verification, the record's
digest (the one a replay of the case prints), and never a child's identifying data.
"""

from __future__ import annotations

import json
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from lintas.audit import StreamReader, open_fresh_store, replay
from lintas.contracts import new_case_id, subject_for, uuid7
from lintas.infra.keys.signing import load_registry
from lintas.infra.settings import Settings
from tests.support.audit import (
    OPENED,
    STEPS,
    T0,
    ChainedAgencies,
    Sent,
    cli,
)
from tests.support.helpers import declare_record, publish_case, signed

pytestmark = pytest.mark.nats

NAME = "Siti Aminah Binti Rahmat"
BIRTH = "2013-07-21"
ADDRESS = "Jalan Kenanga 17, Tawau"
NUMBER = "3525010101150001"  # the document number STEPS issues
NOTES = "Menangis setiap malam sejak ibunya ditahan"

PERSONAL_VALUES = (NAME, BIRTH, ADDRESS, NUMBER, NOTES, "Rahmat", "Kenanga", "Menangis")


class Strict(HTMLParser):
    """Fails on what html.parser reports, and checks that every element closes in order."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "path"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, tag
        assert self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def error(self, message: str) -> None:  # pragma: no cover - older Pythons
        raise AssertionError(message)


def well_formed(page: str) -> Strict:
    parser = Strict()
    parser.feed(page)
    parser.close()
    assert parser.open == [], parser.open
    return parser


async def _case(js: JetStreamContext, settings: Settings) -> tuple[str, list[Sent]]:
    """A signed, chained case with a child's identity, a document and a referral's notes;
    and another case interleaved, which the report must leave out."""
    await declare_record(js, settings)
    agencies = ChainedAgencies(js, settings)
    case_id = new_case_id()
    other = await publish_case(signed(js, settings, "kemlu"), steps=1)
    sent = []
    child = {"full_name": NAME, "birth_date": BIRTH, "address": ADDRESS, "sex": "f"}
    for source, target, event_type, data, hours in STEPS:
        if event_type == "case.opened":
            data = OPENED | {"child": child}
        if event_type == "referral.requested":
            data = data | {"notes": NOTES}
        sent.append(
            await agencies.publish(
                source,
                target,
                event_type,
                data,
                case_id=case_id,
                time=T0 + timedelta(hours=hours),
            )
        )
    assert other != case_id
    return case_id, sent


async def test_report_of_a_signed_case(
    js: JetStreamContext, settings: Settings, cli_env: Settings, tmp_path: Path
) -> None:
    case_id, sent = await _case(js, settings)
    out = tmp_path / "report.html"
    assert await cli("report", case_id, "--html", str(out)) == 0
    page = out.read_text()
    parser = well_formed(page)

    assert "svg" in parser.tags
    assert "<script" not in page.lower()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    for value in PERSONAL_VALUES:
        assert value not in page, value
    assert "[personal: not shown]" in page

    assert case_id in page
    for agency in ("kemlu", "kp2mi", "dukcapil", "kemensos"):
        assert f'data-agency="{agency}"' in page
    # each hand-off: the document request to dukcapil, the referral to kemensos
    assert page.count('class="handoff"') == 2
    assert "<td>document</td>" in page
    assert "<td>referral</td>" in page
    assert "Disdukcapil Kabupaten Gresik" in page
    assert "2025-03-02" in page
    assert "undocumented_abroad" in page
    # every event verified, and only this case's
    assert page.count('class="event"') == len(sent)
    for s in sent:
        assert s.doc["id"] in page
    assert "FAILED" not in page
    assert page.count('<span class="ok">OK</span>') >= 4 * len(sent)

    # the digest is the one a replay of the case prints
    reader = StreamReader(js, settings.stream, case_id=case_id)
    cut = await reader.cut()
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    engine = open_fresh_store(url, settings)
    try:
        result = await replay(
            reader.events(cut), engine, url, load_registry(settings), source="t", case_id=case_id
        )
    finally:
        engine.dispose()
    assert result.digest is not None
    assert result.digest.digest in page

    # and the same page from an exported archive of the case, offline
    archive = tmp_path / "archive"
    assert await cli("export", "--out", str(archive), "--case", case_id) == 0
    offline = tmp_path / "offline.html"
    assert await cli("report", case_id, "--html", str(offline), "--archive", str(archive)) == 0
    page = offline.read_text()
    well_formed(page)
    assert result.digest.digest in page
    assert "FAILED" not in page
    for value in PERSONAL_VALUES:
        assert value not in page, value


async def test_a_tampered_event_shows_failed_with_the_reason(
    js: JetStreamContext, settings: Settings, cli_env: Settings, tmp_path: Path
) -> None:
    case_id, sent = await _case(js, settings)
    forged = dict(sent[-1].doc)  # case.closed by kemlu, its signature kept, its data changed
    forged |= {
        "id": str(uuid7()),
        "time": (T0 + timedelta(hours=9)).isoformat(),
        "data": {"reason": "other"},
    }
    subject = subject_for(forged["source"], forged["target"], forged["type"], case_id)
    ack = await js.publish(subject, json.dumps(forged).encode(), stream=settings.stream)
    out = tmp_path / "report.html"
    assert await cli("report", case_id, "--html", str(out)) == 1
    page = out.read_text()
    well_formed(page)
    assert page.count('<span class="failed">FAILED</span>') >= 2  # the event, its signature
    assert "1 of 8 events did not verify" in page
    row = next(r for r in page.split("<tr>") if f"<td>{ack.seq}</td>" in r)
    assert "FAILED</span>: signature:" in row
    assert "does not match" in row
    for value in PERSONAL_VALUES:
        assert value not in page, value


async def test_no_events_no_page(cli_env: Settings, js: JetStreamContext, tmp_path: Path) -> None:
    await declare_record(js, cli_env)
    out = tmp_path / "report.html"
    assert await cli("report", new_case_id(), "--html", str(out)) == 3  # no such case
    assert not out.exists()
    assert await cli("report", "not-a-case", "--html", str(out)) == 2
