"""External rotation by the real ``logrotate`` under concurrent writers: what is found afterwards.

Shared by ``tests/test_logrotate.py`` and ``bench/logrotate_bench.py``. Writer processes
append paced records (``worker``, ``seq``) through the library's writer with its own
rotation off, while ``logrotate -f`` rotates the family every ``every`` seconds in
``create`` or ``copytruncate`` mode. Afterwards every record is looked for with the
library's query engine, across the live file and logrotate's numbered backups.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring.query.engine import LogParser
from infrastructure.monitoring.query.lines import SkipReport

LOGROTATE = shutil.which("logrotate") or next(
    (p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if Path(p).exists()), None)
MODULE = "rot"
FILE = f"{MODULE}_metrics.log"
MODES = ("create", "create+delaycompress", "create+compress", "copytruncate")
"""``create`` with ``nocompress``; with ``compress`` + ``delaycompress``; with ``compress`` alone
(the newest backup is compressed at once, under writers that have not reopened yet); ``copytruncate``."""


@dataclass
class Outcome:
    mode: str
    written: int
    found: int
    lost: int
    duplicated: int
    damaged: int
    """Lines the reader skipped (torn or unreadable)."""
    rotations: int
    files: int
    warned: int
    """Writers that logged the copytruncate warning."""
    seconds: float


def config_text(path: Path, mode: str) -> str:
    """A logrotate stanza as docs/logrotate.md gives it, varied by ``mode``."""
    assert mode in MODES, mode
    lines = ["copytruncate" if mode == "copytruncate" else "create 0640", "missingok", "notifempty", "rotate 1000"]
    lines += {"create+delaycompress": ["compress", "delaycompress"], "create+compress": ["compress"]}.get(
        mode, ["nocompress"])
    return f"{path} {{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def _writer(path: str, worker: int, count: int, seconds: float, check_interval: float, log_path: str) -> None:
    logging.basicConfig(filename=log_path, level=logging.WARNING, format="%(levelname)s %(message)s", force=True)
    writer = MetricsLogger(MODULE, FileSink(path, max_bytes=0, check_interval=check_interval))
    start = time.monotonic()
    for seq in range(count):
        if seq % 64 == 0:  # paced, so that the run spans many rotations
            ahead = start + seconds * seq / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        writer.log_counter("op", 1, worker=worker, seq=seq)
    if writer.faults.write_failures:
        raise SystemExit(3)


def run(folder: Path, mode: str, *, writers: int = 4, records: int = 2000, seconds: float = 2.5,
        every: float = 0.7, check_interval: float = 1.0) -> Outcome:
    """``writers`` processes each write ``records`` lines over about ``seconds`` while logrotate
    rotates every ``every`` seconds; then count what the query engine finds."""
    assert LOGROTATE is not None, "logrotate is not installed"
    logs = folder / "logs"
    logs.mkdir(parents=True)
    path = logs / FILE
    conf = folder / "logrotate.conf"
    conf.write_text(config_text(path, mode))
    conf.chmod(0o644)
    state = folder / "logrotate.state"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, records, seconds, check_interval,
                                                str(folder / f"writer{w}.err"))) for w in range(writers)]
    began = time.monotonic()
    for proc in procs:
        proc.start()
    rotations = 0
    next_at = began + every
    while any(p.is_alive() for p in procs):
        time.sleep(max(0.0, min(next_at - time.monotonic(), 0.05)))
        if time.monotonic() >= next_at and path.exists():
            done = subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], capture_output=True, check=False)
            assert done.returncode == 0, done.stderr.decode()
            rotations += 1
            next_at += every
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0, f"writer exited with {proc.exitcode}"
    took = time.monotonic() - began
    return _count(folder, mode, writers, records, rotations, took)


def _count(folder: Path, mode: str, writers: int, records: int, rotations: int, took: float) -> Outcome:
    parser = LogParser(folder / "logs", threads=1)
    skipped = SkipReport()
    seen: dict[tuple[Any, Any], int] = {}
    for record in parser.records(MODULE, skipped=skipped):
        key = (record.get("worker"), record.get("seq"))
        seen[key] = seen.get(key, 0) + 1
    counted = parser.query(MODULE, aggs=["count"]).rows
    total = sum(seen.values())
    assert (counted[0]["count"] if counted else 0) == total, "the query engine and the record stream disagree"
    warned = sum("copytruncate" in (folder / f"writer{w}.err").read_text() for w in range(writers)
                 if (folder / f"writer{w}.err").exists())
    written = writers * records
    return Outcome(mode=mode, written=written, found=len(seen), lost=written - len(seen),
                   duplicated=total - len(seen), damaged=skipped.count, rotations=rotations,
                   files=len(parser.families(MODULE).get(MODULE, [])), warned=warned, seconds=took)
