"""The scheduled service on the real APScheduler, with intervals of about a second."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import (
    CleanupResult,
    CleanupSettings,
    LogCleaner,
    LogCleanupService,
    PerformanceMonitorFactory,
)
from infrastructure.monitoring.scheduler import CLEANUP_JOB, SYSTEM_JOB

from .conftest import REPO_ROOT, age, read_records, run_python

MakeFactory = Callable[..., PerformanceMonitorFactory]
SECOND_IN_HOURS = 1 / 3600


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def old_file(folder: Path, name: str, days: float = 90) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("old\n")
    age(path, days)
    return path


@pytest.fixture
def service_for(log_dir: Path) -> Any:
    made: list[LogCleanupService] = []

    def build(cleaner: LogCleaner | None = None, **kwargs: Any) -> LogCleanupService:
        if cleaner is None:
            cleaner = LogCleaner(CleanupSettings(check_interval_hours=SECOND_IN_HOURS), log_dir)
        service = LogCleanupService(cleaner, first_run_delay=kwargs.pop("first_run_delay", 0.1), **kwargs)
        made.append(service)
        return service

    yield build
    for service in made:
        service.stop()


def test_start_and_stop_are_idempotent_and_report_the_next_run(service_for: Any) -> None:
    service = service_for(first_run_delay=30)
    assert not service.running
    assert service.next_run_time is None
    assert service.start() is True
    assert service.start() is False  # already running: nothing changes
    nxt = service.next_run_time
    assert nxt is not None
    assert 25 < (nxt - datetime.now(UTC)).total_seconds() <= 30
    assert "next cleanup at" in service.describe()
    service.stop()
    service.stop()
    assert not service.running
    assert service.next_run_time is None
    assert service.start() is True  # a stopped service starts again
    assert service.running


def test_scheduled_runs_delete_old_files_every_interval(service_for: Any, log_dir: Path) -> None:
    service = service_for()
    first = old_file(log_dir, "a.log.1")
    service.start()
    wait_for(lambda: not first.exists(), timeout=5)
    second = old_file(log_dir, "a.log.2")
    wait_for(lambda: not second.exists(), timeout=5)  # the next interval, about a second later
    assert service.runs >= 2
    assert service.last_result is not None
    assert service.last_result.ok


def test_a_job_that_raises_is_logged_and_the_schedule_goes_on(service_for: Any, log_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(LogCleaner):
        calls = 0

        def cleanup_logs(self, **kwargs: Any) -> CleanupResult:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("disk on fire")
            return super().cleanup_logs(**kwargs)

    service = service_for(Flaky(CleanupSettings(check_interval_hours=SECOND_IN_HOURS), log_dir))
    caplog.set_level(logging.ERROR, logger="infrastructure.monitoring.scheduler")
    target = old_file(log_dir, "b.log.1")
    service.start()
    wait_for(lambda: not target.exists(), timeout=6)  # the second run did the work
    assert service.job_errors == 1
    assert service.running
    assert any("disk on fire" in (r.exc_text or "") or "disk on fire" in str(r.exc_info) for r in caplog.records)


class _Clock:
    """The time APScheduler and the service see: moved by the test, never by the wall clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def advance(self, seconds: float, service: LogCleanupService) -> None:
        self.now += timedelta(seconds=seconds)
        scheduler = service._scheduler
        assert scheduler is not None
        scheduler.wakeup()  # the scheduler thread looks at the (new) time now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    state = _Clock()

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return state.now.astimezone(tz) if tz is not None else state.now.replace(tzinfo=None)

    monkeypatch.setattr("apscheduler.schedulers.base.datetime", Frozen)
    monkeypatch.setattr("infrastructure.monitoring.scheduler.datetime", Frozen)
    return state


def stays(condition: Callable[[], Any], seconds: float = 0.3) -> bool:
    """``condition`` holds for ``seconds`` of real time (the scheduler thread had its chance)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.02)
    return True


def test_missed_runs_coalesce_into_one(service_for: Any, clock: _Clock) -> None:
    """Runs missed while paused (three intervals and more, on a clock the test moves) make one run
    on resume; the next comes at the next regular time, not before."""
    service = service_for(first_run_delay=0.1)  # every second
    service.start()
    clock.advance(0.2, service)
    wait_for(lambda: service.runs == 1, timeout=5)
    service.pause()
    clock.advance(3.5, service)
    assert stays(lambda: service.runs == 1)  # paused: nothing runs
    service.resume()
    wait_for(lambda: service.runs == 2, timeout=5)
    assert stays(lambda: service.runs == 2)  # one run for the three missed
    upcoming = service.next_run_time
    assert upcoming is not None
    clock.advance((upcoming - clock.now).total_seconds() - 0.05, service)
    assert stays(lambda: service.runs == 2)  # not yet due
    clock.advance(0.1, service)
    wait_for(lambda: service.runs == 3, timeout=5)


def test_system_sampler_job_is_off_by_default_and_samples_when_on(make_factory: MakeFactory,
                                                                  log_dir: Path) -> None:
    quiet = make_factory().get_scheduled_cleaner()
    assert set(quiet.next_run_times()) == {CLEANUP_JOB}
    quiet.stop()

    factory = make_factory(system={"enabled": True, "interval_seconds": 0.2})
    service = factory.get_scheduled_cleaner()
    assert set(service.next_run_times()) == {CLEANUP_JOB, SYSTEM_JOB}
    path = log_dir / "system_metrics.log"
    wait_for(lambda: path.exists() and len(read_records(path)) >= 3, timeout=8)
    record = read_records(path)[-1]
    assert record["operation"] == "system_sample"
    assert record["process_rss_bytes"] > 0
    assert record["pid"] == os.getpid()


def test_factory_service_is_one_per_factory_and_follows_setup_log_cleaner(make_factory: MakeFactory,
                                                                          log_dir: Path) -> None:
    factory = make_factory(cleanup={"retention_days": 365})
    service = factory.get_scheduled_cleaner()
    assert service is factory.get_scheduled_cleaner()
    assert service.running
    assert service.cleaner is factory.get_log_cleaner()
    cleaner = factory.setup_log_cleaner({"retention_days": 10, "check_interval_hours": SECOND_IN_HOURS})
    assert service.cleaner is cleaner
    target = old_file(log_dir, "c.log.1", days=20)
    wait_for(lambda: not target.exists(), timeout=5)  # the new rules and the new interval apply
    factory.shutdown()
    assert not service.running


def test_a_forked_child_sees_the_service_stopped_and_may_start_its_own(log_dir: Path) -> None:
    code = f"""
