"""``lintas verify | export | replay | record digest | checkpoint``: what auditors run.

They read the stream (or an exported archive: then no NATS at all) and never the live
projection databases, except ``record digest``, which only reads the live record to
compare it with a replay. Key material is never printed: key ids only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.engine.url import make_url

from lintas.audit import (
    ArchiveReader,
    StoredEvent,
    StreamCut,
    StreamReader,
    Verdict,
    export_archive,
    live_record_url,
    personal_summary,
    record_digest,
    replay,
    verify_archive,
    verify_stream,
)
from lintas.audit.archive import (
    EVENTS_FILE,
    KEYS_FILE,
    LINE_LIMIT,
    ArchiveError,
    LineError,
    NotExtended,
    ProofSource,
    load_keys,
    parse_line,
)
from lintas.audit.checkpointer import start_checkpointer
from lintas.audit.checkpoints import Checkpoint, checkpoint_stream, read_checkpoints
from lintas.audit.collector import relaxed_collector
from lintas.audit.logtree import LogGap, LogTree
from lintas.audit.replay import open_fresh_store
from lintas.cli._cases import case_messages, no_such_case
from lintas.cli._errors import fail
from lintas.cli._json import print_json
from lintas.cli._signals import stop_on_signals
from lintas.contracts import LintasError, PermanentError, is_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.files import replacing
from lintas.infra.keys.signing import (
    SEALER,
    Registry,
    Signer,
    SigningKeyError,
    ensure_sealer_key,
    fingerprint,
    load_registry,
    read_registry_file,
    register_keys,
    trusted_registry,
)
from lintas.infra.nats.bus import connect, embedded_url, open_bus
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.nats.outage import run_to_end
from lintas.infra.nats.topology import checkpoints_stream, dropping_streams
from lintas.infra.observability.metrics import Probes, connected, metrics_endpoint, streams_present
from lintas.infra.observability.telemetry import configure_tracing
from lintas.infra.settings import Settings

__all__ = ["run_audit"]


T = TypeVar("T")


def run_audit(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    case_id = getattr(args, "case_id", None)
    if case_id is not None and not is_case_id(case_id):
        fail(f"[red]{case_id!r} is not a lintas case id (C + 26 characters)[/red]")
        return 2
    # Each of them reads the whole log, or a case's, allocating as it goes: the collector
    # runs less often meanwhile (lintas.audit.collector; `lintas verify` 3-4% faster).
    with relaxed_collector():
        return _run(settings, args, console)


def _run(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.command == "verify":
        return _verify(settings, args, console)
    if args.command == "export":
        return run_to_end(_export(settings, args, console))
    if args.command == "replay":
        return run_to_end(_replay(settings, args, console))
    if args.command == "record":
        return _record_digest(settings, args, console)
    if args.command == "checkpoint":
        return run_to_end(_checkpoint(settings, args, console))
    return 2


# -- shared -------------------------------------------------------------------------------------


def _progress(console: Console, what: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Piped or captured output gets the result lines only.
        disable=not console.is_terminal,
    )


async def _on_stream(
    settings: Settings,
    name: str,
    work: Callable[[Any], Awaitable[T]],
    identity: str = "auditor",
) -> T:
    """Run ``work`` with a JetStream context, connected as the auditor (who reads the log
    and may publish nothing), or as ``identity``."""
    async with open_bus(settings) as url:
        nc = await connect(url, name, settings=settings, identity=identity)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()


def _reader(js: Any, settings: Settings, case_id: str | None) -> StreamReader:
    # The auditor's permissions on a secured bus allow reads, not consumers: there the
    # whole log is read by batched direct gets, at about two thirds of a consumer's rate.
    auditor_bound = uses_credentials(settings, "auditor")
    return StreamReader(js, settings.stream, case_id=case_id, consumer=not auditor_bound)


def _where(settings: Settings, archive: Path | None) -> str:
    return f"archive {archive}" if archive is not None else f"stream {settings.stream}"


async def _has_case(settings: Settings, case_id: str) -> bool:
    """Whether the stream holds a message of the case (asked as the auditor)."""

    async def work(js: Any) -> bool:
        return await case_messages(js, settings.stream, case_id, at_most=1) > 0

    return await _on_stream(settings, "lintas-case", work)


def _archive_has_case(reader: ArchiveReader, case_id: str) -> bool:
    wanted = case_id.encode()
    for _, line in reader.events():
        if line is None or wanted not in line:  # most lines, at the cost of a byte search
            continue  # (None: a line too long to read, which verify reports)
        try:
            if parse_line(line).subject.rpartition(".")[2] == case_id:
                return True
        except LineError:
            continue  # verify says what is wrong with it
    return False


def _registry_file(path: Path) -> Registry:
    return read_registry_file(path)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


VERIFIED, PROBLEMS_FOUND, UNVERIFIED, UNAUTHENTICATED, INCONSISTENT = 0, 1, 2, 4, 5
"""``lintas verify``'s exit status (its ``--help`` and docs/AUDIT.md say the same): 4 when
everything holds, but only by the archive's own keys (no ``--keys``); 5 when the log does not
extend the checkpoint the auditor kept (``--since``), whatever else is wrong."""

_LISTED = 20  # messages that are no event, named on the line that counts them


def _failed(verdict: Verdict) -> int:
    if any(p.code == "consistency" for p in verdict.problems):
        return INCONSISTENT
    return PROBLEMS_FOUND


def _print_verdict(console: Console, verdict: Verdict) -> int:
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    for note in verdict.notes:
        say(note)
    if verdict.anchored:
        named = ", ".join(verdict.anchored_cases[:3]) + (", ..." if verdict.anchored > 3 else "")
        say(
            f"{_count(verdict.anchored, 'case')} began before this partial log: the chain of "
            "each is anchored at its first event here, whose prevhash is trusted, not checked "
            f"({named})"
        )
    if verdict.not_events:
        shown = ", ".join(
            f"seq {p.event.seq if p.event else '?'} ({p.code.replace('-', ' ')})"
            for p in verdict.not_events[:_LISTED]
        )
        more = len(verdict.not_events) - _LISTED
        say(
            f"{_count(len(verdict.not_events), 'message')} admission could never have written "
            f"(no event, not verified, skipped by every consumer): {shown}"
            + (f", and {more} more (--json lists all)" if more > 0 else "")
        )
    checked = f"{_count(verdict.events, 'event')} of {_count(verdict.cases, 'case')}"
    if verdict.problems:
        say(
            f"[red]FAILED[/red] {verdict.source}: {_count(len(verdict.problems), 'problem')} "
            f"({checked} checked)"
        )
        for problem in verdict.problems:
            console.print(f"  [{problem.code}] {problem}", highlight=False, markup=False)
        return _failed(verdict)
    span = (
        f"stream seq {verdict.first_seq}..{verdict.last_seq}"
        if verdict.first_seq is not None
        else "no events"
    )
    holds = "contracts, signatures, the authority policy, hash chains and sequence hold"
    if not verdict.authenticated:
        say(
            f"[yellow]NOT AUTHENTICATED[/yellow] {verdict.source}: {checked} ({span}): "
            f"{holds}, but by the archive's own keys: who signed it is not established "
            "(verify with --keys the platform's registry)"
        )
        return UNAUTHENTICATED
    say(f"[green]verified[/green] {verdict.source}: {checked} ({span}): {holds}")
    return VERIFIED


# -- verify -------------------------------------------------------------------------------------


def _kept_checkpoint(path: Path | None) -> Checkpoint | None:
    """The checkpoint an auditor kept (``--save-checkpoint``): a line of ``checkpoints.jsonl``,
    ``{"seq": N, "checkpoint": {...}}``."""
    if path is None:
        return None
    try:
        item = json.loads(path.read_bytes())
        return Checkpoint.from_doc(int(item["seq"]), item["checkpoint"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointFileError(f"{path} is no kept checkpoint ({exc})") from None


class CheckpointFileError(PermanentError):
    """A ``--since`` file that holds no checkpoint."""


def _save_checkpoint(console: Console, path: Path, verdict: Verdict) -> None:
    kept = verdict.newest
    if kept is None:
        fail(
            "[yellow]no checkpoint commits to the log's Merkle tree yet: nothing kept "
            f"in {path}[/yellow]",
            highlight=False,
        )
        return
    doc = {"seq": kept.seq, "checkpoint": kept.doc}
    with replacing(path) as sink:
        sink.write((json.dumps(doc, indent=2) + "\n").encode())
    assert kept.root_hash is not None
    fail(  # standard error: --json keeps standard output for the verdict alone
        f"kept {kept} (tree size {kept.tree_size}, root sha256:{kept.root_hash.hex()}) in "
        f"{path}: pass it to the next `lintas verify --since`",
        highlight=False,
        soft_wrap=True,
    )


def _verify(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.since is not None and args.case_id is not None:
        fail("[red]--since checks the whole log: not with --case[/red]")
        return UNVERIFIED
    try:
        args.kept = _kept_checkpoint(args.since)
        verdict = (
            _verify_archive(settings, args, console)
            if args.archive is not None
            else run_to_end(_verify_stream(settings, args, console))
        )
    except (LintasError, OSError) as exc:
        # Nothing was verified: not the same as a log found wanting.
        fail(f"[red]could not verify:[/red] {exc}", highlight=False, soft_wrap=True)
        if args.json:  # the documented shape still, for a script reading only stdout
            print_json(
                console, {"format": "lintas-verify/1", "status": "unverified", "error": str(exc)}
            )
        return UNVERIFIED
    if args.case_id is not None and [p.code for p in verdict.problems] == ["no-events"]:
        # Nothing of the case to verify, and nothing else wrong: not a log found wanting.
        return no_such_case(args.case_id, _where(settings, args.archive))
    if args.json:
        print_json(console, verdict.to_json())
        status = (
            _failed(verdict)
            if not verdict.ok
            else VERIFIED
            if verdict.authenticated
            else UNAUTHENTICATED
        )
    else:
        status = _print_verdict(console, verdict)
    if status == VERIFIED and args.save_checkpoint is not None:
        _save_checkpoint(console, args.save_checkpoint, verdict)
    return status


def _verify_archive(settings: Settings, args: argparse.Namespace, console: Console) -> Verdict:
    registry = _registry_file(args.keys) if args.keys is not None else None
    with ArchiveReader(args.archive) as reader, _progress(console, "verifying") as progress:
        task = progress.add_task("verify", total=reader.manifest.count)
        return verify_archive(
            reader,
            registry=registry,
            trusted=load_registry(settings),
            focus=args.case_id,
            progress=lambda n: progress.update(task, completed=n),
            since=args.kept,
        )


async def _verify_stream(settings: Settings, args: argparse.Namespace, console: Console) -> Verdict:
    given = _registry_file(args.keys) if args.keys is not None else None

    async def work(js: Any) -> Verdict:
        reader = _reader(js, settings, args.case_id)
        dropping = await dropping_streams(js, settings)
        # The platform's own registry (its bus, this data dir), unless one kept apart is given.
        registry = given if given is not None else await trusted_registry(settings, js)
        # Before the cut: every checkpoint lies within it.
        checkpoints = await read_checkpoints(js, settings)
        cut = await reader.cut()
        with _progress(console, "verifying") as progress:
            task = progress.add_task("verify", total=None if args.case_id else cut.messages)
            verdict = await verify_stream(
                reader.events(cut),
                cut,
                registry,
                case_id=args.case_id,
                progress=lambda n: progress.update(task, completed=n),
                checkpoints=checkpoints,
                dropping=dropping,
                since=args.kept,
            )
        whose = "the registry given" if given is not None else "the platform's registry"
        verdict.notes.insert(
            0,
            f"keys: {whose} ({len(registry.entries())} keys, fingerprint {fingerprint(registry)})",
        )
        return verdict

    return await _on_stream(settings, "lintas-verify", work)


# -- export -------------------------------------------------------------------------------------


async def _export(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.time_from and args.time_to and args.time_from > args.time_to:
        fail("[red]--from is after --to[/red]")
        return 2
    if args.out.exists():
        fail(f"[red]{args.out} exists: an archive is never overwritten[/red]")
        return 1
    partial = bool(args.case_id or args.time_from or args.time_to)
    if args.since is not None and not partial:
        fail(
            "[red]--since: a whole-log archive needs no proof carried; verify it --since the "
            "checkpoint kept as it is[/red]"
        )
        return 2
    try:
        kept = _kept_checkpoint(args.since)
    except (CheckpointFileError, OSError) as exc:
        fail(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        return 2

    # The exporter signs the manifest with the platform's key (the sealer's). One made here,
    # off the platform's host, would be in no registry an auditor keeps: refused instead.
    try:
        signer = Signer.load(settings, SEALER)
    except SigningKeyError:
        fail(
            f"[red]no sealer's key in {settings.data_dir}: an archive's manifest is signed by "
            "the platform's sealer, whose key auditors hold in their registry. Run `lintas "
            "export` on the platform's host (its data dir has the key from `lintas up` or "
            "`lintas run platform`)[/red]",
            highlight=False,
            soft_wrap=True,
        )
        return 1

    async def work(js: Any) -> tuple[Any, StreamCut] | None:
        if args.case_id and not await case_messages(js, settings.stream, args.case_id, at_most=1):
            return None  # before anything is written: no empty archive
        reader = _reader(js, settings, args.case_id)
        checkpoints = await read_checkpoints(js, settings)
        proofs = await _proof_source(js, settings, checkpoints, console) if partial else None
        if kept is not None:
            if proofs is None:
                raise ArchiveError(
                    "--since: no checkpoint commits to the log's Merkle tree yet, so no "
                    "consistency proof can be carried"
                )
            proofs = dataclasses.replace(proofs, since=kept)
        cut = await reader.cut()
        with _progress(console, "exporting") as progress:
            task = progress.add_task("export", total=None if args.case_id else cut.messages)
            manifest = await export_archive(
                reader.events(cut),
                args.out,
                cut=cut,
                registry=await trusted_registry(settings, js),
                case_id=args.case_id,
                time_from=args.time_from,
                time_to=args.time_to,
                progress=lambda n: progress.update(task, completed=n),
                checkpoints=checkpoints,
                signer=signer,
                proofs=proofs,
            )
        return manifest, cut

    try:
        exported = await _on_stream(settings, "lintas-export", work)
    except NotExtended as exc:
        fail(f"[red]not exported:[/red] {exc}", highlight=False, soft_wrap=True)
        return INCONSISTENT
    if exported is None:
        return no_such_case(args.case_id, _where(settings, None))
    manifest, cut = exported
    if args.json:
        print_json(console, {"archive": str(args.out), "manifest": manifest.to_json()})
        return 0
    span = (
        f"stream seq {manifest.first_seq}..{manifest.last_seq}" if manifest.count else "no events"
    )
    console.print(
        f"exported {manifest.count} events ({span}; stream {cut.stream} cut at seq "
        f"{cut.last_seq}; filters: {manifest.filters_text()}) to {args.out}\n"
        f"keys of {len(manifest.agencies)} agencies: {', '.join(manifest.agencies) or 'none'}\n"
        f"events sha256 {manifest.events_sha256.removeprefix('sha256:')}\n"
        f"checkpoints: {manifest.checkpoints_count}",
        highlight=False,
        soft_wrap=True,
    )
    if manifest.proofs is not None:
        head = manifest.proofs["case_head"]
        console.print(
            f"Merkle proofs against checkpoint {manifest.proofs['checkpoint']['seq']} (tree size "
            f"{manifest.proofs['checkpoint']['tree_size']})"
            + (f", and the case's head at stream seq {head['seq']}" if head else "")
            + (
                f"; consistency with the checkpoint kept (tree size "
                f"{manifest.proofs['consistency']['from']['tree_size']})"
                if manifest.proofs.get("consistency")
                else ""
            ),
            highlight=False,
            soft_wrap=True,
        )
    if manifest.anchored:
        console.print(
            "a partial log (--from): cases that began earlier are verified from their first "
            "event in the archive, taken as the anchor of their chain",
            highlight=False,
            soft_wrap=True,
        )
    return 0


async def _proof_source(
    js: Any, settings: Settings, checkpoints: list[Checkpoint], console: Console
) -> ProofSource | None:
    """The log's tree up to the newest checkpoint that commits to one, every leaf held
    (64 bytes a message), read from the whole stream once: what a partial archive's proofs
    are made from. None when no checkpoint has a tree yet (the archive then carries none)."""
    newest = max((c for c in checkpoints if c.has_tree), key=lambda c: c.last_seq, default=None)
    if newest is None:
        return None
    tree = LogTree(keep_leaves=True)
    reader = _reader(js, settings, None)
    span = StreamCut(settings.stream, 1, newest.last_seq, newest.last_seq)
    with _progress(console, "proving") as progress:
        task = progress.add_task("prove", total=newest.last_seq)
        async for stored in reader.events(span):
            try:
                tree.add(stored)
            except LogGap as exc:
                raise ArchiveError(f"no proofs: {exc}") from None
            progress.update(task, completed=stored.seq)
    if tree.size != newest.tree_size or tree.root() != newest.root_hash:
        raise ArchiveError(
            f"the stream up to seq {newest.last_seq} does not give the tree {newest} commits "
            "to: not exported (`lintas verify` says what is wrong)"
        )
    return ProofSource(newest, tree)


# -- replay -------------------------------------------------------------------------------------


def _archive_events(reader: ArchiveReader) -> AsyncIterator[StoredEvent]:
    async def events() -> AsyncIterator[StoredEvent]:
        for number, line in reader.events():
            try:
                if line is None:
                    raise LineError(f"is longer than {LINE_LIMIT} bytes")
                stored = parse_line(line)
            except LineError as exc:
                raise ArchiveError(
                    f"{EVENTS_FILE} line {number} {exc}: the archive is damaged "
                    "(`lintas verify --archive` says more)"
                ) from None
            yield stored

    return events()


async def _replay(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.case_id is not None:
        # Before the fresh store is made: a missing case leaves no empty replay behind.
        if args.archive is not None:
            with ArchiveReader(args.archive) as reader:
                found = _archive_has_case(reader, args.case_id)
        else:
            found = await _has_case(settings, args.case_id)
        if not found:
            return no_such_case(args.case_id, _where(settings, args.archive))
    url: str = args.database
    engine = open_fresh_store(url, settings)
    shown = make_url(url).render_as_string(hide_password=True)
    as_of: datetime | None = args.as_of
    tracing = configure_tracing(settings, "lintas-replay")
    try:
        if args.archive is not None:
            with ArchiveReader(args.archive) as reader:
                registry = (
                    _registry_file(args.keys)
                    if args.keys is not None
                    else load_keys(reader.read(KEYS_FILE))[0]
                )
                with _progress(console, "replaying") as progress:
                    task = progress.add_task("replay", total=reader.manifest.count)
                    result = await replay(
                        _archive_events(reader),
                        engine,
                        url,
                        registry,
                        source=f"archive {args.archive}",
                        as_of=as_of,
                        case_id=args.case_id,
                        progress=lambda n: progress.update(task, completed=n),
                        tracer_provider=tracing,
                    )
                if reader.events_sha256 != reader.manifest.events_sha256:
                    fail(  # a warning: on standard error, beside the result
                        "[yellow]the archive's events do not match its manifest: run "
                        "`lintas verify --archive` before trusting this replay[/yellow]"
                    )
        else:
            registry = (
                _registry_file(args.keys) if args.keys is not None else load_registry(settings)
            )

            async def work(js: Any) -> Any:
                reader = _reader(js, settings, args.case_id)
                cut = await reader.cut()
                with _progress(console, "replaying") as progress:
                    task = progress.add_task("replay", total=None if args.case_id else cut.messages)
                    return await replay(
                        reader.events(cut),
                        engine,
                        url,
                        registry,
                        source=f"stream {settings.stream} up to seq {cut.last_seq}",
                        as_of=as_of,
                        case_id=args.case_id,
                        progress=lambda n: progress.update(task, completed=n),
                        tracer_provider=tracing,
                    )

            result = await _on_stream(settings, "lintas-replay", work)
    finally:
        engine.dispose()
        tracing.shutdown()
    assert result.digest is not None
    if args.json:
        print_json(console, _replay_json(result, shown, url, args))
        return 0
    console.print(
        f"replayed {result.read} events into {shown}: {result.applied} applied, "
        f"{result.skipped} skipped as the live record would (quarantined)"
        + (f", {result.after_as_of} after --as-of {as_of.isoformat()}" if as_of else "")
        + (f" (split by case across {result.workers} processes)" if result.workers else ""),
        highlight=False,
        soft_wrap=True,
    )
    for reason in result.skipped_reasons[:5]:
        console.print(f"  skipped {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"record digest {result.digest.digest} ({result.digest.cases} cases)", highlight=False
    )
    _print_personal(console, url, args.case_id)
    return 0


def _replay_json(result: Any, shown: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    summary = personal_summary(url, args.case_id)
    return {
        "database": shown,
        "source": f"archive {args.archive}" if args.archive is not None else "stream",
        "case": args.case_id,
        "as_of": args.as_of.isoformat() if args.as_of else None,
        "read": result.read,
        "applied": result.applied,
        "skipped": result.skipped,
        "skipped_reasons": list(result.skipped_reasons),
        "after_as_of": result.after_as_of,
        "last_seq": result.last_seq,
        "workers": result.workers,
        "record_digest": {"digest": result.digest.digest, "cases": result.digest.cases},
        "personal": {
            "states": dict(sorted(summary.states.items())),
            "erased_cases": summary.erased_cases,
            "fields": [
                {"seq": seq, "type": kind, "field": name, "state": state}
                for seq, kind, name, state in summary.fields
            ],
        },
    }


_SHOWN = {"sealed": "[sealed]", "erased": "[erased]", "clear": "[in the clear: before sealing]"}


def _print_personal(console: Console, url: str, case_id: str | None) -> None:
    """Where the child's data was, as the replayed record says: never a value."""
    summary = personal_summary(url, case_id)
    for seq, event_type, name, state in summary.fields:
        console.print(
            f"  seq {seq} {event_type} {name}: {_SHOWN.get(state, state)}",
            highlight=False,
            markup=False,
        )
    if summary.states:
        counts = ", ".join(
            f"{n} {_SHOWN.get(state, state)}" for state, n in sorted(summary.states.items())
        )
        console.print(
            f"personal fields: {counts}; {_count(summary.erased_cases, 'case')} erased",
            highlight=False,
            markup=False,
        )


