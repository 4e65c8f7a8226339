"""Tasks own their records: task_id binding, nesting, per-task reports, environment fields, code changes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrastructure.monitoring import ConfigError, PerformanceMonitorFactory, get_llm_monitor, get_task_monitor
from infrastructure.monitoring.cli import main
from infrastructure.monitoring.instrumentation import (
    bind,
    bound_fields,
    end_task,
    observe_task_execution,
    observe_tool_call,
    record_code_change,
    session_summary,
    start_session,
    start_task,
    task,
    unbind,
)

from .conftest import read_records

PRICES = {"pricing": {"version": "t-1", "models": {"gpt-4o": {"input": 2.5, "output": 10.0}}}}


@pytest.fixture
def logs(make_factory: Callable[..., PerformanceMonitorFactory], log_dir: Path) -> Path:
    PerformanceMonitorFactory.set_instance(make_factory(extra=PRICES))
    return log_dir


def cost(prompt: int, completion: int) -> float:
    return (prompt * 2.5 + completion * 10.0) / 1e6


@observe_tool_call("web_search")
def web_search(query: str) -> list[str]:
    if query == "fail":
        raise TimeoutError(query)
    return [query]


@observe_task_execution("summarise")
def summarise(text: str) -> str:
    get_llm_monitor().record_llm_call("gpt-4o", "openai", 0.4, 300, 30)
    if not text:
        raise ValueError("nothing to summarise")
    return text[:10]


def write_up() -> None:
    """A task whose second step fails: the exception leaves the ``with`` block."""
    with task("write", "write the summary"):
        assert summarise("some text") == "some text"
        summarise("")


def test_a_task_with_nested_llm_and_tool_calls_and_its_report(logs: Path) -> None:
    """Every call made inside a task is its own; the report gives each task's calls, tokens, cost, errors."""
    llm = get_llm_monitor()
    with start_session("s-1", agent="planner"):
        llm.record_llm_call("gpt-4o", "openai", 0.5, 100, 10)  # in the session, outside any task
        start_task("research", "find sources", agent="researcher")
        llm.record_llm_call("gpt-4o", "openai", 1.2, 1000, 200)
        web_search("llm telemetry")
        with pytest.raises(TimeoutError):
            web_search("fail")
        with task("read", "read the papers", agent="reader"):
            llm.record_llm_call("gpt-4o", "openai", 2.0, 4000, 500)
            llm.record_llm_call("gpt-4o", "openai", 0.1, 50, 0, success=False, error_type="rate_limit")
        end_task("research")
        with pytest.raises(ValueError, match="nothing"):
            write_up()
    lines = read_records(logs / "llm_metrics.log")
    assert [(r.get("task_id"), r.get("agent")) for r in lines] == [
        (None, None), ("research", "researcher"), ("read", "reader"), ("read", "reader"), ("write", None),
        ("write", None)]
    assert {r["session_id"] for r in lines} == {"s-1"}
    starts = {r["task_id"]: r for r in read_records(logs / "task_metrics.log") if r["operation"] == "task_start"}
    assert starts["read"]["parent_task_id"] == "research"
    assert "parent_task_id" not in starts["research"]

    summary = session_summary(logs, "s-1")
    assert [(t["task_id"] or f"({t['task_type']})", t["depth"]) for t in summary["tasks"]] == [
        ("research", 0), ("read", 1), ("write", 0), ("(summarise)", 1), ("(summarise)", 1)]
    tasks = {(t["task_id"], t["depth"]): t for t in summary["tasks"] if t["kind"] == "task"}
    research, read, write = tasks["research", 0], tasks["read", 1], tasks["write", 0]
    assert (read["llm_calls"], read["total_tokens"], read["tool_calls"], read["errors"]) == (2, 4550, 0, 1)
    assert read["cost"] == pytest.approx(cost(4050, 500))
    # research includes its subtask: its own call and two searches (one failed), plus read's figures
    assert (research["llm_calls"], research["total_tokens"], research["tool_calls"], research["errors"]) == (
        3, 5750, 2, 2)
    assert research["cost"] == pytest.approx(cost(5050, 700))
    assert (research["status"], research["agent"], read["agent"]) == ("completed", "researcher", "reader")
    assert research["duration"] >= read["duration"] > 0
    assert (write["status"], write["llm_calls"], write["errors"]) == ("failed", 2, 1)
    executions = [t for t in summary["tasks"] if t["kind"] == "execution"]
    assert [(e["status"], e["error_type"], e["parent_task_id"]) for e in executions] == [
        ("completed", None, "write"), ("failed", "ValueError", "write")]
    assert summary["outside_tasks"]["llm_calls"] == 1
    assert summary["outside_tasks"]["total_tokens"] == 110
    assert summary["llm_calls"] == 6

    report = CliRunner().invoke(main, ["report", "--session", "s-1", "--log-dir", str(logs)], env={"COLUMNS": "160"})
    assert report.exit_code == 0, report.output
    rows = [line.split() for line in report.output.splitlines()]
    assert rows[_row(rows, "research")][:5] == ["research", "find", "sources", "researcher", "completed"]
    assert rows[_row(rows, "read")][-5:] == ["2", "4,550", f"{cost(4050, 500):.4g}", "0", "1"]
    assert "Outside tasks: 1 LLM calls, 110 tokens, 0 tool calls, 0 errors" in report.output
    as_json = json.loads(CliRunner().invoke(main, ["report", "--session", "s-1", "--format", "json", "--log-dir",
                                                   str(logs)]).output)
    assert [t["task_id"] for t in as_json["tasks"] if t["kind"] == "task"] == ["research", "read", "write"]


