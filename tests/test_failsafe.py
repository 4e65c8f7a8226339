"""Telemetry never breaks the caller: bad fields, bad disks and bugs are counted, not raised."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import (
    FileSink,
    InvalidFieldError,
    MetricsLogger,
    PerformanceMonitorFactory,
    WriteError,
)

from .conftest import read_only, read_records

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a symlink to /dev/full freely")


def test_invalid_fields_are_flagged_not_raised(
    factory: PerformanceMonitorFactory, log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Negative durations, NaN and non-numeric tokens are written, flagged, counted and reported once."""
    llm = factory.create_monitor("llm")
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
        llm.record_llm_call("gpt-4", "openai", response_time=-1.0, prompt_tokens="many", completion_tokens=5)
        llm.record_llm_call("gpt-4", "openai", response_time=math.nan, prompt_tokens=1, completion_tokens=5)
        llm.record_llm_call("gpt-4", "openai", response_time=-2.0, prompt_tokens=1, completion_tokens=5)
        factory.create_monitor("checkpoint").record_checkpoint_save(duration=0.1, size=-5, success="yes")
    first, second, third = read_records(log_dir / "llm_metrics.log")
    assert first["invalid"] == {"response_time": "must be >= 0, got -1.0", "prompt_tokens": "must be a number, got str"}
    assert first["response_time"] == -1.0
    assert first["total_tokens"] is None
    assert second["response_time"] is None  # NaN is not JSON
    assert second["invalid"] == {"response_time": "must be a finite number, got NaN"}
    assert third["invalid"] == {"response_time": "must be >= 0, got -2.0"}
    (ckpt,) = read_records(log_dir / "checkpoint_metrics.log")
    assert ckpt["invalid"] == {"size": "must be >= 0, got -5", "success": "must be true or false, got str"}
    assert ckpt["success"] is False
    assert factory.get_writer("llm").faults.invalid_fields == 4
    reports = [r for r in caplog.records if "response_time" in r.getMessage()]
    assert len(reports) == 1  # rate-limited: one report per field per period


def test_strict_mode_raises_typed_errors(make_factory: Any, log_dir: Path) -> None:
    """strict: true turns the same problems into InvalidFieldError naming the field."""
    factory = make_factory(strict=True)
    llm = factory.create_monitor("llm")
    with pytest.raises(InvalidFieldError, match=r"^invalid value for field 'response_time': -1; must be >= 0") as info:
        llm.record_llm_call("gpt-4", "openai", response_time=-1, prompt_tokens=1, completion_tokens=1)
    assert info.value.field == "response_time"
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidFieldError, match="'operation'"):
        factory.create_monitor("tool").record_tool_call("t", 0.1, operation="clash")
    assert not (log_dir / "llm_metrics.log").exists()


def test_unwritable_folder_is_counted_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder that cannot be created drops records quietly and fast; writing resumes when it can."""
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    writer = MetricsLogger("x", FileSink(blocker / "x.log", check_interval=0.05))
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
        started = time.perf_counter()
        for seq in range(1000):
            writer.log_counter("lost", 1, seq=seq)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # no retry storm: one attempt, then fast failures until the retry time
    faults = writer.faults
    assert (faults.write_failures, faults.dropped) == (1000, 1000)
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    blocker.unlink()
    time.sleep(1.1)  # the retry delay after a failed open
    writer.log_counter("back", 1)
    records = read_records(blocker / "x.log")
    assert [r["operation"] for r in records] == ["back", "writer_fault"]
    assert records[1]["dropped"] == 1000
    assert "NotADirectoryError" in records[1]["fault"] or "FileExistsError" in records[1]["fault"]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        yield folder


def test_read_only_folder(read_only_folder: Path) -> None:
    """A folder the process may not write to never raises into the caller (fail-safe), but does in strict mode."""
    writer = MetricsLogger("x", FileSink(read_only_folder / "x.log"))
    writer.log_counter("a", 1)
    assert writer.faults.write_failures == 1
    with pytest.raises(WriteError, match=r"^cannot write to '.*y\.log': \[Errno (1|13)\]"):
        MetricsLogger("x", FileSink(read_only_folder / "y.log"), strict=True).log_counter("a", 1)
    assert list(read_only_folder.iterdir()) == []


@root_only
def test_disk_full_is_counted(tmp_path: Path) -> None:
    """ENOSPC (the log file is /dev/full) is counted per record and never raised."""
    (tmp_path / "full.log").symlink_to("/dev/full")
    writer = MetricsLogger("x", FileSink(tmp_path / "full.log"))
    for _ in range(10):
        writer.log_counter("a", 1)
    faults = writer.faults
    assert faults.dropped == 10
    assert "No space left" in (faults.last_error or "")
    with pytest.raises(WriteError, match="No space left"):
        MetricsLogger("x", FileSink(tmp_path / "full.log"), strict=True).log_counter("a", 1)


def test_a_bug_in_a_processor_is_contained(tmp_path: Path) -> None:
    """An exception inside the pipeline is counted as an internal error and the call returns."""

    def broken(_l: Any, _n: str, _ed: Any) -> Any:
        raise KeyError("boom")

    writer = MetricsLogger("x", FileSink(tmp_path / "x.log"), processors=[broken])
    writer.log_counter("a", 1)
    assert writer.faults.internal_errors == 1
    strict = MetricsLogger("x", FileSink(tmp_path / "x.log"), processors=[broken], strict=True)
    with pytest.raises(KeyError):
        strict.log_counter("a", 1)


def test_calls_after_shutdown_do_not_raise(factory: PerformanceMonitorFactory) -> None:
    """Recording after the files were closed is a counted fault, not an exception."""
    llm = factory.create_monitor("llm")
    writer = factory.get_writer("llm")
    factory.shutdown()
    llm.record_llm_call("gpt-4", "openai", 1.0, 1, 1)
    assert writer.faults.write_failures == 1


def test_disabled_monitoring_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log_dir: Path) -> None:
    """MONITORING_ENABLED=0 makes every recording call a no-op: the writers are the no-op kind and no
    file appears anywhere, neither in the configured folder nor in ./logs; the same calls with
    monitoring on do write there."""
    from infrastructure.monitoring import NoOpMetricsLogger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))

    def record() -> PerformanceMonitorFactory:
        factory = PerformanceMonitorFactory.get_instance()
        factory.create_monitor("llm").record_llm_call("gpt-4", "openai", 1.0, 1, 1)
        factory.create_monitor("checkpoint").record_checkpoint_save(0.1, 10)
        return factory

    monkeypatch.setenv("MONITORING_ENABLED", "0")
    off = record()
    assert isinstance(off.get_writer("llm"), NoOpMetricsLogger)
    assert isinstance(off.get_writer("checkpoint"), NoOpMetricsLogger)
    assert list(tmp_path.rglob("*")) == []
    PerformanceMonitorFactory.reset_instance()
    monkeypatch.setenv("MONITORING_ENABLED", "1")
    record()
    assert {p.name for p in log_dir.iterdir() if not p.name.startswith(".")} == {"llm_metrics.log",
                                                                                "checkpoint_metrics.log"}


def test_each_bad_field_is_counted_once(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """Two bad fields in one record: both flagged, counted exactly twice."""
    factory.create_monitor("checkpoint").record_checkpoint_load(duration=-1, size=-1)
    (record,) = read_records(log_dir / "checkpoint_metrics.log")
    assert record["invalid"] == {"duration": "must be >= 0, got -1", "size": "must be >= 0, got -1"}
    assert factory.get_writer("checkpoint").faults.invalid_fields == 2