# -- record digest ------------------------------------------------------------------------------


def _record_digest(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    url = args.database or live_record_url(settings)
    digest = record_digest(url)
    if args.json:
        shown = make_url(url).render_as_string(hide_password=True)
        print_json(console, {"database": shown, "digest": digest.digest, "cases": digest.cases})
        return 0
    console.print(f"record digest {digest.digest} ({digest.cases} cases)", highlight=False)
    return 0


# -- checkpoint ------------------------------------------------------------------------------------


async def _checkpoint(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.every is not None and not args.every > 0:
        fail("[red]--every must be more than 0 seconds[/red]")
        return 2
    signer, made = ensure_sealer_key(settings)
    if made is not None:
        console.print(
            f"made the sealer's signing key {made.keyid}: checkpoints are signed with it alone",
            highlight=False,
        )
    if args.every is not None:
        return await _checkpoint_every(settings, signer, args.every, console)

    async def work(js: Any) -> Any:
        # The sealer's key belongs in the platform's registry before anything is signed with it.
        await register_keys(settings, js)
        return await checkpoint_stream(js, settings, signer)

    # Checkpointing reads the whole log and writes the checkpoints stream: the platform's job.
    checkpoint = await _on_stream(settings, "lintas-checkpoint", work, identity="platform")
    if checkpoint is None:
        console.print(
            f"nothing to checkpoint: stream {settings.stream} has no events after the last "
            f"checkpoint",
            highlight=False,
        )
        return 0
    _print_checkpoint(console, checkpoint)
    return 0


async def _checkpoint_every(
    settings: Settings, signer: Signer, every: float, console: Console
) -> int:
    if not settings.nats_url and await embedded_url(settings.data_dir) is None:
        # A bus started for this command would hold no log: nothing would ever be checkpointed.
        fail(
            "[red]no bus to checkpoint: set LINTAS_NATS_URL, or run `lintas up` for this data "
            "directory[/red]",
            highlight=False,
        )
        return 1
    with stop_on_signals() as stop:
        async with open_bus(settings) as url:
            parts = Parts(settings, url, service="lintas-checkpoint")
            checkpointer = await start_checkpointer(
                parts,
                signer,
                interval_s=every,
                on_checkpoint=lambda s: _print_checkpoint(console, s),
            )

            def probes(js: Any) -> Probes:
                streams = [settings.stream, checkpoints_stream(settings)]
                return Probes(
                    checks=[connected("checkpointer", checkpointer), streams_present(js, streams)]
                )

            console.print(
                f"checkpointing stream {settings.stream} every {every:g} s with the "
                f"sealer's key {signer.keyid}. Ctrl-C stops.",
                highlight=False,
            )
            try:
                async with metrics_endpoint(parts, "platform", probes) as metrics:
                    if metrics is not None:
                        console.print(
                            f"metrics on {metrics.url}/metrics (probes /healthz, /readyz)",
                            highlight=False,
                        )
                    await stop.wait()
            finally:
                await checkpointer.stop()
    return 0


def _print_checkpoint(console: Console, checkpoint: Checkpoint) -> None:
    console.print(
        f"checkpointed stream {checkpoint.stream} seq "
        f"{checkpoint.first_seq}..{checkpoint.last_seq} "
        f"({_count(checkpoint.count, 'message')}) as checkpoint {checkpoint.seq}, signed by "
        f"{checkpoint.signed_by} "
        f"(key {checkpoint.doc['keyid']})\ndigest {checkpoint.digest}",
        highlight=False,
        soft_wrap=True,
    )
