#!/usr/bin/env python3
"""Cost of one cleanup of a folder holding 10,000 rotated files, next to simpler ways.

The folder: one family of this package (``bench_metrics.log`` with its control file)
plus ``.1`` ... ``.10000`` backups of 1 KiB; 9,000 of them are past the 30-day
retention, 1,000 are not. Each contender runs in a fresh process on a fresh copy, so
memory figures are its own. Rounds interleave the contenders; the table shows medians.

    ours          LogCleaner.cleanup_logs(): folder-confined walk, inode re-check under the
                  family lock, run lock, one audit JSON line per deleted file
    ours dry run  the same decisions, nothing deleted (audit lines still written)
    naive         glob.glob + os.path.getmtime + os.remove (what a ten-line cleaner does)
    find          find DIR -name '*.log*' -mtime +30 -delete (GNU findutils, in C)

Peak memory is tracemalloc's peak of Python allocations during the call (a second,
separate run, since tracing slows it down) and the growth of the process's peak RSS.

    python bench/cleanup_bench.py [--files 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

CONTENDERS = ["ours", "ours dry run", "naive", "find"]
DAY = 86400


def build_folder(folder: Path, files: int) -> int:
    """The benchmark folder; returns how many files are past retention."""
    folder.mkdir(parents=True)
    from infrastructure.monitoring import FileSink

    sink = FileSink(folder / "bench_metrics.log")
    sink.write(b'{"live":true}\n', time.time())
    sink.close()
    now = time.time()
    payload = b'{"pad":"' + b"x" * 1000 + b'"}\n'
    old = 0
    for k in range(1, files + 1):
        path = folder / f"bench_metrics.log.{k}"
        path.write_bytes(payload)
        # ages grow with the index, as in a real family: the newest tenth inside the retention
        days = 2 + 20 * k / files if k <= files // 10 else 31 + 12 * k / files
        os.utime(path, (now - days * DAY, now - days * DAY))
        old += days > 30
    return old


def child(name: str, folder: str, traced: bool) -> None:
    import tracemalloc

    from infrastructure.monitoring import CleanupSettings, LogCleaner, MetricsLogger
    from infrastructure.monitoring._sink import FileSink

    audit = MetricsLogger("cleaner", FileSink(os.path.join(folder, "cleaner_metrics.log")))
    cleaner = LogCleaner(CleanupSettings(retention_days=30, log_patterns=("*.log", "*.log.*")), folder, audit=audit)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    deleted = 0
    if name == "ours":
        deleted = cleaner.cleanup_logs().files_deleted
    elif name == "ours dry run":
        deleted = cleaner.cleanup_logs(dry_run=True).files_deleted
    elif name == "naive":
        import glob

        cutoff = time.time() - 30 * DAY
        for path in glob.glob(os.path.join(folder, "*.log*")):
            if os.path.getmtime(path) < cutoff:
                os.remove(path)
                deleted += 1
    elif name == "find":
        before = len(os.listdir(folder))
        subprocess.run(["find", folder, "-maxdepth", "1", "-name", "*.log*", "-mtime", "+30", "-delete"], check=True)
        deleted = before - len(os.listdir(folder))
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    print(json.dumps({"seconds": elapsed, "deleted": deleted, "peak": peak, "rss_kib": rss_growth}))


def run_child(name: str, folder: Path, traced: bool) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", name, str(folder), "1" if traced else "0"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1")
        return

    work = Path(tempfile.mkdtemp(prefix="cleanup-bench-"))
    try:
        template = work / "template"
        expected = build_folder(template, args.files)
        times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
        memory: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
        for round_no in range(args.rounds):
            order = CONTENDERS[:]
            random.Random(round_no).shuffle(order)
            for name in order:
                for traced in (False, True):
                    folder = work / f"run-{round_no}-{name.replace(' ', '_')}-{int(traced)}"
                    shutil.copytree(template, folder, copy_function=shutil.copy2)
                    result = run_child(name, folder, traced)
                    want = expected if name != "find" else None
                    if want is not None and result["deleted"] != want:
                        raise SystemExit(f"{name} deleted {result['deleted']} files, expected {want}")
                    (memory if traced else times)[name].append(result if traced else result["seconds"])
                    shutil.rmtree(folder)
        naive = statistics.median(times["naive"])
        print(f"Cleaning {args.files:,} rotated files ({expected:,} past retention), "
              f"medians of {args.rounds} rounds, fresh process and folder each")
        print(f"{'contender':<14}{'time':>10}{'vs naive':>10}{'per file':>11}{'py peak':>11}{'RSS growth':>12}")
        for name in CONTENDERS:
            median = statistics.median(times[name])
            peak = statistics.median(m["peak"] for m in memory[name]) / 1024
            rss = statistics.median(m["rss_kib"] for m in memory[name])
            print(f"{name:<14}{median * 1000:>8.0f}ms{median / naive:>9.2f}x{median / args.files * 1e6:>9.1f}µs"
                  f"{peak:>8.0f}KiB{rss:>9.0f}KiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
