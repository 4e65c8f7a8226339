"""The reading commands through the real console script: query, report, status, tail, export."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from infrastructure.monitoring import FileSink, MetricsLogger

from .conftest import REPO_ROOT, require
from .test_query import T0, write_timed_family

EXE = str(Path(sys.executable).with_name("monitoring"))


def monitoring(*args: str, timeout: float = 120, columns: int = 100) -> subprocess.CompletedProcess[str]:
    """The installed console script, its output piped as in a script, ``columns`` wide."""
    return subprocess.run([EXE, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "COLUMNS": str(columns)})


@pytest.fixture
def tools(tmp_path: Path) -> tuple[Path, list[dict]]:
    folder = tmp_path / "logs"
    return folder, write_timed_family(folder, minutes=120)


def test_query_json_contract(tools: tuple[Path, list[dict]]) -> None:
    """Scripts rely on it: one JSON array; keys are the group-by fields and the aggregates' names."""
    folder, records = tools
    done = monitoring("query", "--log-dir", str(folder), "--module", "tool", "--where", "success=true",
                      "--where", "duration>2", "--group-by", "tool_name", "--agg", "count", "--agg", "sum:duration",
                      "--agg", "p95:duration", "--agg", "error_rate", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    picked = [r for r in records if r["success"] and r["duration"] > 2]
    want = Counter(r["tool_name"] for r in picked)
    assert [set(row) for row in rows] == [{"tool_name", "count", "sum_duration", "p95_duration", "error_rate"}] * 3
    assert {row["tool_name"]: row["count"] for row in rows} == want
    sums = defaultdict(float)
    for r in picked:
        sums[r["tool_name"]] += r["duration"]
    for row in rows:
        assert row["sum_duration"] == pytest.approx(sums[row["tool_name"]])
        assert row["error_rate"] == 0.0


def test_query_window_bucket_and_csv(tools: tuple[Path, list[dict]]) -> None:
    folder, records = tools
    done = monitoring("query", "--log-dir", str(folder), "--since", str(T0 + 1800), "--until",
                      "2024-01-01T13:30:00Z", "--bucket", "15m", "--agg", "count", "--agg", "errors", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["bucket"] for r in rows] == ["2024-01-01T12:30:00Z", "2024-01-01T12:45:00Z", "2024-01-01T13:00:00Z",
                                           "2024-01-01T13:15:00Z"]
    for row, start in zip(rows, range(1800, 5400, 900), strict=True):
        inside = [r for r in records if T0 + start <= r["timestamp"] < T0 + start + 900]
        assert int(row["count"]) == len(inside)
        assert int(row["errors"]) == sum(1 for r in inside if not r["success"])


def test_query_table_and_usage_errors(tools: tuple[Path, list[dict]]) -> None:
    folder, _ = tools
    table = monitoring("query", "--log-dir", str(folder), "--group-by", "tool_name", "--agg", "count",
                       "--order-by", "count", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert "tool_name" in table.stdout
    assert "2 rows" in table.stdout
    bad = monitoring("query", "--log-dir", str(folder), "--agg", "p95")
    assert bad.returncode == 2
    assert "needs a field" in bad.stderr


def test_report_prints_readable_sections(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    demo = monitoring("demo", "--seconds", "1", "--log-dir", str(folder))
    assert demo.returncode == 0, demo.stderr
    assert "LLM calls by provider and model" in demo.stdout  # the demo ends with the report
    done = monitoring("report", "--log-dir", str(folder), "--hours", "1", columns=250)
    assert done.returncode == 0, done.stderr
    for title in ("LLM calls by provider and model", "Tool calls by tool", "Checkpoints", "Tasks and agents"):
        assert title in done.stdout
    assert "p95 latency s" in done.stdout
    as_json = json.loads(monitoring("report", "--log-dir", str(folder), "--format", "json").stdout)
    llm_rows = as_json["sections"]["llm"]
    records = [json.loads(line) for line in (folder / "llm_metrics.log").read_text().splitlines()]
    calls = [r for r in records if r["operation"] == "llm_call"]
    assert sum(r["count"] for r in llm_rows) == len(calls)
    assert sum(r["sum_total_tokens"] for r in llm_rows) == sum(r["total_tokens"] for r in calls)


def test_status_shows_families_and_writer_faults(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    writer = MetricsLogger("llm", FileSink(folder / "llm_metrics.log"))
    for i in range(5):
        writer.log_event("llm_call", seq=i)
    writer.log_event("writer_fault", fault="OSError: [Errno 28] No space left on device", dropped=17,
                     first_failure=T0, last_failure=T0 + 5)
    writer.close()
    (folder / "llm_metrics.log.1.gz").write_bytes(__import__("gzip").compress(b'{"timestamp": 1.0}\n' * 3))
    done = monitoring("status", "--log-dir", str(folder))
    assert done.returncode == 0, done.stderr
    header = next(row for row in done.stdout.splitlines() if row.startswith("module"))
    line = next(row for row in done.stdout.splitlines() if row.startswith("llm "))
    cells = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", line.strip()), strict=True))
    assert cells["files"] == "2"
    assert cells["records"] == "9"  # 6 + 3
    assert cells["skipped"] == "0"
    assert "free disk" in done.stdout
    assert "No space left on device" in done.stdout
    assert "17" in done.stdout


def test_tail_follows_across_a_rotation(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    sink = FileSink(folder / "llm_metrics.log", max_bytes=4096, backup_count=50)
    writer = MetricsLogger("llm", sink)
    for i in range(3):
        writer.log_counter("before", 1, seq=i)
    proc = subprocess.Popen([EXE, "tail", "-f", "-n", "2", "--module", "llm", "--log-dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        for i in range(3, 200):  # several rotations at 4 KiB
            writer.log_counter("during", 1, seq=i, pad="x" * 40)
            if i % 50 == 0:
                time.sleep(0.3)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        writer.close()
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == list(range(1, 200)), err  # the last two, then every new line once, across rotations
    assert any(folder.glob("llm_metrics.log.*"))


@pytest.mark.parametrize("fmt", ["json", "csv", "prometheus"])
def test_export_writes_a_file(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "logs"
    assert monitoring("demo", "--seconds", "1", "--log-dir", str(folder)).returncode == 0
    target = tmp_path / f"out.{fmt}"
    done = monitoring("export", "--format", fmt, "--hours", "1", "--output", str(target), "--log-dir", str(folder))
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    if fmt == "json":
        assert set(json.loads(text)["sections"]) >= {"llm", "tools", "checkpoints", "tasks"}
    elif fmt == "csv":
        sections = {row["section"] for row in csv.DictReader(io.StringIO(text))}
        assert sections >= {"llm", "tools", "checkpoints", "tasks"}
    else:
        assert "# TYPE monitoring_llm_response_time_seconds summary" in text
        assert 'monitoring_llm_calls{provider="openai",model="gpt-4o"}' in text
        promtool = require("promtool")
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                                 check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_labels_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    writer = MetricsLogger("llm", FileSink(folder / "llm_metrics.log"))
    writer.write_record({"timestamp": 0.0, "metric_type": "timer", "operation": "llm_call",
                         "model": 'we"ird\\model\nname', "provider": "x", "response_time": 1.0, "success": True})
    writer.close()
    target = tmp_path / "m.prom"
    assert monitoring("export", "--format", "prometheus", "--output", str(target), "--log-dir",
                      str(folder)).returncode == 0
    text = target.read_text()
    assert 'model="we\\"ird\\\\model\\nname"' in text
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                                 check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_progress_bar_on_a_terminal_only(tools: tuple[Path, list[dict]]) -> None:
    """Long scans draw a progress bar on stderr when it is a terminal, and nothing when piped."""
    import os
    import pty

    folder, _ = tools
    args = [EXE, "query", "--log-dir", str(folder), "--group-by", "tool_name", "--format", "json"]
    piped = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0
    assert "scanning" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, text=True,
                                env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
        out, _ = proc.communicate(timeout=60)
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert json.loads(out)  # the answer itself still goes to stdout, clean
    assert b"scanning" in drawn
