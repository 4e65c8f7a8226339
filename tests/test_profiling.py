"""Profiling on demand: function, memory and io profiles written as lines, and listed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.instrumentation import profile, profile_context

from .conftest import read_records


@pytest.fixture
def logs(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    return log_dir


def slow_square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


def test_function_profile_names_the_hot_function(logs: Path) -> None:
    @profile("ranking", kind="function", top=5)
    def rank() -> int:
        return slow_square_sum(200_000) + slow_square_sum(10)

    assert rank() == slow_square_sum(200_000) + slow_square_sum(10)
    (line,) = read_records(logs / "profile_metrics.log")
    assert (line["operation"], line["name"], line["kind"], line["success"]) == ("profile", "ranking", "function", True)
    assert len(line["top_functions"]) == 5
    names = [f["function"] for f in line["top_functions"]]
    assert any("slow_square_sum" in n for n in names[:3])
    hot = next(f for f in line["top_functions"] if "slow_square_sum" in f["function"])
    assert hot["calls"] == 2
    assert line["function_calls"] > 200_000  # the generator's steps are calls too


def test_memory_profile_sees_the_peak_and_its_site(logs: Path) -> None:
    with profile_context("load", kind="memory"):
        block = bytearray(8_000_000)
        del block
        kept = [os.urandom(1000) for _ in range(1000)]
    assert len(kept) == 1000
    (line,) = read_records(logs / "profile_metrics.log")
    assert line["peak_bytes"] >= 8_000_000
    assert 1_000_000 <= line["retained_bytes"] < 8_000_000
    assert any("test_profiling.py" in site["site"] for site in line["top_allocations"])


def test_io_profile_counts_what_was_written_and_read(logs: Path, tmp_path: Path) -> None:
    @profile(kind="io")
    async def export() -> None:
        with open(tmp_path / "out.bin", "wb") as handle:
            for _ in range(4):
                handle.write(os.urandom(512 * 1024))
                handle.flush()
        (tmp_path / "out.bin").read_bytes()

    asyncio.run(export())
    (line,) = read_records(logs / "profile_metrics.log")
    assert line["name"].endswith("export")
    assert line["write_chars"] >= 2 * 1024 * 1024
    assert line["read_chars"] >= 2 * 1024 * 1024
    assert line["write_count"] >= 4


def test_a_failing_profiled_call_is_recorded_and_reraised(logs: Path) -> None:
    with pytest.raises(KeyError), profile_context("lookup", kind="function"):
        {}["missing"]
    (line,) = read_records(logs / "profile_metrics.log")
    assert (line["success"], line["error_type"]) == (False, "KeyError")
    with pytest.raises(ValueError, match="profile kind"), profile_context("x", kind="gpu"):
        pass


def test_profiles_command_lists_them_by_type(logs: Path) -> None:
    with profile_context("alpha", kind="function"):
        slow_square_sum(1000)
    with profile_context("beta", kind="memory"):
        bytearray(2_000_000)
    exe = Path(sys.executable).with_name("monitoring")
    everything = subprocess.run([str(exe), "profiles", "--log-dir", str(logs)], capture_output=True, text=True,
                                check=True).stdout
    assert "alpha" in everything
    assert "beta" in everything
    memory_only = subprocess.run([str(exe), "profiles", "--type", "memory", "--log-dir", str(logs)],
                                 capture_output=True, text=True, check=True).stdout
    assert "beta" in memory_only
    assert "alpha" not in memory_only
    assert "peak" in memory_only


def test_switched_off_profiles_nothing(tmp_path: Path, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Switched off, a profiled block runs unprofiled and no file appears anywhere (neither the
    configured folder nor ./logs); switched on, the same block writes its profile there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    monkeypatch.setenv("MONITORING_ENABLED", "0")
    PerformanceMonitorFactory.reset_instance()
    with profile_context("nothing", kind="memory"):
        bytearray(1000)
    assert list(tmp_path.rglob("*")) == []
    monkeypatch.setenv("MONITORING_ENABLED", "1")
    PerformanceMonitorFactory.reset_instance()
    with profile_context("something", kind="memory"):
        bytearray(1000)
    assert (log_dir / "profile_metrics.log").exists()


def test_disable_stops_profiling_at_once(logs: Path) -> None:
    """``PerformanceMonitorFactory.disable()``: a profiled block runs unprofiled and writes no line; ``enable()``
    brings both back."""
    import tracemalloc

    from infrastructure.monitoring.instrumentation import start_profiling, stop_profiling

    assert not tracemalloc.is_tracing()
    PerformanceMonitorFactory.disable()
    with profile_context("off", kind="memory"):
        assert not tracemalloc.is_tracing()  # not even started
    assert start_profiling("memory") is False
    record = stop_profiling("memory")
    assert record is not None
    assert dict(record.details) == {}
    assert not (logs / "profile_metrics.log").exists()
    PerformanceMonitorFactory.enable()
    with profile_context("on", kind="memory"):
        assert tracemalloc.is_tracing()
    (line,) = read_records(logs / "profile_metrics.log")
    assert line["name"] == "on"
