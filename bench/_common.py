"""What the bench scripts share: realistic events, a filled stream, a table of figures.

Events are about 0.8 KB, of mixed families (case, document, referral), in cases of a
given size; they are built and signed in worker processes, chained per case, and each
chunk of cases is interleaved step by step, as many agencies working at once would be.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from lintas.admission import AdmissionService
from lintas.admission.running import admission_service
from lintas.contracts import build_data, encode, make_event, message_hash, new_case_id
from lintas.infra.keys.exchange import ensure_exchange_key
from lintas.infra.keys.signing import Signer, ensure_agency_key
from lintas.infra.nats.embedded import EmbeddedNats, find_nats_server, nats_server_version
from lintas.infra.nats.topology import (
    case_keys_stream_config,
    declare_platform,
    ensure_stream,
    ensure_stream_config,
)
from lintas.infra.privacy.sealing import seal_data
from lintas.infra.settings import Settings

AGENCIES = ("kemlu", "kp2mi", "dukcapil", "kemensos")
# The filled logs' times: written straight to the stream (a log admitted long ago), never
# shown to admission, whose clock refuses anything more than 30 days old (time_skew).
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
CHUNK_CASES = 250  # cases built per worker task; their events are interleaved in the stream
BENCH_DATA_KEY = bytes(32)  # the bench's invented cases are sealed, never opened

NOTES = (
    "Anak terlantar tanpa dokumen di perkebunan sawit, tinggal bersama kerabat jauh. "
    "Perlu asesmen psikososial sebelum pemulangan; koordinasi dengan KJRI untuk SPLP dan "
    "dengan Dinas Sosial kabupaten asal untuk penjangkauan keluarga. "
)
OPENED: dict[str, Any] = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
    "child": {
        "full_name": "Siti Nurhaliza binti Ahmad",
        "birth_date": "2014-05-17",
        "sex": "f",
        "mother_name": "Aminah",
        "address": "Ladang Sawit Felda, Tawau, Sabah",
    },
}


# -- building the log (in worker processes) ---------------------------------------------------


def cycle(k: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One round of a case's pathway: (source, target, type, data)."""
    return [
        ("kp2mi", "dukcapil", "document.requested", {"request_id": f"doc-{k}", "kind": "nik"}),
        (
            "dukcapil",
            "kp2mi",
            "document.issued",
            {
                "request_id": f"doc-{k}",
                "kind": "nik",
                "number": "3525010101150001",
                "issuing_office": "35.25",
                "issued_on": "2025-03-02",
                "valid_until": "2035-03-02",
            },
        ),
        (
            "kp2mi",
            "kemensos",
            "referral.requested",
            {
                "referral_id": f"ref-{k}",
                "service": "psychosocial_assessment",
                "due": "2025-04-01T00:00:00Z",
                "notes": NOTES,
            },
        ),
        ("kemensos", "kp2mi", "referral.accepted", {"referral_id": f"ref-{k}"}),
        (
            "kp2mi",
            "kemensos",
            "case.assessed",
            {"risk_level": "medium", "needs": ["documents", "psychosocial"], "summary": NOTES},
        ),
    ]


CONSENT: dict[str, Any] = {
    "consent_id": "consent-1",
    "given_by": "parent",
    "child_assent": True,
    "scopes": ["services", "disclosure_to_agencies"],
    "agencies": ["kp2mi", "dukcapil", "kemensos"],
}


