"""Every benchmark, one after the other: figures and ratios, never assertions (issue 9).

    python bench/run.py            # the sizes docs/PERFORMANCE.md reports (several minutes)
    python bench/run.py --quick    # tiny sizes: the CI smoke run (about half a minute)

Each script runs in a process of its own, starts its own nats-server(s) and measures lintas
beside a raw nats-py baseline in the same run; PostgreSQL figures are added when
``LINTAS_TEST_POSTGRES_URL`` is set. Exit status is non-zero only if a script failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("publish.py", "consume.py", "replay.py", "latency.py", "admission.py", "verify.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    args = parser.parse_args(argv)
    failed = []
    started = time.perf_counter()
    for script in SCRIPTS:
        print(f"\n##### bench/{script}", flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / script), *(["--quick"] if args.quick else [])],
            check=False,
        )
        if done.returncode != 0:
            failed.append(script)
    print(f"\n(all benchmarks ran {time.perf_counter() - started:.0f}s)")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
