#!/usr/bin/env python3
"""Cost of one recorded LLM call, next to its peers, measured in one run.

Each contender writes the same event (an LLM call: model, provider, latency, three
token counts, success) to its own file, in a fresh process, N times after a warm-up.
Contenders are interleaved in a shuffled order each round and ratios are taken to the
floor *of the same round*, because this machine is noisy; the table shows medians.

    ours        PerformanceMonitorFactory monitor .record_llm_call, rotation + redaction + multi-process safety on
    floor       orjson.dumps + one os.write on an O_APPEND descriptor (no rotation, no safety)
    structlog   fastest documented setup: make_filtering_bound_logger, cached, orjson JSONRenderer, BytesLogger
    stdlib      logging + python-json-logger JsonFormatter + RotatingFileHandler
    loguru      serialize=True with rotation
    clh         concurrent-log-handler ConcurrentRotatingFileHandler + python-json-logger

Then: 4 processes x 50,000 records into one family rotating every 1 MB (lines lost,
duplicated, corrupt; wall time against raw O_APPEND writes without rotation), and the
RSS growth of one process over 1,000,000 record_llm_call calls.

    python bench/write_bench.py [--n 100000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

EVENT = {"model": "gpt-4", "provider": "openai", "response_time": 2.1, "prompt_tokens": 100,
         "completion_tokens": 200, "total_tokens": 300, "success": True}
CONTENDERS = ["ours", "ours_labels", "floor", "structlog", "stdlib", "loguru", "clh"]
MAX_BYTES = 50 * 1024 * 1024


# --------------------------------------------------------------------------- contenders (run in a child)

def make_ours(folder: str, **extra):
    from dependency_injector import providers

    from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(overrides={"logging": {"log_dir": folder}, **extra},
                                                               environ={})))
    llm = PerformanceMonitorFactory(container).create_monitor("llm")

    def call() -> None:
        llm.record_llm_call(model="gpt-4", provider="openai", response_time=2.1, prompt_tokens=100,
                            completion_tokens=200, total_tokens=300, success=True)
    return call


def make_ours_labels(folder: str):
    """The same, with the global labels service_name and environment on every record."""
    return make_ours(folder, service_name="checkout-api", environment="production")


def make_floor(folder: str):
    import orjson

    fd = os.open(os.path.join(folder, "floor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    dumps, write, now = orjson.dumps, os.write, time.time
    opt = orjson.OPT_APPEND_NEWLINE

    def call() -> None:
        write(fd, dumps({"timestamp": now(), "metric_type": "timer", "operation": "llm_call", "model": "gpt-4",
                         "provider": "openai", "response_time": 2.1, "prompt_tokens": 100,
                         "completion_tokens": 200, "total_tokens": 300, "success": True, "module": "llm"},
                        option=opt))
    return call


def make_structlog(folder: str):
    import logging

    import orjson
    import structlog

    handle = open(os.path.join(folder, "structlog.log"), "ab")  # noqa: SIM115
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(file=handle),
    )
    log = structlog.get_logger()

    def call() -> None:
        log.info("llm_call", model="gpt-4", provider="openai", response_time=2.1, prompt_tokens=100,
                 completion_tokens=200, total_tokens=300, success=True)
    return call


def _stdlib_logger(handler):
    import logging

    from pythonjsonlogger.json import JsonFormatter

    handler.setFormatter(JsonFormatter(["message", "created"]))
    logger = logging.getLogger("bench")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def call() -> None:
        logger.info("llm_call", extra=EVENT)
    return call


def make_stdlib(folder: str):
    from logging.handlers import RotatingFileHandler

    return _stdlib_logger(RotatingFileHandler(os.path.join(folder, "stdlib.log"), maxBytes=MAX_BYTES,
                                              backupCount=10))


def make_clh(folder: str):
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    return _stdlib_logger(ConcurrentRotatingFileHandler(os.path.join(folder, "clh.log"), maxBytes=MAX_BYTES,
                                                        backupCount=10))


def make_loguru(folder: str):
    from loguru import logger

    logger.remove()
    logger.add(os.path.join(folder, "loguru.log"), serialize=True, rotation="50 MB", enqueue=False)

    def call() -> None:
        logger.info("llm_call", **EVENT)
    return call


def child_timing(name: str, n: int) -> None:
    folder = tempfile.mkdtemp(prefix=f"wb-{name}-")
    try:
        call = globals()[f"make_{name}"](folder)
        for _ in range(min(5000, n)):
            call()
        started = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - started
        print(json.dumps({"us": elapsed / n * 1e6}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def child_rss(n: int) -> None:
    import gc

    import psutil

    folder = tempfile.mkdtemp(prefix="wb-rss-")
    try:
        call = make_ours(folder)
        for _ in range(20_000):
            call()
        gc.collect()
        before = psutil.Process().memory_info().rss
        for _ in range(n):
            call()
        gc.collect()
        print(json.dumps({"growth": psutil.Process().memory_info().rss - before}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def mp_worker(kind: str, path: str, worker: int, count: int, barrier) -> None:
    barrier.wait()  # everyone imported and forked: the clock starts now
    if kind == "ours":
        from infrastructure.monitoring import FileSink, LLMPerformanceMonitor, MetricsLogger, Redactor

        llm = LLMPerformanceMonitor(MetricsLogger("llm", FileSink(path, max_bytes=1_000_000, backup_count=1000),
                                                  redactor=Redactor()))
        for seq in range(count):
            llm.record_llm_call("gpt-4", "openai", 2.1, 100, 200, 300, True, worker=worker, seq=seq)
    elif kind == "raw":
        import orjson

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        for seq in range(count):
            os.write(fd, orjson.dumps({"timestamp": time.time(), "metric_type": "timer", "operation": "llm_call",
                                       **EVENT, "module": "llm", "worker": worker, "seq": seq},
                                      option=orjson.OPT_APPEND_NEWLINE))
    else:
        import logging

        from pythonjsonlogger.json import JsonFormatter

        logging.raiseExceptions = False  # as in production: a failed rollover is not printed, lines just go
        if kind == "stdlib":
            from logging.handlers import RotatingFileHandler as Handler
        else:
            from concurrent_log_handler import ConcurrentRotatingFileHandler as Handler
        handler = Handler(path, maxBytes=1_000_000, backupCount=1000)
        handler.setFormatter(JsonFormatter(["message", "created"]))
        logger = logging.getLogger("mp")
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        for seq in range(count):
            logger.info("llm_call", extra={**EVENT, "worker": worker, "seq": seq})


# --------------------------------------------------------------------------- the parent

def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True,
                         timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def account(folder: Path, workers: int, count: int) -> tuple[int, int, int]:
    seen: dict[tuple[int, int], int] = {}
    corrupt = 0
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
                key = (int(record["worker"]), int(record["seq"]))
            except (ValueError, KeyError, TypeError):
                corrupt += 1
                continue
            seen[key] = seen.get(key, 0) + 1
    lost = workers * count - len(seen)
    duplicated = sum(v - 1 for v in seen.values())
    return lost, duplicated, corrupt


def multi_process(workers: int, count: int, rounds: int) -> list[tuple]:
    import multiprocessing

    # Imports happen once in the parent, as with gunicorn --preload, so the timing is of writing.
    import concurrent_log_handler  # noqa: F401
    import orjson  # noqa: F401
    import pythonjsonlogger.json  # noqa: F401

    import infrastructure.monitoring  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    rows = []
    times: dict[str, list[float]] = {k: [] for k in ("raw", "ours", "stdlib", "clh")}
    results: dict[str, tuple[int, int, int]] = {}
    for _ in range(rounds):
        order = list(times)
        random.shuffle(order)
        for kind in order:
            folder = Path(tempfile.mkdtemp(prefix=f"wb-mp-{kind}-"))
            try:
                path = str(folder / "llm_metrics.log")
                barrier = ctx.Barrier(workers + 1)
                procs = [ctx.Process(target=mp_worker, args=(kind, path, w, count, barrier)) for w in range(workers)]
                for proc in procs:
                    proc.start()
                barrier.wait()
                started = time.perf_counter()
                for proc in procs:
                    proc.join()
                times[kind].append(time.perf_counter() - started)
                lost, dup, corrupt = account(folder, workers, count)
                prev = results.get(kind, (0, 0, 0))
                results[kind] = (max(prev[0], lost), max(prev[1], dup), max(prev[2], corrupt))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    raw = statistics.median(times["raw"])
    for kind in ("raw", "ours", "clh", "stdlib"):
        wall = statistics.median(times[kind])
        lost, dup, corrupt = results[kind]
        rows.append((kind, wall, wall / raw, lost, dup, corrupt))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="calls per timing run (default 100000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--mp-count", type=int, default=50_000, help="records per process in the 4-process run")
    parser.add_argument("--rss-n", type=int, default=1_000_000, help="calls for the RSS measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", choices=["single", "mp", "rss"], help="run one part of the benchmark")
    parser.add_argument("--mp-rounds", type=int, default=None, help="rounds of the multi-process run (rounds // 2)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        if kind == "rss":
            child_rss(int(args.child[1]))
        else:
            child_timing(kind, int(args.child[1]))
        return
    if args.quick:
        args.n, args.rounds, args.mp_count, args.rss_n = 20_000, 2, 5_000, 100_000

    if args.only in (None, "single"):
        single_process(args)
    if args.only in (None, "mp"):
        mp_rounds = args.mp_rounds or max(1, args.rounds // 2)
        print(f"\n4 processes × {args.mp_count:,} records into one family, rotating every 1 MB "
              f"(median of {mp_rounds} rounds; lost/dup/corrupt: worst round)\n")
        print(f"{'writer':<8} {'wall s':>8} {'× raw':>7} {'lost':>7} {'dup':>6} {'corrupt':>8}")
        for kind, wall, rel, lost, dup, corrupt in multi_process(4, args.mp_count, mp_rounds):
            label = kind + ("*" if kind == "raw" else "")
            print(f"{label:<8} {wall:>8.2f} {rel:>7.2f} {lost:>7} {dup:>6} {corrupt:>8}")
        print("* raw: orjson + os.write(O_APPEND), one file, no rotation")
    if args.only in (None, "rss"):
        growth = run_child("--child", "rss", str(args.rss_n))["growth"]
        print(f"\nRSS growth over {args.rss_n:,} record_llm_call calls (after warm-up): {growth / 1024:.0f} KiB")


def single_process(args: argparse.Namespace) -> None:
    per: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    ratio: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    for round_no in range(args.rounds):
        order = CONTENDERS[:]
        random.shuffle(order)
        got = {name: run_child("--child", name, str(args.n))["us"] for name in order}
        for name in CONTENDERS:
            per[name].append(got[name])
            ratio[name].append(got[name] / got["floor"])
        print(f"round {round_no + 1}/{args.rounds}: " + "  ".join(f"{k} {v:.2f}" for k, v in got.items()),
              file=sys.stderr)

    print(f"\nSingle process, {args.n:,} calls per run, {args.rounds} interleaved rounds (medians; µs per call)\n")
    print(f"{'contender':<12} {'µs/call':>9} {'× floor':>9} {'× range':>15}  notes")
    notes = {
        "ours": "record_llm_call: rotation, redaction, multi-process safe",
        "ours_labels": "the same + service_name and environment on every record",
        "floor": "orjson.dumps + os.write(O_APPEND)",
        "structlog": "fastest documented config, no rotation, no redaction",
        "stdlib": "logging + python-json-logger + RotatingFileHandler",
        "loguru": "serialize=True, rotation",
        "clh": "concurrent-log-handler + python-json-logger",
    }
    for name in CONTENDERS:
        lo, hi = min(ratio[name]), max(ratio[name])
        print(f"{name:<12} {statistics.median(per[name]):>9.2f} {statistics.median(ratio[name]):>9.2f} "
              f"{lo:>7.2f}–{hi:<7.2f}  {notes[name]}")
    ours_vs_structlog = statistics.median([o / s for o, s in zip(per["ours"], per["structlog"], strict=True)])
    print(f"\nours / structlog (same round, median): {ours_vs_structlog:.2f}")



if __name__ == "__main__":
    main()
