"""External rotation: the real logrotate in create mode loses nothing; copytruncate is noticed and warned about."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from infrastructure.monitoring import FileSink, MetricsLogger, PerformanceMonitorFactory

from . import logrotate_run
from .conftest import read_records, require


@pytest.fixture
def _logrotate() -> str:
    """The real logrotate; a missing one fails the test (``.ci/run`` installs it)."""
    return logrotate_run.LOGROTATE or require("logrotate", "/usr/sbin/logrotate", "/sbin/logrotate")


needs_logrotate = pytest.mark.usefixtures("_logrotate")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "copytruncate" in r.getMessage()]


# --------------------------------------------------------------------------- the writer notices a truncation


def test_a_truncated_file_is_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The file shrinking under the writer logs one warning naming copytruncate and create mode."""
    path = tmp_path / "t_metrics.log"
    writer = MetricsLogger("t", FileSink(path, max_bytes=0, check_interval=0.02))
    for seq in range(50):
        writer.log_counter("before", 1, seq=seq)
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
        for _ in range(2):
            os.truncate(path, 0)
            time.sleep(0.05)
            writer.log_counter("after", 1)
    (message,) = _warnings(caplog)
    assert str(path) in message
    assert "create mode" in message
    assert [r["operation"] for r in read_records(path)] == ["after"]  # appends go on at the new end


def test_a_truncation_right_after_our_own_line_is_noticed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Noticed even when the previous check saw an empty file: the writer knows where its last line ended."""
    path = tmp_path / "t_metrics.log"
    writer = MetricsLogger("t", FileSink(path, max_bytes=0, check_interval=0.02))
    writer.log_counter("first", 1)  # opens the file: the check that follows sees it empty
    writer.log_counter("second", 1)
    os.truncate(path, 0)
    time.sleep(0.05)
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
        writer.log_counter("third", 1)
    assert len(_warnings(caplog)) == 1


def test_renames_and_growth_are_not_truncations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The writer's own rotation, an outside rename (create mode) and other writers' lines never warn."""
    path = tmp_path / "r_metrics.log"
    first = MetricsLogger("r", FileSink(path, max_bytes=4096, backup_count=50, check_interval=0.01))
    second = MetricsLogger("r", FileSink(path, max_bytes=4096, backup_count=50, check_interval=0.01))
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
        for seq in range(400):
            (first if seq % 2 else second).log_counter("op", 1, seq=seq)
            if seq % 100 == 99:
                os.rename(path, tmp_path / f"outside.{seq}")
                time.sleep(0.02)
    assert _warnings(caplog) == []
    assert len(list(tmp_path.glob("r_metrics.log.*"))) > 3  # it did rotate by itself meanwhile


def test_the_warning_can_go_through_the_truncated_file_itself(factory: PerformanceMonitorFactory,
                                                              log_dir: Path) -> None:
    """With the application's logs routed into the same family, the warning lands there, after the line that
    noticed it (no deadlock, no loop)."""
    root = logging.getLogger()
    handler = factory.logging_handler("app", level=logging.WARNING)
    root.addHandler(handler)
    try:
        app = logging.getLogger("myapp.truncated")
        app.warning("one")
        os.truncate(log_dir / "app_metrics.log", 0)
        time.sleep(1.1)  # the default reopen check interval
        app.warning("two")
    finally:
        root.removeHandler(handler)
    lines = read_records(log_dir / "app_metrics.log")
    assert [line["logger"] for line in lines] == ["myapp.truncated", "infrastructure.monitoring"]
    assert "copytruncate" in lines[1]["message"]


# --------------------------------------------------------------------------- the real logrotate


@needs_logrotate
def test_logrotate_create_mode_loses_nothing(tmp_path: Path) -> None:
    """4 writers while logrotate -f (create) rotates every 0.7 s: every record found once by the query engine."""
    outcome = logrotate_run.run(tmp_path, "create", writers=4, records=1500, seconds=2.5, every=0.7)
    assert outcome.rotations >= 3
    assert outcome.files >= 3  # logrotate's <file>.N backups are part of the family the reader reads
    assert (outcome.lost, outcome.duplicated, outcome.damaged) == (0, 0, 0)
    assert outcome.warned == 0


@needs_logrotate
def test_logrotate_copytruncate_is_warned_about(tmp_path: Path) -> None:
    """copytruncate: the writers warn (loss is possible and measured by bench/logrotate_bench.py, not asserted)."""
    outcome = logrotate_run.run(tmp_path, "copytruncate", writers=4, records=1500, seconds=2.5, every=0.7,
                                check_interval=0.1)
    assert outcome.rotations >= 3
    assert outcome.warned >= 1
    assert outcome.duplicated == 0
    err = (tmp_path / "writer0.err").read_text() + (tmp_path / "writer1.err").read_text()
    assert "create mode" in err


@needs_logrotate
@pytest.mark.slow
def test_logrotate_delaycompress_loses_nothing_over_many_rotations(tmp_path: Path) -> None:
    """compress + delaycompress, 15 rotations: the reader reads <file>.1 and <file>.N.gz; nothing lost.

    delaycompress deletes a renamed file one rotation later, so the writers must have reopened by
    then: the rotation period (0.7 s here, a day in practice) must exceed their reopen check.
    """
    outcome = logrotate_run.run(tmp_path, "create+delaycompress", writers=4, records=10_000, seconds=10.5,
                                every=0.7, check_interval=0.25)
    assert outcome.rotations >= 13
    assert any(p.name.endswith(".gz") for p in (tmp_path / "logs").iterdir())
    assert (outcome.lost, outcome.duplicated, outcome.damaged) == (0, 0, 0)
