"""Agent sessions: the environment record, tasks, and the summary computed from the logs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.instrumentation import end_task, session_summary, start_session, start_task

from .conftest import read_records


@pytest.fixture
def logs(log_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"pricing": {"version": "t-1", "models": {
        "gpt-4o": {"input": 2.5, "output": 10.0}, "claude-3-haiku": {"input": 0.25, "output": 1.25}}}}))
    monkeypatch.setenv("MONITORING_CONFIG", str(config))
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    return log_dir


def test_session_summary_matches_what_was_recorded(logs: Path) -> None:
    factory = PerformanceMonitorFactory.get_instance()
    llm, tool, task = (factory.create_monitor(m) for m in ("llm", "tool", "task"))
    llm.record_llm_call("gpt-4o", "openai", 1.0, 100, 50)  # before the session: not part of it
    with start_session("s-1", agent="researcher") as session:
        start_task("t1", "find sources")
        time.sleep(0.02)
        llm.record_llm_call("gpt-4o", "openai", 1.2, 1000, 200)
        llm.record_llm_call("gpt-4o", "openai", 0.8, 500, 100, success=False, error_type="timeout")
        llm.record_llm_call("claude-3-haiku", "anthropic", 0.3, 2000, 400)
        llm.record_llm_call("mystery", "x", 0.1, 10, 10)
        tool.record_tool_call("web_search", 0.5)
        tool.record_tool_call("web_search", 0.7, success=False)
        tool.record_tool_call("read_file", 0.01)
        task.record_agent_execution("research", "researcher-1", 3.0)
        end_task("t1", "completed")
        start_task("t2", "write summary")
        end_task("t2", "failed", reason="no sources")
    assert session.ended
    (start, end) = read_records(logs / "session_metrics.log")
    assert start["operation"] == "session_start"
    assert (start["session_id"], start["agent"]) == ("s-1", "researcher")
    assert (start["os"], start["python_version"]) == (platform.system(), platform.python_version())
    for key in ("os_version", "host", "cwd", "timezone", "package_version"):
        assert start[key]
    assert (end["operation"], end["status"]) == ("session_end", "completed")

    summary = session_summary(logs, "s-1")
    tasks = {t["task_id"]: t for t in summary["tasks"]}
    assert (tasks["t1"]["description"], tasks["t1"]["status"]) == ("find sources", "completed")
    assert tasks["t1"]["duration"] >= 0.02
    assert tasks["t2"]["status"] == "failed"
    assert {t["tool_name"]: (t["count"], t["errors"]) for t in summary["tools"]} == {
        "web_search": (2, 1), "read_file": (1, 0)}
    assert [(a["agent_name"], a["count"]) for a in summary["agents"]] == [("researcher-1", 1)]
    llm_rows = {r["model"]: r for r in summary["llm"]}
    assert (llm_rows["gpt-4o"]["count"], llm_rows["gpt-4o"]["errors"]) == (2, 1)
    assert llm_rows["gpt-4o"]["sum_total_tokens"] == 1800
    assert summary["llm_calls"] == 4
    assert summary["total_tokens"] == 1800 + 2400 + 20
    cost = (1000 * 2.5 + 200 * 10 + 500 * 2.5 + 100 * 10) / 1e6 + (2000 * 0.25 + 400 * 1.25) / 1e6
    assert summary["estimated_cost"] == pytest.approx(cost)
    assert summary["unpriced_calls"] == 1


def test_a_failing_session_and_the_report_command(logs: Path) -> None:
    def agent() -> None:
        with start_session("s-2"):
            PerformanceMonitorFactory.get_instance().create_monitor("llm").record_llm_call("gpt-4o", "openai", 1, 10,
                                                                                           10)
            raise RuntimeError("agent crashed")

    with pytest.raises(RuntimeError):
        agent()
    end = read_records(logs / "session_metrics.log")[-1]
    assert (end["status"], end["error_type"]) == ("failed", "RuntimeError")
    exe = Path(sys.executable).with_name("monitoring")
    out = subprocess.run([str(exe), "report", "--session", "s-2", "--log-dir", str(logs)], capture_output=True,
                         text=True, check=True).stdout
    assert "Session s-2" in out
    assert "failed" in out
    assert "LLM calls: 1" in out
    as_json = json.loads(subprocess.run([str(exe), "report", "--session", "s-2", "--format", "json", "--log-dir",
                                         str(logs)], capture_output=True, text=True, check=True).stdout)
    assert as_json["llm_calls"] == 1