def _row(rows: list[list[str]], first: str) -> int:
    return next(i for i, row in enumerate(rows) if row and row[0] == first)


def test_end_task_restores_the_binding_from_another_function(logs: Path) -> None:
    """Started in one function and ended in another: task_id and agent go back to what they were, and a
    field bound in between stays."""
    bind(agent="supervisor", user="ada")

    def setup() -> None:
        start_task("t1", agent="worker")

    def teardown() -> None:
        end_task("t1", "completed")

    setup()
    assert bound_fields() == {"agent": "worker", "user": "ada", "task_id": "t1"}
    bind(step="retrieval")
    teardown()
    assert bound_fields() == {"agent": "supervisor", "user": "ada", "step": "retrieval"}
    end = read_records(logs / "task_metrics.log")[-1]
    assert (end["operation"], end["agent"], end["step"], end["duration"] >= 0) == ("task_end", "worker", "retrieval",
                                                                                  True)
    unbind("agent", "user", "step")


def test_tasks_ended_out_of_order_restore_the_task_still_running(logs: Path) -> None:
    """A parent ended before its child leaves the child bound; the child's end then unbinds both."""
    parent = start_task("parent")
    start_task("child")
    parent.end()
    assert bound_fields()["task_id"] == "child"
    end_task("child")
    assert "task_id" not in bound_fields()
    outer = start_task("outer", agent="a")
    with task("inner", agent="b"):
        assert bound_fields() == {"task_id": "inner", "agent": "b"}
    assert bound_fields() == {"task_id": "outer", "agent": "a"}
    outer.end()
    assert bound_fields() == {}


def test_concurrent_asyncio_tasks_keep_their_own_task_ids(logs: Path) -> None:
    """Each asyncio task sees its own binding: interleaved calls are attributed to the right task."""

    async def worker(name: str) -> None:
        with task(name):
            for _ in range(3):
                get_llm_monitor().record_llm_call("gpt-4o", "openai", 0.1, 10, 1, worker=name)
                await asyncio.sleep(0)

    async def run() -> None:
        await asyncio.gather(worker("a"), worker("b"), worker("c"))

    asyncio.run(run())
    lines = read_records(logs / "llm_metrics.log")
    assert len(lines) == 9
    assert all(r["task_id"] == r["worker"] for r in lines)
    assert [r["worker"] for r in lines[:3]] == ["a", "b", "c"]  # they did interleave


def test_a_task_ended_from_another_thread_is_closed_and_leaves_that_thread_alone(logs: Path) -> None:
    """end_task from another thread writes the duration; that thread's own binding is untouched."""
    start_task("shared")
    seen: list[dict[str, Any]] = []

    def other() -> None:
        bind(task_id="mine")
        end_task("shared")
        seen.append(bound_fields())

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [{"task_id": "mine"}]
    end = read_records(logs / "task_metrics.log")[-1]
    assert (end["operation"], end["task_id"]) == ("task_end", "shared")
    assert end["duration"] >= 0
    unbind("task_id")


