"""External logrotate under concurrent writers: records lost and duplicated, per logrotate mode.

    python bench/logrotate_bench.py                      # 4 writers x 50,000 records over 7 s, logrotate -f every 0.7 s
    python bench/logrotate_bench.py --runs 5 --modes create,copytruncate

Each writer process appends its records through the library's writer (its own rotation
off) at a steady pace, so the run spans about ``--seconds / --every`` forced rotations by
the real ``logrotate`` (state file in a temporary folder). Afterwards the library's query
engine reads the family (``<file>`` and logrotate's ``<file>.N`` / ``<file>.N.gz``) and
every (writer, seq) is looked for. Columns: median and worst of lost and duplicated
records over the runs, lines the reader skipped as damaged, rotations per run, how many
writers logged the copytruncate warning (reopen check every ``--check`` seconds), and
the records lost in each run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from tests import logrotate_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--records", type=int, default=50_000, help="per writer (default 50,000)")
    parser.add_argument("--seconds", type=float, default=7.0, help="how long each writer takes (default 7)")
    parser.add_argument("--every", type=float, default=0.7, help="seconds between forced rotations (default 0.7)")
    parser.add_argument("--check", type=float, default=1.0,
                        help="the writers' reopen check interval, logging.reopen_check_interval (default 1)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(logrotate_run.MODES),
                        help="comma-separated, from: " + ", ".join(logrotate_run.MODES))
    args = parser.parse_args()
    if logrotate_run.LOGROTATE is None:
        raise SystemExit("logrotate is not installed (apt-get install logrotate)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    base = Path(tempfile.mkdtemp(prefix="logrotate-bench-"))
    written = args.writers * args.records
    print(f"{args.writers} writers x {args.records:,} records over ~{args.seconds:g} s, logrotate -f every "
          f"{args.every:g} s, reopen check every {args.check:g} s, {args.runs} runs per mode ({base})\n")
    header = (f"{'mode':<22} {'written':>9} {'lost median':>12} {'lost max':>9} {'lost %':>7} {'dup max':>8} "
              f"{'damaged':>8} {'rotations':>10} {'warned':>7}  lost per run")
    print(header)
    print("-" * len(header))
    for mode in modes:
        outcomes = []
        for run in range(args.runs):
            print(f"  {mode} run {run + 1} ...", file=sys.stderr, flush=True)
            outcomes.append(logrotate_run.run(base / f"{mode}-{run}", mode, writers=args.writers,
                                              records=args.records, seconds=args.seconds, every=args.every,
                                              check_interval=args.check))
        lost = [o.lost for o in outcomes]
        print(f"{mode:<22} {written:>9,} {statistics.median(lost):>12,.0f} {max(lost):>9,} "
              f"{100 * max(lost) / written:>6.2f}% {max(o.duplicated for o in outcomes):>8,} "
              f"{max(o.damaged for o in outcomes):>8,} {statistics.median(o.rotations for o in outcomes):>10.0f} "
              f"{min(o.warned for o in outcomes):>3}-{max(o.warned for o in outcomes)}/{args.writers}  "
              + ", ".join(f"{n:,}" for n in lost))


if __name__ == "__main__":
    main()
