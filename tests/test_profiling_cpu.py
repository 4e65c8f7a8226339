"""CPU profiles with real py-spy, start_profiling/stop_profiling, and what happens when py-spy cannot run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.cli import main
from infrastructure.monitoring.instrumentation import (
    ProfileType,
    profile,
    profile_context,
    start_profiling,
    stop_profiling,
)

from .conftest import REPO_ROOT, read_records


@pytest.fixture
def logs(make_factory: Callable[..., PerformanceMonitorFactory], log_dir: Path) -> Path:
    PerformanceMonitorFactory.set_instance(make_factory())
    return log_dir


def spin(seconds: float) -> int:
    """Busy on the CPU in this very function (its own frame holds the samples)."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def _skip_if_ptrace_forbidden(line: dict) -> None:
    error = line.get("profiler_error") or ""
    if "may not attach" in error:
        pytest.skip(f"this machine forbids ptrace: {error}")


def test_cpu_profile_names_the_busy_function(logs: Path) -> None:
    """py-spy samples this process while it spins: the line's top function is ``spin``, with most samples."""
    with profile_context("spin_block", kind="cpu", top=5, rate=200, step="warmup"):
        assert spin(0.6) > 0
    (line,) = read_records(logs / "profile_metrics.log")
    _skip_if_ptrace_forbidden(line)
    assert (line["operation"], line["name"], line["kind"], line["success"], line["step"]) == (
        "profile", "spin_block", "cpu", True, "warmup")
    assert "profiler_error" not in line
    assert line["sample_rate"] == 200
    assert 40 <= line["samples"] <= 200  # about 0.6 s x 200 per second, minus attach time and skipped samples
    top = line["top_functions"][0]
    assert top["function"].startswith("test_profiling_cpu.py:")
    assert top["function"].endswith("(spin)")
    assert top["share"] >= 0.5
    assert top["self_samples"] <= top["cumulative_samples"] <= line["samples"]
    assert len(line["top_functions"]) <= 5