def test_session_environment_fields(make_factory: Callable[..., PerformanceMonitorFactory], log_dir: Path,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """user name, project root (found upwards from the working directory) and the allow-listed variables,
    secrets redacted; nothing else of the environment."""
    PerformanceMonitorFactory.set_instance(make_factory(extra={"sessions": {"environment_variables": ["APP_*",
                                                                                                      "CI"]}}))
    project = tmp_path / "project"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname='x'\n")
    monkeypatch.chdir(project / "src" / "pkg")
    monkeypatch.setenv("APP_MODE", "batch")
    monkeypatch.setenv("APP_API_KEY", "abc123")
    monkeypatch.setenv("APP_NOTE", "Bearer abcdefghijklmnopqrstuvwxyz012345")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("HOME_SECRET", "not listed")
    monkeypatch.setenv("USER", "ada")
    with start_session("s-env"):
        pass
    start = read_records(log_dir / "session_metrics.log")[0]
    assert (start["user_name"], start["project_root"], start["cwd"]) == ("ada", str(project), str(project / "src" /
                                                                                                   "pkg"))
    assert start["environment_variables"] == {"APP_API_KEY": "[REDACTED]", "APP_MODE": "batch",
                                              "APP_NOTE": "[REDACTED]", "CI": "true"}
    assert (start["host"], "user_host" in start) == (socket.gethostname(), False)
    with start_session("s-env-2", environment_variables=["CI"], project_root="/srv/app"):
        pass
    second = read_records(log_dir / "session_metrics.log")[-2]
    assert (second["environment_variables"], second["project_root"]) == ({"CI": "true"}, "/srv/app")
    summary = session_summary(log_dir, "s-env")
    assert summary["environment"]["project_root"] == str(project)
    assert summary["environment"]["environment_variables"]["APP_MODE"] == "batch"
    with pytest.raises(ConfigError, match="never '\\*' alone"):
        make_factory(extra={"sessions": {"environment_variables": ["*"]}})


def test_code_changes_per_task_and_per_session(logs: Path) -> None:
    """record_code_change (the session helper or the task monitor's method) adds up per task and per session;
    a count that cannot be one is flagged, not written as a number."""
    with start_session("s-code"):
        with task("fix"):
            record_code_change(["app.py", "tests/test_app.py"], lines_added=40, lines_removed=5)
            get_task_monitor().record_code_change(1, lines_added=2, lines_removed=0, commit="abc")
        record_code_change(3, 10, 10)
        get_task_monitor().record_code_change(1, lines_added=-4)
    changes = [r for r in read_records(logs / "task_metrics.log") if r["operation"] == "code_change"]
    assert changes[0]["files"] == ["app.py", "tests/test_app.py"]
    assert (changes[0]["files_changed"], changes[0]["task_id"]) == (2, "fix")
    assert changes[1]["commit"] == "abc"
    assert changes[3]["invalid"] == {"lines_added": "must be >= 0, got -4"}
    summary = session_summary(logs, "s-code")
    (fix,) = summary["tasks"]
    assert (fix["code_changes"], fix["files_changed"], fix["lines_added"], fix["lines_removed"]) == (2, 3, 42, 5)
    assert summary["code_changes"] == {"changes": 4, "files_changed": 7, "lines_added": 48, "lines_removed": 15}
    report = CliRunner().invoke(main, ["report", "--session", "s-code", "--log-dir", str(logs)])
    assert "Code changes: 4 changes, 7 files, +48 -15 lines" in report.output


def test_record_code_change_uses_the_process_task_monitor(logs: Path) -> None:
    """``record_code_change`` records with the monitor ``create_monitor("task")`` returns (a registered class
    included), and while recording is switched off it makes no monitor and writes nothing."""
    from infrastructure.monitoring import TaskPerformanceMonitor

    made: list[object] = []
    seen: list[Any] = []

    class AuditedTask(TaskPerformanceMonitor):
        def __init__(self, logger: Any = None) -> None:
            super().__init__(logger)
            made.append(self)

        def record_code_change(self, files_changed: Any, lines_added: int = 0, lines_removed: int = 0,
                               **extra: Any) -> None:
            seen.append(files_changed)
            super().record_code_change(files_changed, lines_added, lines_removed, **extra)

    factory = PerformanceMonitorFactory.get_instance()
    factory.register_monitor("task", AuditedTask)
    record_code_change(2, 5, 1)
    assert seen == [2]
    assert made == [factory.create_monitor("task")]
    assert get_task_monitor() is made[0]
    factory.disable()
    try:
        for _ in range(3):
            record_code_change(1, 1, 1)
    finally:
        factory.enable()
    assert (len(made), seen) == (1, [2])
    (change,) = [r for r in read_records(logs / "task_metrics.log") if r["operation"] == "code_change"]
    assert (change["files_changed"], change["lines_added"]) == (2, 5)
