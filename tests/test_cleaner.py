"""Retention on real files with real modification times: age, dry run, safety, budget, floor, compression."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import (
    CleanupSettings,
    ConfigError,
    FileSink,
    LogCleaner,
    PerformanceMonitorFactory,
    load_settings,
)
from infrastructure.monitoring.log_cleaner import RUN_LOCK_NAME

from .conftest import age, check_dir, read_only, read_records

MakeFactory = Callable[..., PerformanceMonitorFactory]


def make_family(log_dir: Path, base: str, backups: int, *, size: int = 1000) -> list[Path]:
    """A family of this package (its control file exists): the live file plus ``.1`` ... ``.N``,
    each ``size`` bytes of JSON lines; backup ``.k`` is ``k`` days old."""
    sink = FileSink(log_dir / base)
    sink.write(b'{"live":true}\n', time.time())
    sink.close()
    line = b'{"pad":"' + b"x" * 90 + b'"}\n'
    files = []
    for k in range(1, backups + 1):
        path = log_dir / f"{base}.{k}"
        path.write_bytes((line * (size // len(line) + 1))[:size])
        age(path, k)
        files.append(path)
    return files


def audit(log_dir: Path, operation: str | None = None) -> list[dict[str, Any]]:
    path = log_dir / "cleaner_metrics.log"
    records = read_records(path) if path.exists() else []
    return [r for r in records if operation is None or r["operation"] == operation]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.iterdir()}


# --------------------------------------------------------------------------- age


def test_age_pruning_deletes_only_files_past_retention(make_factory: MakeFactory, log_dir: Path,
                                                       tmp_path: Path) -> None:
    """Backups older than retention_days go, younger ones and files the patterns do not match stay,
    and every deletion is an audit line."""
    factory = make_factory(cleanup={"retention_days": 3.5})
    make_family(log_dir, "llm_metrics.log", 6)
    notes = log_dir / "notes.txt"
    notes.write_text("mine")
    age(notes, 100)
    outside = tmp_path / "outside.log"
    outside.write_text("not in the log folder")
    age(outside, 100)

    result = factory.force_log_cleanup()

    assert result.ok
    assert result.skipped is None
    assert not result.dry_run
    assert sorted(result.deleted) == ["llm_metrics.log.4", "llm_metrics.log.5", "llm_metrics.log.6"]
    assert (result.files_deleted, result.bytes_freed) == (3, 3000)
    check_dir(log_dir, {"llm_metrics.log", "llm_metrics.log.1", "llm_metrics.log.2", "llm_metrics.log.3",
                        "notes.txt", "cleaner_metrics.log"})
    assert outside.exists()
    deletions = audit(log_dir, "cleanup_delete")
    assert sorted(r["path"] for r in deletions) == sorted(result.deleted)
    assert all(r["reason"] == "age" and r["bytes"] == 1000 and r["age_days"] >= 4 for r in deletions)
    (run,) = audit(log_dir, "cleanup_run")
    assert (run["files_deleted"], run["bytes_freed"], run["errors"]) == (3, 3000, 0)
    assert "deleted 3 files" in str(result)


def test_idle_live_file_is_retired_not_deleted_and_its_writer_carries_on(make_factory: MakeFactory,
                                                                         log_dir: Path) -> None:
    """A live file idle for longer than the retention is rotated away (never deleted under a writer);
    the writer's next record starts a new live file and the retired one goes on the next run."""
    factory = make_factory()
    llm = factory.create_monitor("llm")
    for i in range(3):
        llm.record_timer("old", 0.1, seq=i)
    age(log_dir / "llm_metrics.log", 40)

    first = factory.force_log_cleanup()
    assert (first.files_retired, first.files_deleted) == (1, 0)
    assert [r["seq"] for r in read_records(log_dir / "llm_metrics.log.1")] == [0, 1, 2]
    assert not (log_dir / "llm_metrics.log").exists()

    llm.record_timer("new", 0.1, seq=3)  # the writer notices the rename and reopens
    assert [r["seq"] for r in read_records(log_dir / "llm_metrics.log")] == [3]

    too_soon = factory.force_log_cleanup()  # a family that has just rotated is left alone for a moment:
    assert too_soon.deleted == []  # a writer that has not noticed may still add a line to the renamed file
    assert too_soon.files_changed == 1
    time.sleep(2.1)
    second = factory.force_log_cleanup()
    assert second.deleted == ["llm_metrics.log.1"]
    assert second.files_retired == 0
    check_dir(log_dir, {"llm_metrics.log", "cleaner_metrics.log"})
    assert [r["path"] for r in audit(log_dir, "cleanup_retire")] == ["llm_metrics.log"]


