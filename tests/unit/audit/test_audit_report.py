"""The case report's pure parts: per-event checks, the fold, masking and escaping (no broker)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from html.parser import HTMLParser

from lintas.audit import StoredEvent
from lintas.audit.report import ERASED, SEALED, build_report, case_record_digest, render_html
from lintas.contracts import new_case_id
from tests.support.audit import REGISTRY, Log
from tests.support.samples import CHILD, SAMPLES

SECRETS = [
    *(str(v) for k, v in CHILD.items() if k != "sex"),
    SAMPLES["document.issued"]["number"],
    SAMPLES["case.reopened"]["reason"],
    SAMPLES["case.assessed"]["summary"],
]


async def _each(events: Iterable[StoredEvent]) -> AsyncIterator[StoredEvent]:
    for stored in events:
        yield stored


async def test_each_event_is_checked_and_the_record_folded() -> None:
    case_id, other = new_case_id(), new_case_id()
    log = Log()
    log.add("case.opened", case_id, source="kemlu", target="kp2mi")
    log.add("case.opened", other, source="kemlu", target="kp2mi")
    log.add("case.assessed", case_id, minutes=1)
    log.add("document.issued", case_id, minutes=2)
    log.add("case.reopened", case_id, minutes=3, chain=False)  # not chained: chain FAILED
    hostile = json.loads(log.events[2].body)
    hostile |= {"type": "<script>alert(1)</script>", "source": "<b>x</b>"}
    log.events.append(
        StoredEvent(len(log.events) + 1, log.events[2].subject, json.dumps(hostile).encode())
    )

    report = await build_report(_each(log.events), REGISTRY, case_id=case_id, source="<test>")
    checks = [(c.contract, c.signature, c.chain, c.ok) for c in report.events]
    assert checks == [
        ("ok", "ok", "ok", True),
        ("ok", "ok", "ok", True),
        ("ok", "ok", "ok", True),
        ("ok", "ok", "failed", False),
        ("failed", "not checked", "not checked", False),
    ]
    assert "prevhash" in (report.events[3].reason or "")
    assert (report.events[4].source, report.events[4].type) == ("?", "?")
    assert report.events[4].data is None
    assert report.failed == 2
    assert report.record is not None
    assert report.record.case_id == case_id
    # The authority policy keeps out of the record an answer to nothing asked, and the
    # reopening of a case not closed.
    assert [e.in_record for e in report.events] == [True, True, False, False, False]
    assert report.digest == case_record_digest(report.record)
    assert dict(report.events[0].data or ())["child"] == SEALED

    page = render_html(report)
    parser = HTMLParser()
    parser.feed(page)
    parser.close()
    for secret in SECRETS:
        assert secret not in page, secret
    assert "<script" not in page
    assert "<b>x</b>" not in page
    assert "&lt;test&gt;" in page
    assert "akta_kelahiran" in page
    assert "<code>issuing_office</code>=35.25" in page
    assert "<svg" in page
    assert page.count('class="event"') == 4  # the undecoded one: no time
    assert report.digest is not None
    assert report.digest in page


async def test_a_case_never_opened_has_no_record() -> None:
    case_id = new_case_id()
    log = Log()
    log.add("document.requested", case_id)
    report = await build_report(_each(log.events), REGISTRY, case_id=case_id, source="t")
    assert report.record is None
    assert report.digest is None
    assert report.ok
    assert "never (validly) opened" in render_html(report)


async def test_after_erasure_the_report_shows_erased_where_the_data_was() -> None:
    case_id = new_case_id()
    log = Log()
    log.add("case.opened", case_id, source="kemlu", target="kp2mi")
    log.add("document.issued", case_id, minutes=1)
    log.add("case.erased", case_id, source="kemlu", target="all", minutes=2)
    report = await build_report(_each(log.events), REGISTRY, case_id=case_id, source="t")
    assert report.ok
    assert dict(report.events[0].data or ())["child"] == ERASED
    assert dict(report.events[1].data or ())["number"] == ERASED
    assert report.record is not None
    assert report.record.erasure is not None
    page = render_html(report)
    assert "personal data was erased at stream seq 3 by kemlu" in page
    for secret in SECRETS:
        assert secret not in page, secret


async def test_control_and_bidirectional_characters_are_escaped_on_the_page() -> None:
    """html.escape leaves a U+202E or an ESC as it is: the page shows their escapes."""
    case_id = new_case_id()
    log = Log()
    log.add("case.opened", case_id, source="kemlu", target="kp2mi")
    report = await build_report(_each(log.events), REGISTRY, case_id=case_id, source="t")
    assert report.record is not None
    hostile = "Kinabalu\u202eteL\x1b[2J\x00\u2066"
    report.record = report.record.model_copy(update={"whereabouts": hostile})
    report.events[0] = replace(report.events[0], data=(("location.name", hostile),))
    report.notes.append(hostile)
    page = render_html(report)
    for raw in ("\u202e", "\x1b", "\x00", "\u2066"):
        assert raw not in page, repr(raw)
    assert page.count("Kinabalu\\u202eteL\\u001b[2J\\u0000\\u2066") == 3
