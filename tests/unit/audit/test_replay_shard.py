"""A replay shard alone (real SQLite, no broker): it applies what the live projector would,
skips the rest with the edge's reason, and leaves events past ``--as-of`` uncounted as
skips, whatever their signature."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lintas.audit._shards import Shard, ShardJob
from lintas.audit.replay import ReplayResult, open_fresh_store
from lintas.contracts import BROADCAST, Event, encode
from lintas.infra.keys.signing import KeyEntry, Registry, Signer
from lintas.infra.settings import Settings
from tests.support.events import CASE, OPENED, at, ev

replay_module = importlib.import_module("lintas.audit.replay")

KEMLU = Signer("kemlu", Ed25519PrivateKey.generate())
STRANGER = Signer("kemlu", Ed25519PrivateKey.generate())  # in no registry
REGISTRY = Registry(
    [KeyEntry("kemlu", KEMLU.keyid, KEMLU._key.public_key(), datetime(2000, 1, 1, tzinfo=UTC))]
)


def _closed(minutes: float) -> Event:
    data = {"reason": "reintegrated"}
    return ev("case.closed", data, source="kemlu", target=BROADCAST, case_id=CASE, time=at(minutes))


def _message(
    seq: int, event: Event, signer: Signer, *, alter: bool = False
) -> tuple[int, str, bytes]:
    envelope = signer.sign(event.envelope)
    body = encode(envelope)
    if alter:  # the signature no longer covers what is stored
        body = body.replace(b"reintegrated", b"transferred")
    return seq, envelope.nats_subject, body


def _shard(tmp_path: Path, as_of: datetime | None) -> Shard:
    url = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    engine = open_fresh_store(url, Settings(data_dir=tmp_path / "live"))
    return Shard(ShardJob(url, REGISTRY, as_of, max_links=64), engine)


def test_a_shard_skips_what_the_edge_quarantines_with_its_reason(tmp_path: Path) -> None:
    shard = _shard(tmp_path, None)
    report = shard.apply(
        [
            _message(1, OPENED, KEMLU),
            _message(2, _closed(1), STRANGER),
            _message(3, _closed(2), KEMLU, alter=True),
            _message(4, _closed(3), KEMLU),
        ]
    )
    assert (report.applied, report.skipped, report.after_as_of) == (2, 2, 0)
    assert [seq for seq, _ in report.reasons] == [2, 3]
    assert f"key {STRANGER.keyid} is not in the registry" in report.reasons[0][1]
    assert "signature does not match" in report.reasons[1][1]


def test_past_the_cut_nothing_is_checked_or_counted_as_skipped(tmp_path: Path) -> None:
    shard = _shard(tmp_path, at(1.5))
    report = shard.apply(
        [
            _message(1, OPENED, KEMLU),
            _message(2, _closed(1), STRANGER),  # before the cut: skipped
            _message(3, _closed(2), STRANGER),  # after it: not part of this record
            _message(4, _closed(3), KEMLU, alter=True),
            _message(5, _closed(4), KEMLU),
        ]
    )
    assert (report.applied, report.skipped, report.after_as_of) == (1, 1, 3)
    assert [seq for seq, _ in report.reasons] == [2]


class _Pool:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.shut = threading.Event()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shut.set()
        if self.fails:
            raise OSError("the pipe to the worker broke")


def test_workers_exiting_after_the_replay_are_all_waited_for_and_a_failure_raised() -> None:
    """The workers exit in the background while the record is digested: close still shuts
    every pool down when one fails to, and says so."""
    shards = replay_module._Shards(None, None, ReplayResult(), None)  # type: ignore[arg-type]
    failing, fine = _Pool(fails=True), _Pool(fails=False)
    shards._pools = [failing, fine]  # type: ignore[list-item]
    shards.release()
    assert shards._pools == []
    with pytest.raises(OSError, match="pipe to the worker broke"):
        shards.close()
    assert failing.shut.is_set()
    assert fine.shut.is_set()
    shards.close()  # closed already: nothing left to raise