def pathway(size: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    # The consent first: without it the consent gate lets none of the hand-offs through.
    steps: list[tuple[str, str, str, dict[str, Any]]] = [
        ("kemlu", "kp2mi", "case.opened", OPENED),
        ("kemlu", "all", "consent.recorded", CONSENT),
        # The coordinator takes the case over, as in the demo: the owner closes it at the end
        # (the authority policy refuses a close from anyone else).
        ("kp2mi", "all", "case.assigned", {"owner": "kp2mi", "officer_ref": "P2MI-1"}),
    ]
    k = 0
    while len(steps) < size - 1:
        steps.extend(cycle(k))
        k += 1
    steps = steps[: max(size - 1, 1)]
    if size > 1:
        assigned = any(step[2] == "case.assigned" for step in steps)
        owner, other = ("kp2mi", "kemlu") if assigned else ("kemlu", "kp2mi")
        steps.append((owner, other, "case.closed", {"reason": "reintegrated"}))
    return steps


_signers: dict[str, dict[str, Signer]] = {}  # by data dir: each log has its own keys


def build_chunk(
    task: tuple[str, int, list[str], int, datetime],
) -> list[tuple[str, bytes, str]]:
    """The events of ``case_ids``, signed and chained, interleaved step by step:
    (subject, body, event id). Times run from ``t0``: a minute a case, an hour a step."""
    data_dir, first_index, case_ids, size, t0 = task
    if data_dir not in _signers:
        settings = Settings(data_dir=Path(data_dir))
        _signers[data_dir] = {a: Signer.load(settings, a) for a in AGENCIES}
    signers = _signers[data_dir]
    steps = pathway(size)
    datas = [build_data(kind, data) for _, _, kind, data in steps]
    heads: dict[str, str | None] = dict.fromkeys(case_ids)
    out: list[tuple[str, bytes, str]] = []
    for step, (source, target, _, _) in enumerate(steps):
        for offset, case_id in enumerate(case_ids):
            at = t0 + timedelta(minutes=first_index + offset, hours=step)
            # Sealed as a Publisher seals them (one key for the whole bench: it is never read).
            data = seal_data(datas[step], BENCH_DATA_KEY, 1, case_id=case_id)
            event = make_event(data, source=source, target=target, case_id=case_id, time=at)
            envelope = event.envelope.model_copy(update={"prevhash": heads[case_id]})
            envelope = signers[source].sign(envelope)
            body = encode(envelope)
            heads[case_id] = message_hash(body)
            out.append((envelope.nats_subject, body, envelope.id))
    return out


@dataclass
class Log:
    name: str
    server: EmbeddedNats
    settings: Settings
    nc: Any
    js: JetStreamContext
    events: int
    cases: list[str]
    body_bytes: int
    fill_s: float


async def fill(
    js: JetStreamContext, settings: Settings, events: int, case_size: int, pool: ProcessPoolExecutor
) -> tuple[list[str], int]:
    n_cases = max(events // case_size, 1)
    case_ids = [new_case_id() for _ in range(n_cases)]
    tasks = [
        (str(settings.data_dir), i, case_ids[i : i + CHUNK_CASES], case_size, T0)
        for i in range(0, n_cases, CHUNK_CASES)
    ]
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, build_chunk, task) for task in tasks]
    body_bytes = 0
    for future in futures:
        acks = []
        for subject, body, event_id in await future:
            body_bytes += len(body)
            acks.append(
                await js.publish_async(
                    subject, body, wait_stall=60, headers={"Nats-Msg-Id": event_id}
                )
            )
        await asyncio.gather(*acks)  # raises if JetStream refused one
    await js.publish_async_completed()
    return case_ids, body_bytes


def recent() -> datetime:
    """A day ago: events from there on, a minute or an hour apart, are in the window
    admission accepts (docs/ADMISSION.md: up to 5 minutes ahead, 30 days behind)."""
    return datetime.now(UTC) - timedelta(days=1)


@dataclass
class Bus:
    """A fresh embedded nats-server with the ``LINTAS`` stream, and the agencies' keys;
    with ``admission``, the platform declared and admission writing the log."""

    settings: Settings
    server: EmbeddedNats
    nc: Any
    js: JetStreamContext
    admission: AdmissionService | None = None
    admission_pid: int | None = None
    """With ``admission_process``: the process admission runs in."""


