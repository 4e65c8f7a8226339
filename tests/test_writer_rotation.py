"""Rotation by rename: numbered backups, time periods, many processes, fork, outside interference."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring._sink import next_rollover

from .conftest import check_dir, family, read_records


def fill(writer: MetricsLogger, count: int, **fields: object) -> None:
    for seq in range(count):
        writer.log_counter("op", 1, seq=seq, pad="x" * 80, **fields)


def test_size_rotation_numbers_backups_newest_first(tmp_path: Path) -> None:
    """Files rotate at max_bytes into .1 (newest) ... .N; the oldest fall off; no line is lost in between."""
    writer = MetricsLogger("r", FileSink(tmp_path / "r.log", max_bytes=4096, backup_count=3))
    fill(writer, 60)  # ~10 KB: two or three rotations
    files = family(tmp_path, "r.log")
    check_dir(tmp_path, {p.name for p in files})
    assert [p.name for p in files][-1] == "r.log"
    seqs = [r["seq"] for p in files for r in read_records(p)]
    assert seqs == list(range(60 - len(seqs), 60))  # contiguous, in order, oldest first
    for path in files[:-1]:
        assert 4096 <= path.stat().st_size < 4096 + 4096 + 200  # rotated at the limit, one check window at most
    fill(writer, 200)
    check_dir(tmp_path, {"r.log", "r.log.1", "r.log.2", "r.log.3"})
    newest_backup = read_records(tmp_path / "r.log.1")
    live = read_records(tmp_path / "r.log")
    assert newest_backup[-1]["seq"] + 1 == live[0]["seq"]


def test_gzip_backups_move_with_their_number(tmp_path: Path) -> None:
    """A compressed backup (.N.gz) shifts along with the plain ones and falls off at the end."""
    writer = MetricsLogger("g", FileSink(tmp_path / "g.log", max_bytes=4096, backup_count=2))

    def write_until(name: str) -> None:
        for seq in range(1000):
            writer.log_counter("op", 1, seq=seq, pad="x" * 80)
            if (tmp_path / name).exists():
                return
        raise AssertionError(f"{name} never appeared")

    write_until("g.log.1")
    os.replace(tmp_path / "g.log.1", tmp_path / "g.log.1.gz")  # what the cleaner's compression leaves
    marker = (tmp_path / "g.log.1.gz").read_bytes()
    write_until("g.log.1")
    check_dir(tmp_path, {"g.log", "g.log.1", "g.log.2.gz"})
    assert (tmp_path / "g.log.2.gz").read_bytes() == marker
    write_until("g.log.2")
    check_dir(tmp_path, {"g.log", "g.log.1", "g.log.2"})


def test_time_rotation(tmp_path: Path) -> None:
    """With when='S' a new file starts at each second boundary of the time the lines are written
    at (given to the sink, no wall clock involved); lines stay in order across files."""
    sink = FileSink(tmp_path / "t.log", max_bytes=0, when="S", backup_count=10)
    start = 1_800_000_000.1  # 0.1 s past a second boundary
    for seq in range(8):
        sink.write(b'{"seq": %d}\n' % seq, start + seq * 0.35)  # 0.1 0.45 0.8 | 1.15 1.5 1.85 | 2.2 2.55
    sink.close()
    files = family(tmp_path, "t.log")
    assert [[r["seq"] for r in read_records(p)] for p in files] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_next_rollover_is_aligned() -> None:
    """Boundaries are aligned so every process of a family computes the same instant."""
    assert next_rollover(1000.5, "S") == 1001
    assert next_rollover(1000.5, "M") == 1020
    assert next_rollover(3599.0, "H", utc=True) == 3600
    assert next_rollover(86400 * 3 + 5, "midnight", utc=True) == 86400 * 4


def _writer_process(path: str, worker: int, count: int, max_bytes: int) -> None:
    writer = MetricsLogger("mp", FileSink(path, max_bytes=max_bytes, backup_count=10_000))
    for seq in range(count):
        writer.log_counter("op", 1, worker=worker, seq=seq)
    assert writer.faults.write_failures == 0


def _account(log_dir: Path, base: str) -> tuple[dict[tuple[int, int], int], int]:
    seen: dict[tuple[int, int], int] = {}
    corrupt = 0
    for path in family(log_dir, base):
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                corrupt += 1
                continue
            key = (record["worker"], record["seq"])
            seen[key] = seen.get(key, 0) + 1
    return seen, corrupt


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_many_processes_rotating_one_family_lose_nothing(tmp_path: Path, start_method: str) -> None:
    """4 processes write one family rotating every 64 KB: every line exactly once, none torn."""
    path = str(tmp_path / "mp.log")
    workers, count = 4, 5000 if start_method == "fork" else 3000
    ctx = multiprocessing.get_context(start_method)
    procs = [ctx.Process(target=_writer_process, args=(path, w, count, 65536)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    seen, corrupt = _account(tmp_path, "mp.log")
    assert corrupt == 0
    assert len(seen) == workers * count  # nothing lost
    assert set(seen.values()) == {1}  # nothing duplicated
    files = family(tmp_path, "mp.log")
    assert len(files) > 5
    for rotated in files[:-1]:
        assert rotated.stat().st_size < 65536 + workers * 4096 + 1000


def test_fork_after_first_write(tmp_path: Path) -> None:
    """A child forked after the parent wrote keeps writing the same family correctly, through rotation."""
    path = tmp_path / "f.log"
    writer = MetricsLogger("f", FileSink(path, max_bytes=8192, backup_count=1000))
    writer.log_counter("op", 1, worker=0, seq=-1)
    pid = os.fork()
    if pid == 0:  # child
        try:
            for seq in range(2000):
                writer.log_counter("op", 1, worker=1, seq=seq)
        finally:
            os._exit(0 if writer.faults.write_failures == 0 else 3)
    for seq in range(2000):
        writer.log_counter("op", 1, worker=0, seq=seq)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    seen, corrupt = _account(tmp_path, "f.log")
    assert corrupt == 0
    assert len(seen) == 4001
    assert set(seen.values()) == {1}
    pids = {r["pid"] for p in family(tmp_path, "f.log") for r in read_records(p)}
    assert pids == {os.getpid(), pid}


def test_deleted_folder_is_recreated(tmp_path: Path) -> None:
    """If the log folder disappears, the writer re-creates it within the check interval."""
    log_dir = tmp_path / "logs"
    writer = MetricsLogger("d", FileSink(log_dir / "d.log", check_interval=0.05))
    writer.log_counter("before", 1)
    shutil.rmtree(log_dir)
    time.sleep(0.1)
    writer.log_counter("after", 1)
    assert [r["operation"] for r in read_records(log_dir / "d.log")] == ["after"]
    assert writer.faults.write_failures == 0


def test_file_renamed_by_an_outside_tool_is_reopened(tmp_path: Path) -> None:
    """logrotate-style rename: later lines go to a fresh file at the configured path."""
    writer = MetricsLogger("o", FileSink(tmp_path / "o.log", check_interval=0.05))
    writer.log_counter("one", 1)
    os.rename(tmp_path / "o.log", tmp_path / "o.log.old")
    time.sleep(0.1)
    writer.log_counter("two", 1)
    assert [r["operation"] for r in read_records(tmp_path / "o.log")] == ["two"]
    assert [r["operation"] for r in read_records(tmp_path / "o.log.old")] == ["one"]


def test_file_permissions(tmp_path: Path) -> None:
    """Log files get the configured mode (0640 by default) and the control file 0600."""
    old = os.umask(0)
    try:
        writer = MetricsLogger("p", FileSink(tmp_path / "p.log"))
        writer.log_counter("op", 1)
    finally:
        os.umask(old)
    assert (tmp_path / "p.log").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / ".p.log.lock").stat().st_mode & 0o777 == 0o600


def test_threads_writing_through_rotation(tmp_path: Path) -> None:
    """8 threads share one writer across many rotations: every line exactly once, none torn."""
    import threading

    writer = MetricsLogger("th", FileSink(tmp_path / "th.log", max_bytes=32_768, backup_count=10_000))

    def work(worker: int) -> None:
        for seq in range(2000):
            writer.log_counter("op", 1, worker=worker, seq=seq)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen, corrupt = _account(tmp_path, "th.log")
    assert corrupt == 0
    assert len(seen) == 16_000
    assert set(seen.values()) == {1}
    assert len(family(tmp_path, "th.log")) > 20
    assert writer.faults.write_failures == 0
