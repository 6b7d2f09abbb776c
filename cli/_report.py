"""``lintas report CASE --html PATH [--archive PATH]``: one case's audit report as HTML.

Reads only that case's events (the stream through the case's subject filter, or an
archive offline), checks each one as ``lintas verify`` does without stopping at the first
failure, folds them into the case's record, and writes a self-contained page
(:mod:`lintas.audit.report`). Exit 1 when any event did not verify (the page says which and
why); exit 3 (:data:`~lintas.cli._cases.NO_SUCH_CASE`) when the case has no events, and no
page is written.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from lintas.audit import ArchiveReader, StreamReader
from lintas.audit.archive import KEYS_FILE, load_keys
from lintas.audit.report import CaseReport, build_report, render_html
from lintas.cli._audit import _archive_events, _on_stream
from lintas.cli._cases import no_such_case
from lintas.cli._errors import fail
from lintas.contracts import is_case_id
from lintas.infra.keys.signing import load_registry
from lintas.infra.settings import Settings

__all__ = ["run_report"]


async def _from_stream(settings: Settings, case_id: str) -> CaseReport:
    async def work(js: Any) -> CaseReport:
        reader = StreamReader(js, settings.stream, case_id=case_id)
        cut = await reader.cut()
        return await build_report(
            reader.events(cut),
            load_registry(settings),
            case_id=case_id,
            source=f"stream {cut.stream} up to seq {cut.last_seq} (case subject filter)",
        )

    return await _on_stream(settings, "lintas-report", work)


async def _from_archive(path: Path, case_id: str) -> CaseReport:
    with ArchiveReader(path) as reader:
        registry, problems = load_keys(reader.read(KEYS_FILE))
        report = await build_report(
            _archive_events(reader),
            registry,
            case_id=case_id,
            source=f"archive {path} (filters: {reader.manifest.filters_text()})",
            anchors=reader.manifest.anchored,
        )
        report.notes.append(
            f"signatures checked against the archive's own {KEYS_FILE}; `lintas verify "
            "--archive --keys` checks it against a registry obtained independently"
        )
        if problems:
            report.notes.append(f"{KEYS_FILE}: {'; '.join(problems)}")
        if reader.events_sha256 != reader.manifest.events_sha256:
            report.notes.append(
                "the archive's events do not match its manifest: run `lintas verify --archive`"
            )
    return report


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a page."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def run_report(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id: str = args.case_id
    if not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    if args.html.is_dir():
        fail(f"[red]{args.html} is a directory: give the HTML file to write[/red]")
        return 2
    if args.archive is not None:
        report = await _from_archive(args.archive, case_id)
    else:
        report = await _from_stream(settings, case_id)
    if not report.events:  # no page is written
        where = f"stream {settings.stream}" if args.archive is None else f"archive {args.archive}"
        return no_such_case(case_id, where)
    _write(args.html, render_html(report))
    verdict = (
        f"[green]all {len(report.events)} events verified[/green]"
        if report.ok
        else f"[red]FAILED: {report.failed} of {len(report.events)} events did not verify[/red]"
    )
    console.print(
        f"report of case {case_id} written to {args.html}: {verdict}; record digest "
        f"{report.digest or 'none (the case was never validly opened)'}",
        highlight=False,
        soft_wrap=True,
    )
    return 0 if report.ok else 1
