#!/usr/bin/env python3
"""What a decorator adds to an empty function, with telemetry on and switched off.

Each case runs in a fresh process (so "off" really is a process started with
MONITORING_ENABLED=0), N calls after a warm-up, several rounds; the table shows the
median cost per call and the overhead over the bare function measured in the same
process. "On" includes writing the line (render + one ``write``) to a rotating file.

    python bench/instrumentation_bench.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
CASES = ("observe_tool_call", "observe_llm_call", "monitor.timer", "bind + record")


def child(case: str, n: int) -> None:
    from infrastructure.monitoring import PerformanceMonitorFactory
    from infrastructure.monitoring.instrumentation import bind, observe_llm_call, observe_tool_call

    def bare() -> int:
        return 1

    if case == "observe_tool_call":
        fn = observe_tool_call("noop")(bare)
    elif case == "observe_llm_call":
        fn = observe_llm_call(model="gpt-4o")(bare)
    elif case == "monitor.timer":
        task = PerformanceMonitorFactory.get_instance().create_monitor("task")

        def fn() -> int:
            with task.timer("noop"):
                return 1
    else:
        tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")
        bind(session_id="s-1", user="ada")

        def fn() -> int:
            tool.record_tool_call("noop", 0.0)
            return 1

    def per_call(target) -> float:
        for _ in range(1000):
            target()
        started = time.perf_counter()
        for _ in range(n):
            target()
        return (time.perf_counter() - started) / n * 1e6

    print(json.dumps({"bare": per_call(bare), "wrapped": per_call(fn)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"{args.n:,} calls per run, medians of {args.rounds} rounds, fresh process each (µs per call)")
    print(f"{'case':<20}{'telemetry':>10}{'per call':>10}{'overhead':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            for mode, enabled in (("on", "1"), ("off", "0")):
                runs = []
                for _ in range(args.rounds):
                    env = {**os.environ, "MONITORING_LOG_DIR": folder, "MONITORING_ENABLED": enabled}
                    done = subprocess.run([sys.executable, __file__, "--child", case, str(args.n)], env=env,
                                          capture_output=True, text=True, check=True)
                    runs.append(json.loads(done.stdout))
                wrapped = statistics.median(r["wrapped"] for r in runs)
                overhead = statistics.median(r["wrapped"] - r["bare"] for r in runs)
                print(f"{case:<20}{mode:>10}{wrapped:>10.2f}{overhead:>10.2f}")


if __name__ == "__main__":
    main()
