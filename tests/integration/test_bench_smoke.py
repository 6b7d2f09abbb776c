"""``bench/replay.py --quick`` runs end to end: it measures, it asserts nothing about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.nats, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "replay.py"
HEADERS = (
    "== 1. full replay vs raw nats-py read",
    "== 2. single-case replay",
    "== 3. peak memory of the full replay",
)


def test_the_replay_bench_runs_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for header in HEADERS:
        assert header in done.stdout, done.stdout