def test_start_and_stop_profiling_around_code_that_cannot_be_wrapped(logs: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The design's calls: start a named profile, run, stop it by kind; one profile per kind at a time."""
    assert start_profiling("startup", ProfileType.CPU) is True
    with caplog.at_level(logging.WARNING):
        assert start_profiling("cpu") is False  # one cpu profile per process
    assert "a cpu profile ('startup') is already running" in caplog.text
    spin(0.3)
    record = stop_profiling(ProfileType.CPU)
    assert record is not None
    assert (record.name, record.kind) == ("startup", "cpu")
    assert 0.3 <= record.duration < 5
    (line,) = read_records(logs / "profile_metrics.log")
    _skip_if_ptrace_forbidden(line)
    assert record.profiler_error is None
    assert record.details["top_functions"][0]["function"].endswith("(spin)")
    assert line["top_functions"] == record.details["top_functions"]
    assert line["duration"] == pytest.approx(record.duration, abs=0.05)


def test_stop_without_start_and_ambiguous_stop_are_no_ops_with_a_warning(logs: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Nothing running: a warning, ``None``, no line; two kinds running: ``stop_profiling()`` must name one."""
    with caplog.at_level(logging.WARNING):
        assert stop_profiling() is None
        assert stop_profiling("memory") is None
    assert "stop_profiling(): no profile is running (nothing to stop)" in caplog.text
    assert "stop_profiling('memory'): no memory profile is running" in caplog.text
    assert not (logs / "profile_metrics.log").exists()
    assert start_profiling("my_function", ProfileType.FUNCTION) is True  # the design's spelling
    assert start_profiling("memory") is True
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert stop_profiling() is None
    assert "several profiles are running (function, memory); name the kind to stop" in caplog.text
    memory = stop_profiling("memory")
    function = stop_profiling()  # now the only one
    assert memory is not None
    assert function is not None
    assert function.name == "my_function"
    assert function.duration >= 0
    assert {r["kind"] for r in read_records(logs / "profile_metrics.log")} == {"function", "memory"}
    with pytest.raises(ValueError, match="profile kind must be one of function, memory, io, cpu, not 'gpu'"):
        start_profiling("gpu")


def test_profiles_command_lists_cpu_profiles(logs: Path) -> None:
    """``monitoring profiles --type cpu`` lists the CPU profiles with their top function, and only them."""

    @profile("ranking", kind="cpu", rate=200)
    def rank() -> int:
        return spin(0.3)

    rank()
    with profile_context("other", kind="memory"):
        bytearray(1000)
    line = read_records(logs / "profile_metrics.log")[0]
    _skip_if_ptrace_forbidden(line)
    done = CliRunner().invoke(main, ["profiles", "--type", "cpu", "--log-dir", str(logs)], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "ranking" in done.output
    assert "(spin)" in done.output
    assert "samples" in done.output
    assert "other" not in done.output


def _environment_without_py_spy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A virtual environment with every package of this one except py-spy, and a PATH without it."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "parent.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    python = env_dir / "bin" / "python"
    assert not (env_dir / "bin" / "py-spy").exists()
    return python, {"PATH": "/usr/bin:/bin", "MONITORING_LOG_DIR": str(tmp_path / "logs")}


NOT_INSTALLED = """
import logging
from infrastructure.monitoring.instrumentation import profile_context, start_profiling, stop_profiling
logging.basicConfig(format="%(levelname)s %(message)s")
for _ in range(3):
    with profile_context("step", kind="cpu"):
        total = sum(range(1000))
assert total == 499500
assert start_profiling("cpu") is False
record = stop_profiling("cpu")
print(record.profiler_error)
"""


def test_a_clear_message_when_py_spy_is_not_installed(tmp_path: Path) -> None:
    """Without py-spy the code runs unprofiled, every line and the return value say why, and the warning comes once."""
    python, env = _environment_without_py_spy(tmp_path)
    done = subprocess.run([str(python), "-c", NOT_INSTALLED], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    message = (f"CPU profiling needs py-spy, which is not installed (looked on PATH and in {python.parent}): "
               "pip install 'llm-telemetry-logs[profile]' (or profile with kind='function')")
    assert done.stdout.strip() == message
    assert done.stderr.count("WARNING CPU profiling needs py-spy") == 1
    lines = read_records(tmp_path / "logs" / "profile_metrics.log")
    assert len(lines) == 4
    assert {(r["profiler_error"], r["samples"], r["success"]) for r in lines} == {(message, 0, True)}


def test_strict_mode_raises_when_py_spy_is_not_installed(tmp_path: Path) -> None:
    """In strict mode the same situation is a ``ProfilerUnavailableError`` before the block runs."""
    python, env = _environment_without_py_spy(tmp_path)
    code = """
from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.errors import ProfilerUnavailableError
from infrastructure.monitoring.instrumentation import profile_context
ran = []
try:
    with profile_context("step", kind="cpu"):
        ran.append(1)
except ProfilerUnavailableError as exc:
    print(type(exc).__mro__[2].__name__, exc.kind, "|", exc)
print(ran)
"""
    config = tmp_path / "strict.yaml"
    config.write_text("logging: {strict: true}\n")
    done = subprocess.run([str(python), "-c", code], cwd=tmp_path, env={**env, "MONITORING_CONFIG": str(config)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("RuntimeError cpu | cannot take a 'cpu' profile: CPU profiling needs py-spy")
    assert second == "[]"


FORBIDDEN = """
import ctypes
ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: only CAP_SYS_PTRACE may attach now
from infrastructure.monitoring.instrumentation import profile_context
with profile_context("step", kind="cpu"):
    total = sum(range(1000))
print(total)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptrace permissions as Linux has them")
def test_a_clear_message_when_the_system_forbids_attaching(tmp_path: Path) -> None:
    """A process the kernel protects from ptrace (not dumpable, no CAP_SYS_PTRACE) is not profiled, and the line
    says why and what to change."""
    command = [sys.executable, "-c", FORBIDDEN]
    if os.geteuid() == 0:  # root holds CAP_SYS_PTRACE: drop it, as a container without SYS_PTRACE does
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_PTRACE as root")
        command = [setpriv, "--bounding-set", "-sys_ptrace", *command]
    done = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "MONITORING_LOG_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "499500"), done.stderr
    (line,) = read_records(tmp_path / "profile_metrics.log")
    assert line["profiler_error"].startswith(f"py-spy may not attach to this process (pid {line['pid']}): "
                                             "permission denied. It reads the process with ptrace")
    assert "SYS_PTRACE" in line["profiler_error"]
    assert "kernel.yama.ptrace_scope" in line["profiler_error"]
    assert line["samples"] == 0
    assert "py-spy may not attach" in done.stderr  # the warning, once


def test_a_py_spy_that_cannot_run_leaves_the_block_running(logs: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``py-spy`` first on PATH that the system cannot execute: the block runs, the line says why, and
    the temporary folder made for the profile is gone."""
    import tempfile

    fake = tmp_path / "bin" / "py-spy"
    fake.parent.mkdir()
    fake.write_bytes(b"\x00\x01 not a program\n")
    fake.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ran = []
    with profile_context("step", kind="cpu"):
        ran.append(1)
    assert ran == [1]
    (line,) = read_records(logs / "profile_metrics.log")
    assert line["profiler_error"].startswith("py-spy could not be started: ")
    assert (line["samples"], line["success"]) == (0, True)
    assert list(scratch.iterdir()) == []
