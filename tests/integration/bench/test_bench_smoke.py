"""``bench/run.py --quick`` runs every benchmark end to end: it measures, it asserts nothing
about speed (issue 9: CI runs a small smoke run of bench/, no targets asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.nats, pytest.mark.slow]

BENCH = REPO / "bench" / "run.py"
HEADERS = (
    "== publish:",
    "== consume:",
    "== 1. full replay vs raw nats-py read",
    "== 2. single-case replay",
    "== 3. peak memory of the full replay",
    "== end-to-end latency at",
    "== admission:",
    "== verify: whole log of",
)


def test_every_bench_runs_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    for header in HEADERS:
        assert header in done.stdout, done.stdout
    assert "ratio lintas / raw" in done.stdout  # the figures come with their ratios
    if (os.cpu_count() or 1) > 1:  # else the replay runs in one process
        assert "peak RSS of replay worker 2" in done.stdout  # the sampler found the workers