def test_foreign_files_are_judged_by_age_alone(make_factory: MakeFactory, log_dir: Path) -> None:
    """Files no writer of this package owns (no control file) follow the design's rule: old means gone."""
    factory = make_factory()
    log_dir.mkdir()
    for name, days in (("app.log", 45), ("app.log.2026-01-01", 45), ("worker.log", 2)):
        (log_dir / name).write_text("line\n")
        age(log_dir / name, days)
    result = factory.force_log_cleanup()
    assert sorted(result.deleted) == ["app.log", "app.log.2026-01-01"]
    check_dir(log_dir, {"worker.log", "cleaner_metrics.log"})


def test_dry_run_reports_and_changes_nothing(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory(cleanup={"retention_days": 2.5, "compress_after_days": 1.5})
    make_family(log_dir, "tool_metrics.log", 4)
    before = snapshot(log_dir)

    result = factory.force_log_cleanup(dry_run=True)

    assert result.dry_run
    assert result.ok
    assert sorted(result.deleted) == ["tool_metrics.log.3", "tool_metrics.log.4"]
    assert result.compressed == ["tool_metrics.log.2"]
    assert (result.files_deleted, result.bytes_freed, result.files_compressed) == (2, 2000, 1)
    after = snapshot(log_dir)
    after.pop("cleaner_metrics.log")
    after.pop(".cleaner_metrics.log.lock")
    assert after == before  # not one file deleted, renamed, compressed or touched
    assert RUN_LOCK_NAME not in after
    assert all(r["dry_run"] for r in audit(log_dir, "cleanup_delete"))
    assert str(result).startswith(f"cleanup of {log_dir}: would delete 2 files")

    configured = make_factory(cleanup={"retention_days": 2.5, "dry_run": True}).force_log_cleanup()
    assert configured.dry_run
    assert configured.files_deleted == 2
    assert (log_dir / "tool_metrics.log.4").exists()


def test_disabled_does_nothing_and_says_so(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory(cleanup={"enabled": False})
    make_family(log_dir, "llm_metrics.log", 2)
    age(log_dir / "llm_metrics.log.2", 400)
    before = snapshot(log_dir)
    result = factory.force_log_cleanup()
    assert not result.enabled
    assert result.skipped is not None
    assert "disabled" in result.skipped
    assert result.files_deleted == 0
    assert snapshot(log_dir) == before  # no audit file either
    assert "skipped" in str(result)


def test_missing_log_folder_is_not_an_error(make_factory: MakeFactory, log_dir: Path) -> None:
    result = make_factory().force_log_cleanup()
    assert result.ok
    assert result.skipped == "the log folder does not exist yet"
    assert not log_dir.exists()


# --------------------------------------------------------------------------- where patterns may reach


@pytest.mark.parametrize("pattern", ["/etc/*.log", "../*.log", "logs/../../*.log", "other/*.log", "/", ""])
def test_patterns_escaping_the_folder_are_config_errors(factory: PerformanceMonitorFactory, pattern: str) -> None:
    with pytest.raises(ConfigError) as caught:
        factory.setup_log_cleaner({"log_patterns": ["logs/*.log", pattern]})
    assert caught.value.key == "log_cleanup.log_patterns"
    assert repr(pattern) in str(caught.value)


def test_bad_pattern_in_the_yaml_fails_at_load_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("log_cleanup:\n  log_patterns: ['logs/*.log', '/var/log/*.log']\n")
    with pytest.raises(ConfigError, match=r"log_cleanup\.log_patterns.*'/var/log/\*\.log'"):
        load_settings(config, environ={})


def test_patterns_are_anchored_to_the_log_folder_wherever_it_is(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The design's ``logs/*.log`` follows MONITORING_LOG_DIR; an absolute pattern inside the
    folder and a bare ``*.log`` mean the same folder."""
    moved = tmp_path / "elsewhere" / "telemetry"
    moved.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"MONITORING_LOG_DIR": str(moved)})
    for patterns in (("logs/*.log.*",), (f"{moved}/*.log.*",), ("*.log.*",), ("telemetry/*.log.*",)):
        (moved / "a.log.1").write_text("x\n")
        age(moved / "a.log.1", 90)
        result = LogCleaner(CleanupSettings(log_patterns=patterns), settings.logging.log_dir).cleanup_logs()
        assert result.deleted == ["a.log.1"], patterns


def test_symlinks_are_never_followed_nor_deleted(make_factory: MakeFactory, log_dir: Path, tmp_path: Path) -> None:
    factory = make_factory(cleanup={"log_patterns": ["logs/*.log.*", "logs/*/*.log.*"]})
    make_family(log_dir, "llm_metrics.log", 1)
    precious = tmp_path / "precious"
    precious.mkdir()
    target = precious / "data.log.1"
    target.write_text("the user's own file\n")
    age(target, 400)
    (log_dir / "llm_metrics.log.7").symlink_to(target)
    (log_dir / "sub").symlink_to(precious, target_is_directory=True)
    age(log_dir / "llm_metrics.log.7", 400)
    age(log_dir / "llm_metrics.log.1", 400)

    result = factory.force_log_cleanup()

    assert result.deleted == ["llm_metrics.log.1"]
    assert result.ok
    assert result.symlinks_skipped == 2
    assert target.read_text() == "the user's own file\n"
    assert (log_dir / "llm_metrics.log.7").is_symlink()
    assert (log_dir / "sub").is_symlink()


def test_a_folder_swapped_for_a_symlink_mid_run_redirects_nothing(log_dir: Path, tmp_path: Path) -> None:
    """A thread keeps swapping ``logs/sub`` between a real folder and a symlink to a folder outside,
    both full of old files, while the cleaner runs again and again: not one file outside is deleted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for k in range(1, 31):
        old = outside / f"keep.log.{k}"
        old.write_text("the user's\n")
        age(old, 400)
    (log_dir / "sub").mkdir(parents=True)
    (log_dir / ".link").symlink_to(outside, target_is_directory=True)
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                for k in range(1, 4):  # refill the real folder so there is always something to delete
                    real_file = log_dir / "sub" / f"mine.log.{k}"
                    if not real_file.exists():
                        real_file.write_text("old\n")
                        age(real_file, 400)
            os.rename(log_dir / "sub", log_dir / ".parked")
            os.rename(log_dir / ".link", log_dir / "sub")
            time.sleep(0.0005)
            os.rename(log_dir / "sub", log_dir / ".link")
            os.rename(log_dir / ".parked", log_dir / "sub")
            swaps += 1
            time.sleep(0.0005)  # the real folder gets its turn under the cleaner too

    cleaner = LogCleaner(CleanupSettings(log_patterns=("logs/*/*.log.*",)), log_dir)
    thread = threading.Thread(target=swapper)
    thread.start()
    deleted = runs = 0
    deadline = time.monotonic() + 60
    try:
        while (runs < 200 or swaps < 100 or not deleted) and time.monotonic() < deadline:
            deleted += cleaner.cleanup_logs().files_deleted
            runs += 1
    finally:
        stop.set()
        thread.join()
    assert swaps >= 100
    assert deleted > 0  # the real folder was cleaned ...
    assert sorted(p.name for p in outside.iterdir()) == sorted(f"keep.log.{k}" for k in range(1, 31))  # ... never this
    assert (log_dir / ".link").is_symlink()


def test_real_subfolders_are_walked_when_a_pattern_asks(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory(cleanup={"log_patterns": ["logs/*/*.log.*"]})
    (log_dir / "archive").mkdir(parents=True)
    (log_dir / "archive" / "x.log.1").write_text("old\n")
    (log_dir / "top.log.1").write_text("old\n")
    age(log_dir / "archive" / "x.log.1", 60)
    age(log_dir / "top.log.1", 60)
    result = factory.force_log_cleanup()
    assert result.deleted == ["archive/x.log.1"]
    assert (log_dir / "top.log.1").exists()


# --------------------------------------------------------------------------- errors and races


def test_permission_errors_are_counted_per_file_and_the_run_continues(make_factory: MakeFactory,
                                                                      log_dir: Path) -> None:
    factory = make_factory(cleanup={"log_patterns": ["logs/*.log.*", "logs/locked/*.log.*"]})
    locked = log_dir / "locked"
    locked.mkdir(parents=True)
    for folder in (log_dir, locked):
        for k in (1, 2):
            (folder / f"f.log.{k}").write_text("x\n")
            age(folder / f"f.log.{k}", 90)
    with read_only(locked):
        result = factory.force_log_cleanup()
    assert sorted(result.deleted) == ["f.log.1", "f.log.2"]
    assert result.errors == 2
    assert not result.ok
    assert sorted(path for path, _ in result.failures) == ["locked/f.log.1", "locked/f.log.2"]
    assert all("ermitted" in reason or "denied" in reason for _, reason in result.failures)
    errors = audit(log_dir, "cleanup_error")
    assert sorted(r["path"] for r in errors) == ["locked/f.log.1", "locked/f.log.2"]
    assert {r["error_type"] for r in errors} <= {"EPERM", "EACCES"}
    assert sorted(p.name for p in locked.iterdir()) == ["f.log.1", "f.log.2"]


def test_files_vanishing_during_a_run_are_not_errors(make_factory: MakeFactory, log_dir: Path) -> None:
    """Another tool deleting the same files concurrently: every file ends up gone, no error is reported."""
    factory = make_factory()
    log_dir.mkdir()
    names = [f"batch.log.{k}" for k in range(1, 3001)]
    for name in names:
        (log_dir / name).write_bytes(b"x\n")
        age(log_dir / name, 60)
    removed_by_other = 0

    def other_tool() -> None:
        nonlocal removed_by_other
        for name in reversed(names):
            try:
                os.unlink(log_dir / name)
                removed_by_other += 1
            except FileNotFoundError:
                pass

    thread = threading.Thread(target=other_tool)
    thread.start()
    result = factory.force_log_cleanup()
    thread.join()
    assert result.ok, result.failures
    assert result.files_deleted + removed_by_other == 3000
    assert not any(log_dir.glob("batch.log.*"))


def test_a_run_holding_the_folder_lock_makes_others_skip(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory()
    make_family(log_dir, "llm_metrics.log", 1)
    age(log_dir / "llm_metrics.log.1", 90)
    fd = os.open(log_dir / RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": 4242, "host": "worker-7"}).encode())
        result = factory.force_log_cleanup()
    finally:
        os.close(fd)
    assert result.skipped is not None
    assert "pid 4242 on worker-7" in result.skipped
    assert (log_dir / "llm_metrics.log.1").exists()
    assert audit(log_dir, "cleanup_run")[0]["skipped"] == result.skipped
    assert factory.force_log_cleanup().deleted == ["llm_metrics.log.1"]  # lock released: runs


def test_min_interval_skips_a_run_right_after_another(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory()
    make_family(log_dir, "llm_metrics.log", 1)
    cleaner = factory.get_log_cleaner()
    assert cleaner.cleanup_logs(min_interval=3600).skipped is None  # nothing finished before
    again = cleaner.cleanup_logs(min_interval=3600)
    assert again.skipped is not None
    assert "finished" in again.skipped
    assert cleaner.cleanup_logs().skipped is None  # an explicit run ignores the stamp


# --------------------------------------------------------------------------- beyond age


def test_budget_deletes_oldest_rotated_files_first(make_factory: MakeFactory, log_dir: Path) -> None:
    """max_total_size: the oldest backups go until the folder fits; the live file never does."""
    factory = make_factory(cleanup={"max_total_size": 3500})  # live (14 B) + three 1000-byte backups fit
    make_family(log_dir, "llm_metrics.log", 6)
    result = factory.force_log_cleanup()
    assert result.deleted == ["llm_metrics.log.6", "llm_metrics.log.5", "llm_metrics.log.4"]  # oldest first
    assert {r["reason"] for r in audit(log_dir, "cleanup_delete")} == {"max_total_size"}
    tight = factory.setup_log_cleaner({"max_total_size": 1}).cleanup_logs()
    assert len(tight.deleted) == 3
    assert (log_dir / "llm_metrics.log").exists()  # over budget, but a live file is never a candidate


def test_free_space_floor_deletes_oldest_rotated_files_first(make_factory: MakeFactory, log_dir: Path) -> None:
    make_family(log_dir, "llm_metrics.log", 4)
    satisfied = make_factory(cleanup={"min_free_space": "1 B"}).force_log_cleanup()
    assert satisfied.files_deleted == 0
    disk = shutil.disk_usage(log_dir).total
    starved = make_factory(cleanup={"min_free_space": disk + 1}).force_log_cleanup()
    assert starved.deleted == [f"llm_metrics.log.{k}" for k in (4, 3, 2, 1)]
    assert {r["reason"] for r in audit(log_dir, "cleanup_delete")} == {"min_free_space"}
    assert (log_dir / "llm_metrics.log").exists()


def test_min_free_space_accepts_a_percentage_and_rejects_nonsense(make_factory: MakeFactory) -> None:
    settings = load_settings(overrides={"log_cleanup": {"min_free_space": "12.5%"}}, environ={})
    floor = settings.log_cleanup.min_free_space
    assert floor is not None
    assert floor.required(1000) == 125
    for bad in ("120%", "abc", -5, True):
        with pytest.raises(ConfigError, match=r"log_cleanup\.min_free_space"):
            load_settings(overrides={"log_cleanup": {"min_free_space": bad}}, environ={})


def test_compression_keeps_every_byte_and_the_family_order(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory(cleanup={"compress_after_days": 1.5}, rotation={"max_bytes": 4096, "backup_count": 20})
    make_family(log_dir, "llm_metrics.log", 3)
    originals = {k: (log_dir / f"llm_metrics.log.{k}").read_bytes() for k in (2, 3)}
    mtimes = {k: (log_dir / f"llm_metrics.log.{k}").stat().st_mtime for k in (2, 3)}

    result = factory.force_log_cleanup()

    assert sorted(result.compressed) == ["llm_metrics.log.2.gz", "llm_metrics.log.3.gz"]
    assert result.files_compressed == 2
    assert result.bytes_saved > 1500
    check_dir(log_dir, {"llm_metrics.log", "llm_metrics.log.1", "llm_metrics.log.2.gz", "llm_metrics.log.3.gz",
                        "cleaner_metrics.log"})
    for k, data in originals.items():
        packed = log_dir / f"llm_metrics.log.{k}.gz"
        assert gzip.decompress(packed.read_bytes()) == data
        assert packed.stat().st_mtime == pytest.approx(mtimes[k], abs=1)  # age survives compression
    assert factory.force_log_cleanup().files_compressed == 0  # nothing compressed twice

    llm = factory.create_monitor("llm")
    for i in range(120):  # > 4 KiB: the writers rotate, shifting the .gz backups along
        llm.record_event("more", seq=i, pad="y" * 40)
    packed = sorted(int(p.name.split(".")[2]) for p in log_dir.glob("llm_metrics.log.*.gz"))
    assert len(packed) == 2
    assert packed[0] > 2
    assert packed[1] == packed[0] + 1  # shifted together, still in order
    assert gzip.decompress((log_dir / f"llm_metrics.log.{packed[1]}.gz").read_bytes()) == originals[3]


def test_an_interrupted_compression_leaves_nothing_counted_twice(make_factory: MakeFactory, log_dir: Path) -> None:
    """A run killed mid-compression leaves a hidden temporary file, or ``.N.gz`` beside ``.N``: the next
    run removes the stale temporary file and the duplicate ``.gz`` (the plain file always wins)."""
    factory = make_factory()
    make_family(log_dir, "llm_metrics.log", 3)
    plain = (log_dir / "llm_metrics.log.2").read_bytes()
    (log_dir / "llm_metrics.log.2.gz").write_bytes(gzip.compress(plain))
    stale = log_dir / ".cleanup-tmp-999-llm_metrics.log.3.gz"
    stale.write_bytes(b"\x1f\x8b half")
    age(stale, 0.5)
    fresh = log_dir / ".cleanup-tmp-998-llm_metrics.log.1.gz"  # maybe another run's, in progress
    fresh.write_bytes(b"\x1f\x8b")

    result = factory.force_log_cleanup()

    assert sorted(result.deleted) == [stale.name, "llm_metrics.log.2.gz"]
    assert (log_dir / "llm_metrics.log.2").read_bytes() == plain
    assert fresh.exists()
    reasons = {r["path"]: r["reason"] for r in audit(log_dir, "cleanup_delete")}
    assert reasons == {stale.name: "interrupted_compression", "llm_metrics.log.2.gz": "duplicate_of_plain"}


def test_setup_log_cleaner_validates_and_takes_over(make_factory: MakeFactory, log_dir: Path) -> None:
    factory = make_factory()
    make_family(log_dir, "llm_metrics.log", 9)
    with pytest.raises(ConfigError, match=r"unknown key 'log_cleanup\.retention'.*did you mean 'retention_days'"):
        factory.setup_log_cleaner({"retention": 7})
    with pytest.raises(ConfigError, match=r"log_cleanup\.retention_days.*expected a number > 0"):
        factory.setup_log_cleaner({"retention_days": 0})
    cleaner = factory.setup_log_cleaner({
        "retention_days": 7.5, "log_patterns": ["logs/*.log", "logs/*.log.*"], "enabled": True, "dry_run": False,
    })
    assert cleaner is factory.get_log_cleaner()
    assert sorted(factory.force_log_cleanup().deleted) == ["llm_metrics.log.8", "llm_metrics.log.9"]
    assert cleaner.settings.check_interval_hours == 24  # keys not given keep their configured values


# --------------------------------------------------------------------------- the live family under load

LINE = 64
WRITERS = 3
PER_WRITER = 15_000


def _write_lines(path: str, writer: int, count: int, go: Any) -> None:
    sink = FileSink(path, max_bytes=32 * 1024, backup_count=1_000_000)
    go.wait()
    for seq in range(count):
        sink.write(f"{writer:02d} {seq:08d} ".encode().ljust(LINE - 1, b"x") + b"\n", time.time())
    sink.close()


def test_cleaning_a_family_while_writers_rotate_it_loses_nothing(log_dir: Path) -> None:
    """Three processes append and rotate while the cleaner deletes and compresses the family in a loop:
    afterwards every line is either still on disk (plain or gzipped) exactly once, or inside a file
    the cleaner reported deleting, byte for byte."""
    log_dir.mkdir()
    path = str(log_dir / "load_metrics.log")
    context = multiprocessing.get_context("fork")
    go = context.Event()
    writers = [context.Process(target=_write_lines, args=(path, w, PER_WRITER, go)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    deleter = LogCleaner(CleanupSettings(retention_days=30), log_dir)
    compressor = LogCleaner(CleanupSettings(retention_days=30, compress_after_days=5), log_dir)
    deleted_bytes = compressed = runs = 0
    go.set()
    while any(p.is_alive() for p in writers) or runs < 4:
        # files rotated at least twice can no longer receive a late line: age them as the clock would,
        # half of them past the retention (deleted), half past the compression threshold
        for name in os.listdir(log_dir):
            suffix = name.rpartition("load_metrics.log.")[2]
            if suffix.isdigit() and int(suffix) >= 3:
                with contextlib.suppress(FileNotFoundError):
                    age(log_dir / name, 40 if int(suffix) % 2 else 10)
        for cleaner in (deleter, compressor):
            result = cleaner.cleanup_logs()
            assert result.ok, result.failures
            deleted_bytes += result.bytes_freed
            compressed += result.files_compressed
        runs += 1
    for p in writers:
        p.join(30)
        assert p.exitcode == 0
    time.sleep(2.1)  # right after a rotation the cleaner leaves a family alone: let it settle
    for name in os.listdir(log_dir):  # and once more at rest, so both kinds of action surely happened
        suffix = name.rpartition("load_metrics.log.")[2]
        if suffix.isdigit() and int(suffix) >= 2:
            age(log_dir / name, 40 if int(suffix) % 2 else 10)
    for cleaner in (deleter, compressor):
        result = cleaner.cleanup_logs()
        deleted_bytes += result.bytes_freed
        compressed += result.files_compressed

    seen: set[bytes] = set()
    found = 0
    for path in log_dir.glob("load_metrics.log*"):
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        assert len(data) % LINE == 0
        for start in range(0, len(data), LINE):
            line = data[start:start + LINE]
            assert line.endswith(b"\n"), line  # no torn or merged line
            assert line[2:3] == b" ", line
            seen.add(line[:11])
            found += 1
    assert found == len(seen)  # nothing twice
    assert deleted_bytes % LINE == 0
    assert found + deleted_bytes // LINE == WRITERS * PER_WRITER
    assert compressed == len(list(log_dir.glob("load_metrics.log.*.gz"))) > 0
    assert deleted_bytes > 0
