"""Reliability figures: the chaos scenarios of the test suite, at any scale, as one table.

    python bench/reliability.py                # the test suite's sizes (about 30 s)
    python bench/reliability.py --scale 10     # 1,000,000 load events, 2,000 writer kills ...

Columns: events the application recorded (calls that returned), found afterwards by the
query engine, lost, of those lost how many the writers counted and reported themselves
(``writer_fault`` lines), found twice, corrupt lines skipped by the reader, faults
injected, exceptions the application saw. The disk-full run must show lost == reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tests import chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1, help="multiply events and kill rounds (default 1)")
    parser.add_argument("--only", default=None, help="run only scenarios whose name contains this")
    args = parser.parse_args()
    s = args.scale
    base = Path(tempfile.mkdtemp(prefix="reliability-"))
    runs = {
        "load": lambda: chaos.load(base / "load", events=100_000 * s),
        "writer": lambda: chaos.writer_kills(base / "kills", rounds=200 * s),
        "cleaner": lambda: chaos.cleaner_kills(base / "cleaner", rounds=50 * s),
        "state": lambda: chaos.state_kills(_mk(base / "state"), rounds=200 * s),
        "deleted": lambda: chaos.folder_deleted(base / "deleted", rounds=20 * s)[0],
        "read-only": lambda: chaos.read_only_mid_run(base / "ro", calls=5_000 * s)[0],
        "fds": lambda: chaos.fd_exhaustion(base / "fds"),
    }
    tallies = []
    for name, run in runs.items():
        if args.only and args.only not in name:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        tallies.append(run())
    if (args.only is None or "disk" in args.only) and os.geteuid() == 0:
        print("running disk full ...", file=sys.stderr, flush=True)
        with chaos.small_filesystem(base / "fs") as fs:
            if fs is None:
                print("  (mounting a tmpfs was refused: disk-full run skipped)", file=sys.stderr)
            else:
                tally, fault = chaos.disk_full(fs, calls=20_000 * s)
                tallies.append(tally)
                print(f"  during the fault: median {fault.median_us:.1f} us/call, p99 {fault.p99_us:.1f} us, "
                      f"Python memory {fault.memory_growth:+,} bytes over {fault.calls:,} calls, "
                      f"{fault.reports} report(s)", file=sys.stderr)
    print(chaos.table(tallies))
    bad = [t.scenario for t in tallies if t.duplicated or t.app_exceptions or t.lost != t.reported]
    if bad:
        print(f"FAILED: {', '.join(bad)}")
        sys.exit(1)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
