"""Agent sessions and their tasks, as log lines; the summary is computed from the logs.

    with start_session(agent="researcher") as session:     # binds session_id to everything inside
        start_task("t1", "find sources")
        ...
        end_task("t1", "completed")

``session_start`` (in ``session_metrics.log``) carries the environment: operating system
and version, Python version, host, working directory, time zone and package version.
``task_start``/``task_end`` go to ``task_metrics.log``; an open task's start time is the
only thing held in memory, until its end (at most 10,000 open tasks per process).
``session_summary`` reads everything back: tasks and durations, agents and tools used,
LLM calls, tokens and estimated cost by model.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
import time
import uuid
from collections import OrderedDict
from typing import Any

from ..context import Binding, bind

__all__ = ["Session", "end_task", "session_summary", "start_session", "start_task"]

_OPEN_TASKS: OrderedDict[str, float] = OrderedDict()
_OPEN_LIMIT = 10_000


def _writer(module: str) -> Any:
    from ..factory import PerformanceMonitorFactory

    return PerformanceMonitorFactory.get_instance().get_writer(module)


def environment() -> dict[str, Any]:
    """What a session record says about where it ran."""
    from .. import __version__

    offset = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    return {
        "os": platform.system(), "os_version": platform.release(), "platform": platform.platform(),
        "python_version": platform.python_version(), "python_implementation": platform.python_implementation(),
        "host": socket.gethostname(), "cwd": os.getcwd(), "timezone": time.tzname[time.localtime().tm_isdst],
        "utc_offset_seconds": offset, "package_version": __version__,
        "argv0": sys.argv[0] if sys.argv else None,
    }


class Session:
    """A running session: its id is bound to the context until ``end`` (or the ``with`` block's end)."""

    def __init__(self, session_id: str, binding: Binding) -> None:
        self.session_id = session_id
        self._binding = binding
        self._start = time.perf_counter()
        self.ended = False

    def end(self, status: str = "completed", **fields: Any) -> None:
        if self.ended:
            return
        self.ended = True
        _writer("session").log_event("session_end", session_id=self.session_id, status=status,
                                     duration=time.perf_counter() - self._start, **fields)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.end("failed" if kind is not None else "completed",
                 **({"error_type": kind.__name__} if kind is not None else {}))
        with contextlib.suppress(ValueError):  # ended in another context than it began: leave that one alone
            self._binding.__exit__(kind, exc, tb)


def start_session(session_id: str | None = None, **fields: Any) -> Session:
    """Write ``session_start`` with the environment and bind ``session_id`` (a new one if not given)."""
    sid = session_id or uuid.uuid4().hex[:16]
    binding = bind(session_id=sid)
    _writer("session").log_event("session_start", **environment(), **fields)
    return Session(sid, binding)


def start_task(task_id: str, description: str | None = None, **fields: Any) -> None:
    """Write ``task_start``; ``end_task`` with the same id closes it and records its duration."""
    if len(_OPEN_TASKS) >= _OPEN_LIMIT:
        _OPEN_TASKS.popitem(last=False)  # never ended: forget the oldest
    _OPEN_TASKS[task_id] = time.perf_counter()
    extra = {"description": description} if description is not None else {}
    _writer("task").log_event("task_start", task_id=task_id, **extra, **fields)


def end_task(task_id: str, status: str = "completed", **fields: Any) -> None:
    """Write ``task_end`` (``status``: completed, failed, cancelled ...; ``success`` follows it)."""
    started = _OPEN_TASKS.pop(task_id, None)
    extra: dict[str, Any] = {"duration": time.perf_counter() - started} if started is not None else {}
    _writer("task").log_event("task_end", task_id=task_id, status=status, success=status == "completed",
                              **extra, **fields)


def session_summary(log_dir: Any, session_id: str) -> dict[str, Any]:
    """Everything a session did, from the logs: tasks, agents, tools, LLM calls, tokens and cost."""
    from ..query import LogParser

    parser = LogParser(log_dir)
    present = set(parser.modules())
    where = [f"session_id={session_id}"]
    summary: dict[str, Any] = {"session_id": session_id, "environment": None, "status": None,
                               "duration": None, "tasks": [], "agents": [], "tools": [], "llm": []}
    if "session" in present:
        for r in parser.records("session", where=where):
            if r.get("operation") == "session_start":
                summary["environment"] = {k: r.get(k) for k in ("os", "os_version", "python_version", "host", "cwd",
                                                                "timezone", "package_version")}
                summary["started"] = r.get("timestamp")
            elif r.get("operation") == "session_end":
                summary["status"], summary["duration"] = r.get("status"), r.get("duration")
    if "task" in present:
        tasks: dict[str, dict[str, Any]] = {}
        for r in parser.records("task", where=where):
            op = r.get("operation")
            if op in ("task_start", "task_end"):
                task = tasks.setdefault(str(r.get("task_id")), {"task_id": r.get("task_id")})
                if op == "task_start":
                    task["description"] = r.get("description")
                    task["started"] = r.get("timestamp")
                else:
                    task["status"], task["duration"] = r.get("status"), r.get("duration")
        summary["tasks"] = list(tasks.values())
        summary["agents"] = parser.query("task", operation="agent_execution", where=where,
                                         group_by=["agent_type", "agent_name"],
                                         aggs=["count", "errors", "sum:duration"]).rows
    if "tool" in present:
        summary["tools"] = parser.query("tool", operation="tool_call", where=where, group_by="tool_name",
                                        aggs=["count", "errors", "sum:duration"]).rows
    if "llm" in present:
        summary["llm"] = parser.query("llm", operation="llm_call", where=where, group_by=["provider", "model"],
                                      aggs=["count", "errors", "sum:prompt_tokens", "sum:completion_tokens",
                                            "sum:total_tokens", "sum:cost"]).rows
        unpriced = parser.query("llm", operation="llm_call", where=[*where, "cost_status=unknown_model"],
                                aggs=["count"]).rows
        summary["unpriced_calls"] = unpriced[0]["count"] if unpriced else 0
    summary["llm_calls"] = sum(r["count"] for r in summary["llm"])
    summary["total_tokens"] = sum(r.get("sum_total_tokens") or 0 for r in summary["llm"])
    summary["estimated_cost"] = sum(r.get("sum_cost") or 0 for r in summary["llm"])
    return summary