import os, sys
from infrastructure.monitoring import LogCleaner, LogCleanupService, CleanupSettings
service = LogCleanupService(LogCleaner(CleanupSettings(), {str(log_dir)!r}), first_run_delay=60)
service.start()
pid = os.fork()
if pid == 0:
    ok = (not service.running) and service.next_run_time is None and service.start() and service.running
    service.stop()
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "parent running", service.running)
service.stop()
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["child", "0", "parent", "running", "True"]


WORKER = """
import json, sys, time
from pathlib import Path
from dependency_injector import providers
from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings
log_dir = Path(sys.argv[1])
container = MonitoringContainer()
container.settings.override(providers.Object(load_settings(
    overrides={"logging": {"log_dir": str(log_dir)}, "log_cleanup": {"check_interval_hours": 1 / 3600}},
    environ={})))
factory = PerformanceMonitorFactory(container)
service = factory.get_scheduled_cleaner(start=False)
service.first_run_delay = 0.2
while not (log_dir / "go").exists():
    time.sleep(0.005)
service.start()
time.sleep(3)
runs = service.runs
factory.shutdown()
print(json.dumps({"runs": runs}))
"""


def test_two_processes_starting_the_service_never_clean_concurrently(log_dir: Path, tmp_path: Path) -> None:
    """Each old file is deleted exactly once, with no error, and the loser of each race says it skipped."""
    names = [f"w.log.{k}" for k in range(1, 1501)]
    for name in names:
        old_file(log_dir, name)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, str(script), str(log_dir)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both imported and waiting
    (log_dir / "go").touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err

    audit = read_records(log_dir / "cleaner_metrics.log")
    deleted = [r["path"] for r in audit if r["operation"] == "cleanup_delete"]
    assert sorted(deleted) == sorted(names)  # every file once, none twice
    assert not [r for r in audit if r["operation"] == "cleanup_error"]
    runs = [r for r in audit if r["operation"] == "cleanup_run"]
    assert len({r["pid"] for r in runs}) == 2  # both services ran their job
    skipped = [r["skipped"] for r in runs if r["skipped"]]
    assert skipped
    assert all("another cleanup" in s or "finished" in s for s in skipped)
    assert not any(log_dir.glob("w.log.*"))


# --------------------------------------------------------------------------- the commands


def monitoring(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("monitoring")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_cleanup_command_prints_a_summary_and_json(log_dir: Path) -> None:
    for k in (1, 2, 3):
        old_file(log_dir, f"llm_metrics.log.{k}", days=10 * k)

    dry = monitoring("cleanup", "--log-dir", str(log_dir), "--days", "15", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout
    assert "would delete" in dry.stdout
    assert "llm_metrics.log.3" in dry.stdout
    assert (log_dir / "llm_metrics.log.3").exists()

    done = monitoring("cleanup", "--log-dir", str(log_dir), "--days", "15", "--json")
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert sorted(result["deleted"]) == ["llm_metrics.log.2", "llm_metrics.log.3"]
    assert result["errors"] == 0
    assert result["files_deleted"] == 2
    assert (log_dir / "llm_metrics.log.1").exists()


def test_cleanup_command_fails_loudly_on_a_pattern_outside_the_folder(tmp_path: Path, log_dir: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"logging: {{log_dir: {log_dir}}}\nlog_cleanup: {{log_patterns: ['/tmp/*.log']}}\n")
    done = monitoring("cleanup", "--config", str(config))
    assert done.returncode == 2  # a configuration error: the question could not be asked
    assert "'/tmp/*.log'" in done.stderr
    assert "log_cleanup.log_patterns" in done.stderr


def test_run_command_works_until_sigterm_and_stops_cleanly(log_dir: Path) -> None:
    target = old_file(log_dir, "r.log.1")
    exe = Path(sys.executable).with_name("monitoring")
    proc = subprocess.Popen(
        [str(exe), "run", "--log-dir", str(log_dir), "--interval-hours", str(SECOND_IN_HOURS),
         "--system-interval", "0.2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: not target.exists(), timeout=15)
        wait_for((log_dir / "system_metrics.log").exists, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "monitoring jobs running" in out
    assert "received SIGTERM" in out
    assert "stopped cleanly after" in out


def test_run_now_cleans_in_the_calling_thread_and_keeps_the_latest_result(service_for: Any, log_dir: Path) -> None:
    service = service_for(first_run_delay=60)
    target = old_file(log_dir, "n.log.1")
    result = service.run_now()  # not started: runs here, regardless of the schedule
    assert result.deleted == ["n.log.1"]
    assert not target.exists()
    assert service.last_result is result
    assert service.runs == 1