@asynccontextmanager
async def fresh_bus(
    root: Path,
    name: str,
    *,
    admission: bool = False,
    admission_process: bool = False,
    **overrides: Any,
) -> AsyncIterator[Bus]:
    """``overrides``: settings other than the data directory (``admission_partitions``).

    ``admission``: declare the platform (the intake, its partitions' consumers, the
    admitted-ids and lease buckets) and run an admission instance for the block, as
    ``lintas up`` does: in this process, on a connection of its own made as the
    platform's are (:func:`lintas.admission.running.admission_service`). What a Publisher
    (:func:`~lintas.producers.publisher_for`) sends goes through it.
    ``admission_process``: the same in a process of its own (``lintas run admission``),
    as a deployment keeps it apart from an agency's Publisher.
    """
    admission = admission or admission_process
    settings = Settings(data_dir=root / name, **overrides)
    # Admission's key first: every registry read from here on (the Publishers' and the
    # consumers' verifiers, admission's own) must hold its receipts' key.
    for agency in (*AGENCIES, "admission") if admission else AGENCIES:
        ensure_agency_key(settings, agency)
    for agency in AGENCIES:
        ensure_exchange_key(settings, agency)  # a Publisher seals personal fields for them
    server = EmbeddedNats(settings.nats_store_dir, server_name=f"lintas-bench-{name}")
    await server.start()
    nc = await nats.connect(server.url)
    try:
        async with AsyncExitStack() as stack:
            js = nc.jetstream(timeout=30, publish_async_max_pending=4000)
            await ensure_stream(js, settings)
            await ensure_stream_config(js, case_keys_stream_config(settings))
            service, pid = None, None
            if admission:
                await declare_platform(js, settings, [])
            if admission_process:
                pid = await stack.enter_async_context(admission_apart(settings, server.url))
            elif admission:
                service = await stack.enter_async_context(admission_service(settings, server.url))
            yield Bus(settings, server, nc, js, service, pid)
    finally:
        await nc.close()
        await server.stop()


@asynccontextmanager
async def filled_log(
    root: Path, name: str, events: int, case_size: int, pool: ProcessPoolExecutor
) -> AsyncIterator[Log]:
    async with fresh_bus(root, name) as bus:
        started = time.perf_counter()
        cases, body_bytes = await fill(bus.js, bus.settings, events, case_size, pool)
        fill_s = time.perf_counter() - started
        info = await bus.js.stream_info(bus.settings.stream)
        yield Log(
            name,
            bus.server,
            bus.settings,
            bus.nc,
            bus.js,
            info.state.messages,
            cases,
            body_bytes,
            fill_s,
        )


@asynccontextmanager
async def admission_apart(settings: Settings, url: str) -> AsyncIterator[int]:
    """``lintas run admission`` on ``url`` for the block, once it says it is up: its pid."""
    env = {**os.environ, "LINTAS_DATA_DIR": str(settings.data_dir), "LINTAS_NATS_URL": url}
    env["LINTAS_ADMISSION_PARTITIONS"] = str(settings.admission_partitions)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "run",
        "admission",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if b"admission up" not in line:
            raise RuntimeError(f"lintas run admission did not start: {line!r}")
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far; 0 without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB: VmHWM where /proc has it, else ru_maxrss.

    Not ru_maxrss first: on Linux it survives exec, so a spawned child would report its
    parent's peak (the fill) until it outgrew it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ChildPeaks:
    """The peak RSS (VmHWM, KiB) of each child process this one starts while it runs:
    sampled from /proc every ``every_s`` until stopped, the last sample of a child being
    within ``every_s`` of its exit. Empty where /proc is not there."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.peaks: dict[int, int] = {}
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(self._every_s):
            for stat in self._statuses():
                try:
                    fields = dict(
                        line.split(":", 1) for line in stat.read_text().splitlines() if ":" in line
                    )
                except OSError:
                    continue
                if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                    pid = int(stat.parent.name)
                    self.peaks[pid] = int(fields["VmHWM"].split()[0])

    @staticmethod
    def _statuses() -> list[Path]:
        # The kernel lists each thread's children: reading only theirs keeps the sampler's
        # cost (in the process it measures) off the figures; every process's status took
        # 2 ms a sample on a machine running 84. Else, where that list is missing, all.
        try:
            tasks = Path(f"/proc/{os.getpid()}/task").iterdir()
            pids = {pid for task in tasks for pid in (task / "children").read_text().split()}
        except OSError:
            return list(Path("/proc").glob("[0-9]*/status"))
        return [Path("/proc", pid, "status") for pid in sorted(pids)]


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:>10,.0f} ev/s" if seconds > 0 else "n/a"


def mib(kb: int) -> str:
    return f"{kb / 1024:,.1f} MiB"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def machine() -> Iterator[str]:
    binary = find_nats_server()
    version = ".".join(map(str, nats_server_version(binary)))
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    yield f"machine: {os.cpu_count()} cpus, {pages / 2**30:.1f} GiB RAM, {platform.platform()}"
    yield f"python {platform.python_version()}, nats-server v{version}"
