"""Reliability scenarios with exact accounting, shared by the test suite and ``bench/reliability.py``.

Every scenario returns a ``Tally``: events the application asked to record, events the
query engine found afterwards (each identified by writer and sequence number), how many
were lost or found twice, corrupt lines the reader skipped, faults injected, and
exceptions the application saw. "Acknowledged" means the recording call returned: a
writer publishes the sequence number of each call that returned in shared memory, so a
writer killed with SIGKILL tells exactly which records it owed.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dependency_injector import providers

from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings
from infrastructure.monitoring.query import LogParser, SkipReport

_FORK = multiprocessing.get_context("fork")
TALLIES: Any = None
"""The pytest stash key under which the reliability tests collect their tallies (set by conftest)."""


@dataclass
class Tally:
    scenario: str
    written: int = 0
    """Recording calls that returned (acknowledged)."""
    found: int = 0
    lost: int = 0
    reported: int = 0
    """Of the lost, how many the writers counted and reported (``writer_fault`` lines)."""
    duplicated: int = 0
    corrupt_lines: int = 0
    faults_injected: int = 0
    app_exceptions: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "written": self.written, "found": self.found, "lost": self.lost,
                "lost, reported": self.reported, "duplicated": self.duplicated, "corrupt lines": self.corrupt_lines,
                "faults injected": self.faults_injected, "app exceptions": self.app_exceptions,
                "seconds": round(self.seconds, 1)}


def make_factory(log_dir: Path, **overrides: Any) -> PerformanceMonitorFactory:
    sections: dict[str, Any] = {"logging": {"log_dir": str(log_dir), **overrides.pop("logging", {})}, **overrides}
    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(overrides=sections, environ={})))
    return PerformanceMonitorFactory(container)


def account(log_dir: Path, module: str, acked: dict[tuple[int, int], int], *,
            tally: Tally) -> Tally:
    """Read the family back and compare with what was acknowledged: ``acked[(writer, thread)]``
    is the last sequence number whose call returned (-1: none). Records beyond it (written,
    not yet acknowledged when killed) are fine once; twice is a duplicate."""
    skipped = SkipReport()
    seen: Counter[tuple[int, int, int]] = Counter()
    for record in LogParser(log_dir).records(module, skipped=skipped):
        if "seq" in record:
            seen[(record["w"], record["t"], record["seq"])] += 1
    tally.corrupt_lines = skipped.count
    tally.notes["skip_reasons"] = dict(skipped.by_reason)
    tally.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    lost = 0
    found = 0
    for (w, t), last in acked.items():
        for seq in range(last + 1):
            if seen.get((w, t, seq)):
                found += 1
            else:
                lost += 1
    tally.found, tally.lost = found, lost
    tally.notes["unacknowledged_but_written"] = sum(1 for (w, t, s) in seen if s > acked.get((w, t), -1))
    return tally


# --------------------------------------------------------------------------- load


def _load_worker(log_dir: str, w: int, threads: int, per_thread: int, rotate: int, acks: Any, errors: Any) -> None:
    factory = make_factory(Path(log_dir), logging={"rotation": {"max_bytes": rotate, "backup_count": 100_000}})
    tool = factory.create_monitor("tool")

    def run(t: int) -> None:
        for seq in range(per_thread):
            try:
                tool.record_tool_call("load", 0.001, seq % 50 != 0, w=w, t=t, seq=seq)
                acks[w * threads + t] = seq
            except Exception:
                errors[w] += 1

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    factory.shutdown()


def load(log_dir: Path, *, processes: int = 8, threads: int = 4, events: int = 100_000,
         rotate_bytes: int = 256 * 1024, cleaner_every: float = 1.0) -> Tally:
    """Writers in ``processes`` x ``threads`` record ``events`` into one family rotating every
    ``rotate_bytes`` while a cleaner (retention, compression, budget) runs every second and
    queries run in a loop; every query count must be between the previous one and the total."""
    tally = Tally(f"load {processes}x{threads}, {events:,} events")
    started = time.perf_counter()
    per_thread = events // (processes * threads)
    acks = _FORK.Array("q", [-1] * (processes * threads), lock=False)
    errors = _FORK.Array("q", [0] * processes, lock=False)
    stop = threading.Event()
    counts: list[int] = []
    side_errors: list[str] = []
    cleaner = make_factory(log_dir, log_cleanup={"compress_after_days": 0, "max_total_size": "1 GiB"})

    def clean() -> None:
        while not stop.wait(cleaner_every):
            try:
                cleaner.force_log_cleanup()
            except Exception as exc:
                side_errors.append(f"cleaner: {exc!r}")

    def query() -> None:
        parser = LogParser(log_dir)
        while not stop.is_set():
            try:
                if parser.families("tool"):
                    counts.append(parser.query("tool", operation="tool_call", aggs=["count"]).rows[0]["count"])
            except Exception as exc:
                side_errors.append(f"query: {exc!r}")
            time.sleep(0.05)

    side = [threading.Thread(target=clean), threading.Thread(target=query)]
    for th in side:
        th.start()
    workers = [_FORK.Process(target=_load_worker, args=(str(log_dir), w, threads, per_thread, rotate_bytes, acks,
                                                        errors)) for w in range(processes)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    stop.set()
    for th in side:
        th.join()
    time.sleep(2.1)  # the cleaner leaves a family alone for 2 s after a rotation
    cleaner.force_log_cleanup()  # once more with every writer gone: compresses what was rotated
    cleaner.shutdown()
    tally.written = sum(a + 1 for a in acks)
    tally.app_exceptions = sum(errors) + sum(1 for p in workers if p.exitcode != 0)
    account(log_dir, "tool", {(w, t): acks[w * threads + t] for w in range(processes) for t in range(threads)},
            tally=tally)
    tally.notes.update(queries=len(counts), side_errors=side_errors,
                       monotonic=all(a <= b for a, b in itertools.pairwise(counts)),
                       max_query_count=max(counts, default=0),
                       files=len(list(log_dir.glob("tool_metrics.log*"))),
                       gz_files=len(list(log_dir.glob("tool_metrics.log*.gz"))))
    tally.seconds = time.perf_counter() - started
    return tally


# --------------------------------------------------------------------------- kills


def _kill_worker(log_dir: str, w: int, rotate: int, acks: Any, started: Any) -> None:
    factory = make_factory(Path(log_dir), logging={"rotation": {"max_bytes": rotate, "backup_count": 100_000}})
    tool = factory.create_monitor("tool")
    started.set()
    seq = 0
    while True:
        tool.record_tool_call("kill", 0.001, True, w=w, t=0, seq=seq, pad="x" * random.randrange(0, 400))
        acks[w] = seq
        seq += 1


def writer_kills(log_dir: Path, *, rounds: int = 200, rotate_bytes: int = 16 * 1024, seed: int = 7) -> Tally:
    """A writer is SIGKILLed at a random moment, ``rounds`` times; rotation is frequent, so many
    kills land inside one. Afterwards every acknowledged record is there exactly once, at most
    one line per kill is damaged, and the next writer carries the family on."""
    rng = random.Random(seed)
    tally = Tally(f"writer SIGKILL x{rounds}")
    started_at = time.perf_counter()
    acks = _FORK.Array("q", [-1] * (rounds + 1), lock=False)
    for r in range(rounds):
        ready = _FORK.Event()
        proc = _FORK.Process(target=_kill_worker, args=(str(log_dir), r, rotate_bytes, acks, ready))
        proc.start()
        ready.wait(10)
        time.sleep(rng.random() * 0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        tally.faults_injected += 1
    # the family must carry on: one more writer, not killed
    factory = make_factory(log_dir, logging={"rotation": {"max_bytes": rotate_bytes, "backup_count": 100_000}})
    tool = factory.create_monitor("tool")
    for seq in range(100):
        tool.record_tool_call("kill", 0.001, True, w=rounds, t=0, seq=seq)
        acks[rounds] = seq
    factory.shutdown()
    tally.written = sum(a + 1 for a in acks)
    account(log_dir, "tool", {(w, 0): acks[w] for w in range(rounds + 1)}, tally=tally)
    tally.seconds = time.perf_counter() - started_at
    return tally


def _cleaner(log_dir: Path) -> Any:
    """A cleaner compressing every rotated file, its clock 3 s ahead: the writer is idle while
    it runs, so the 2 s it leaves a freshly rotated family alone would only slow the test."""
    from infrastructure.monitoring.config import CleanupSettings
    from infrastructure.monitoring.log_cleaner import LogCleaner

    return LogCleaner(CleanupSettings(compress_after_days=0), log_dir, backup_count=100_000,
                      clock=lambda: time.time() + 3)


def _clean_worker(log_dir: str) -> None:
    cleaner = _cleaner(Path(log_dir))
    while True:
        cleaner.cleanup_logs()


def cleaner_kills(log_dir: Path, *, rounds: int = 50, seed: int = 11) -> Tally:
    """The cleaner (compressing every rotated file) is SIGKILLed mid-run ``rounds`` times while
    a writer keeps rotating; then one clean run finishes the job. Nothing acknowledged is
    lost or doubled, and no temporary file is left behind."""
    rng = random.Random(seed)
    tally = Tally(f"cleaner SIGKILL x{rounds}")
    started_at = time.perf_counter()
    factory = make_factory(log_dir, logging={"rotation": {"max_bytes": 8 * 1024, "backup_count": 100_000}})
    tool = factory.create_monitor("tool")
    last = -1
    seq = 0
    for _ in range(rounds):
        for _ in range(200):
            tool.record_tool_call("clean", 0.001, True, w=0, t=0, seq=seq)
            last = seq
            seq += 1
        proc = _FORK.Process(target=_clean_worker, args=(str(log_dir),))
        proc.start()
        time.sleep(rng.random() * 0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        tally.faults_injected += 1
    factory.shutdown()
    result = _cleaner(log_dir).cleanup_logs()
    tally.written = last + 1
    account(log_dir, "tool", {(0, 0): last}, tally=tally)
    tally.notes.update(final_errors=result.errors,
                       leftovers=sorted(p.name for p in log_dir.iterdir() if p.name.startswith(".")
                                        and ".tmp" in p.name),
                       gz_files=len(list(log_dir.glob("*.gz"))))
    tally.seconds = time.perf_counter() - started_at
    return tally


def _state_worker(path: str, start: int) -> None:
    from infrastructure.monitoring._statefile import save_state

    n = start
    while True:
        save_state(path, {"n": n, "pad": "x" * (n % 5000)})
        n += 1


def state_kills(folder: Path, *, rounds: int = 200, seed: int = 3) -> Tally:
    """A process replacing a state file (alerts, OTLP offsets) is SIGKILLed ``rounds`` times: the
    file is always whole, old or new, never a mix, and never moves backwards."""
    from infrastructure.monitoring._statefile import load_state

    rng = random.Random(seed)
    tally = Tally(f"state file SIGKILL x{rounds}")
    started_at = time.perf_counter()
    path = folder / "state.json"
    last = -1
    for _ in range(rounds):
        proc = _FORK.Process(target=_state_worker, args=(str(path), last + 1))
        proc.start()
        time.sleep(0.005 + rng.random() * 0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        tally.faults_injected += 1
        if not path.exists() and last < 0:
            tally.found += 1  # killed before its first save: nothing to be whole yet
            continue
        state = load_state(path)
        n = state.get("n", -1) if state else -1
        if not state or n < last:
            tally.corrupt_lines += 1
        else:
            tally.found += 1
        last = max(last, n)
    tally.written = rounds
    tally.notes.update(saves=last + 1, corrupt_kept=(folder / "state.json.corrupt").exists(),
                       temporaries=sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")))
    tally.seconds = time.perf_counter() - started_at
    return tally


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRun:
    calls: int = 0
    exceptions: int = 0
    median_us: float = 0.0
    p99_us: float = 0.0
    memory_growth: int = 0
    reports: int = 0
    resumed: bool = False


@contextlib.contextmanager
def _warnings_counted(name: str = "infrastructure.monitoring") -> Iterator[list[str]]:
    import logging

    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                seen.append(record.getMessage())

    handler = Grab()
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def hammer(call: Callable[[int], None], n: int) -> FaultRun:
    """Make ``n`` calls during a fault, timed (median, p99) and counted (exceptions, warnings
    reported), then ``n`` more under tracemalloc to see whether Python memory grows."""
    import tracemalloc
    from array import array

    run = FaultRun()
    times = array("q", bytes(8 * n))  # preallocated and unboxed: the measurement allocates nothing
    with _warnings_counted() as reports:
        for i in range(n):
            t0 = time.perf_counter_ns()
            try:
                call(i)
            except Exception:
                run.exceptions += 1
            times[i] = time.perf_counter_ns() - t0
            run.calls += 1
        tracemalloc.start()  # slows every allocation down: a separate pass, not timed
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            try:
                call(n + i)
            except Exception:
                run.exceptions += 1
            run.calls += 1
        run.memory_growth = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    ordered = sorted(times)
    run.median_us = ordered[n // 2] / 1000
    run.p99_us = ordered[int(n * 0.99)] / 1000
    run.reports = len(reports)
    return run


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "1m") -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted on ``folder`` (root only); ``None`` where mounting is refused."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _dropped(log_dir: Path, module: str) -> int:
    """Records the writers said they dropped, from their ``writer_fault`` lines."""
    total = 0
    for record in LogParser(log_dir).records(module):
        if record.get("operation") == "writer_fault":
            total += int(record.get("dropped") or 0)
    return total


def disk_full(fs: Path, *, calls: int = 20_000) -> tuple[Tally, FaultRun]:
    """The log filesystem fills up mid-run, then space comes back. Calls keep returning, fast;
    every record that did not reach the disk is one the writer counted and reported in a
    ``writer_fault`` line once writing resumed: lost == reported."""
    tally = Tally("disk full, then space back")
    started = time.perf_counter()
    log_dir = fs / "logs"
    factory = make_factory(log_dir, logging={"rotation": {"max_bytes": 0}, "fault_report_interval": 3600})
    tool = factory.create_monitor("tool")
    tool.record_tool_call("full", 0.001, True, w=0, t=0, seq=0)  # the file exists before the disk fills
    filler = fs / "filler"
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    with open(filler, "wb") as handle:  # leave room for a couple of hundred lines
        handle.write(b"\0" * max(0, free - 48 * 1024))
        with contextlib.suppress(OSError):
            handle.flush()
    seq = 1

    def call(_: int) -> None:
        nonlocal seq
        tool.record_tool_call("full", 0.001, True, w=0, t=0, seq=seq)
        seq += 1

    run = hammer(call, calls // 2)
    tally.faults_injected = 1
    filler.unlink()
    time.sleep(1.1)  # a failed open is retried after a second; a failed write on the next call
    for _ in range(100):
        call(0)
    factory.shutdown()
    tally.written = seq
    tally.app_exceptions = run.exceptions
    account(log_dir, "tool", {(0, 0): seq - 1}, tally=tally)
    reported = tally.reported = _dropped(log_dir, "tool")
    tally.notes.update(reported_dropped=reported, lost_equals_reported=tally.lost == reported,
                       fault=run, resumed=_last_seq_present(log_dir, seq - 1))
    tally.seconds = time.perf_counter() - started
    return tally, run


def _last_seq_present(log_dir: Path, seq: int) -> bool:
    return any(r.get("seq") == seq for r in LogParser(log_dir).records("tool"))


def folder_deleted(log_dir: Path, *, rounds: int = 20, calls_per_round: int = 2_000) -> tuple[Tally, FaultRun]:
    """The log folder is deleted under a running writer, ``rounds`` times. Calls keep returning
    and fast; the writer re-creates the folder within its check interval and the records
    written after the last deletion are all there."""
    import shutil

    tally = Tally(f"log folder deleted x{rounds}")
    started = time.perf_counter()
    factory = make_factory(log_dir, logging={"reopen_check_interval": 0.05})
    tool = factory.create_monitor("tool")
    seq = 0
    runs = []
    for _ in range(rounds):
        shutil.rmtree(log_dir, ignore_errors=True)
        tally.faults_injected += 1

        def call(_: int) -> None:
            nonlocal seq
            tool.record_tool_call("gone", 0.001, True, w=0, t=0, seq=seq)
            seq += 1

        runs.append(hammer(call, calls_per_round // 2))
    time.sleep(0.1)
    first_after = seq
    for _ in range(500):
        tool.record_tool_call("gone", 0.001, True, w=0, t=0, seq=seq)
        seq += 1
    factory.shutdown()
    tally.written = seq - first_after
    tally.app_exceptions = sum(r.exceptions for r in runs)
    seen = [r["seq"] for r in LogParser(log_dir).records("tool") if r.get("seq", -1) >= first_after]
    tally.found = len(set(seen))
    tally.duplicated = len(seen) - len(set(seen))
    tally.lost = tally.written - tally.found
    worst = max(runs, key=lambda r: r.p99_us)
    tally.seconds = time.perf_counter() - started
    return tally, worst


def _fd_worker(log_dir: str, result: Any) -> None:
    import resource

    factory = make_factory(Path(log_dir))
    tool = factory.create_monitor("tool")
    tool.record_tool_call("fd", 0.001, True, w=0, t=0, seq=0)  # this writer's file is open already
    llm = factory.create_monitor("llm")  # built now, its file opened on its first record
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    hog = []
    with contextlib.suppress(OSError):
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    failures = 0
    for seq in range(1, 2001):
        try:
            tool.record_tool_call("fd", 0.001, True, w=0, t=0, seq=seq)
            llm.record_llm_call("m", "p", 0.1, 1, 1, w=1, t=0, seq=seq)
        except Exception:
            failures += 1
    for fd in hog:
        os.close(fd)
    time.sleep(1.1)
    llm.record_llm_call("m", "p", 0.1, 1, 1, w=1, t=0, seq=2001)
    result[0] = failures
    result[1] = 1
    factory.shutdown()


def fd_exhaustion(log_dir: Path) -> Tally:
    """Every descriptor of the process is taken: a writer whose file is open keeps writing, one
    that must open its file drops and counts, nothing raises, and once descriptors are free
    again the second writer resumes and reports the gap."""
    tally = Tally("file descriptors exhausted")
    started = time.perf_counter()
    result = _FORK.Array("q", [0, 0], lock=False)
    proc = _FORK.Process(target=_fd_worker, args=(str(log_dir), result))
    proc.start()
    proc.join(120)
    tally.faults_injected = 1
    tally.app_exceptions = result[0] + (0 if proc.exitcode == 0 and result[1] else 1)
    tool = [r for r in LogParser(log_dir).records("tool") if "seq" in r]
    tally.written = 2001
    tally.found = len({r["seq"] for r in tool})
    tally.lost = tally.written - tally.found
    llm = list(LogParser(log_dir).records("llm"))
    tally.notes.update(llm_resumed=any(r.get("seq") == 2001 for r in llm),
                       llm_reported_dropped=sum(int(r.get("dropped") or 0) for r in llm
                                                if r.get("operation") == "writer_fault"))
    tally.seconds = time.perf_counter() - started
    return tally


def table(tallies: list[Tally]) -> str:
    """The tallies as a fixed-width table."""
    rows = [t.row() for t in tallies]
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])) for r in rows))
              for c in columns}

    def cell(c: str, v: Any) -> str:
        text = f"{v:,}" if isinstance(v, int) else str(v)
        return text.ljust(widths[c]) if c == "scenario" else text.rjust(widths[c])

    lines = ["  ".join(c.ljust(widths[c]) if c == "scenario" else c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(cell(c, r[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def read_only_mid_run(log_dir: Path, *, calls: int = 5_000) -> tuple[Tally, FaultRun]:
    """The log folder becomes read-only (``chattr +i``) under a writer that must rotate: calls keep
    returning, fast; whatever could not be written is counted and reported; once the folder is
    writable again the writer rotates and carries on."""
    import subprocess

    tally = Tally("log folder read-only mid-run")
    started = time.perf_counter()
    factory = make_factory(log_dir, logging={"rotation": {"max_bytes": 8 * 1024, "backup_count": 1000}})
    tool = factory.create_monitor("tool")
    seq = 0

    def call(_: int) -> None:
        nonlocal seq
        tool.record_tool_call("ro", 0.001, True, w=0, t=0, seq=seq)
        seq += 1

    for i in range(200):
        call(i)
    if subprocess.run(["chattr", "+i", str(log_dir)], capture_output=True, check=False).returncode != 0:
        raise RuntimeError("chattr +i is not available here")
    try:
        run = hammer(call, calls // 2)
    finally:
        subprocess.run(["chattr", "-i", str(log_dir)], check=False)
    tally.faults_injected = 1
    time.sleep(1.1)
    for i in range(200):
        call(i)
    factory.shutdown()
    tally.written = seq
    tally.app_exceptions = run.exceptions
    account(log_dir, "tool", {(0, 0): seq - 1}, tally=tally)
    tally.reported = _dropped(log_dir, "tool")
    tally.notes.update(fault=run, resumed=_last_seq_present(log_dir, seq - 1),
                       files=len(list(log_dir.glob("tool_metrics.log*"))))
    tally.seconds = time.perf_counter() - started
    return tally, run
