"""What an agent session did, computed from the logs (``monitoring report --session ID``).

Sessions and tasks are written by ``instrumentation.sessions`` and ``instrumentation.tasks``;
this module only reads. Every record made inside a task carries its ``task_id``, so each task
of the summary says what happened in it: duration and status, LLM calls, tokens and cost,
tool calls, errors and code changes. A task's figures include its subtasks' (as its duration
does); ``outside_tasks`` holds what the session did between tasks. ``@observe_task_execution``
calls are listed among the tasks (``kind: "execution"``) under the task they ran in; the
records they made are counted in that enclosing task.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .engine import LogParser

__all__ = ["session_summary"]

_ENVIRONMENT: Final = ("os", "os_version", "python_version", "host", "user_name", "cwd", "project_root", "timezone",
                       "package_version", "environment_variables")
_FIGURES: Final = ("llm_calls", "prompt_tokens", "completion_tokens", "total_tokens", "cost", "tool_calls", "errors",
                   "code_changes", "files_changed", "lines_added", "lines_removed")
_MAX_GROUPS: Final = 1_000_000
MAX_TASKS: Final = 10_000
"""Tasks listed at most (the rest counted in ``tasks_omitted``): a summary stays a summary."""


def session_summary(log_dir: Any, session_id: str) -> dict[str, Any]:
    """Everything a session did, from the logs: tasks (each with its own figures), agents, tools,
    LLM calls, tokens, cost and code changes."""
    parser = LogParser(log_dir)
    present = set(parser.modules())
    where = [f"session_id={session_id}"]
    summary: dict[str, Any] = {"session_id": session_id, "environment": None, "status": None,
                               "duration": None, "tasks": [], "tasks_omitted": 0, "agents": [], "tools": [],
                               "llm": [], "outside_tasks": _zero(), "code_changes": None}
    if "session" in present:
        for r in parser.records("session", where=where):
            if r.get("operation") == "session_start":
                summary["environment"] = {k: r.get(k) for k in _ENVIRONMENT}
                summary["started"] = r.get("timestamp")
            elif r.get("operation") == "session_end":
                summary["status"], summary["duration"] = r.get("status"), r.get("duration")
    own: dict[str | None, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    executions: list[dict[str, Any]] = []
    if "task" in present:
        _read_tasks(parser, where, tasks, executions)
        rows = _query(parser, "task", ["task_execution", "agent_execution", "code_change"], where,
                      ["operation", "agent_type", "agent_name", "task_id"],
                      ["count", "errors", "sum:duration", "sum:files_changed", "sum:lines_added", "sum:lines_removed"])
        agents = [r for r in rows if r.get("operation") == "agent_execution"]
        summary["agents"] = _fold(agents, ["agent_type", "agent_name"], ["count", "errors", "sum_duration"])
        _add(own, [r for r in rows if r.get("operation") != "code_change"], {"errors": "errors"})
        changes = [r for r in rows if r.get("operation") == "code_change"]
        _add(own, changes, {"code_changes": "count", "files_changed": "sum_files_changed",
                            "lines_added": "sum_lines_added", "lines_removed": "sum_lines_removed"})
        if changes:
            summary["code_changes"] = {name: sum(r.get(column) or 0 for r in changes) for name, column in (
                ("changes", "count"), ("files_changed", "sum_files_changed"), ("lines_added", "sum_lines_added"),
                ("lines_removed", "sum_lines_removed"))}
    if "tool" in present:
        rows = _query(parser, "tool", ["tool_call"], where, ["tool_name", "task_id"],
                      ["count", "errors", "sum:duration"])
        summary["tools"] = _fold(rows, ["tool_name"], ["count", "errors", "sum_duration"])
        _add(own, rows, {"tool_calls": "count", "errors": "errors"})
    if "llm" in present:
        sums = ["sum_prompt_tokens", "sum_completion_tokens", "sum_total_tokens", "sum_cost"]
        rows = _query(parser, "llm", ["llm_call"], where, ["provider", "model", "task_id"],
                      ["count", "errors", *(s.replace("sum_", "sum:", 1) for s in sums),
                       "count_if:cost_status=unknown_model"])
        summary["llm"] = _fold(rows, ["provider", "model"], ["count", "errors", *sums])
        _add(own, rows, {"llm_calls": "count", "errors": "errors", "prompt_tokens": "sum_prompt_tokens",
                         "completion_tokens": "sum_completion_tokens", "total_tokens": "sum_total_tokens",
                         "cost": "sum_cost"})
        summary["unpriced_calls"] = sum(r.get("count_cost_status_unknown_model") or 0 for r in rows)
    summary["outside_tasks"] = {**_zero(), **own.pop(None, {})}
    for task_id, figures in own.items():  # records bound to a task whose start is not in this session's logs
        tasks.setdefault(str(task_id), {"task_id": task_id, "kind": "task", "parent_task_id": None})
        tasks[str(task_id)].update(figures)
    listed = _tree(tasks, executions)
    summary["tasks"], summary["tasks_omitted"] = listed[:MAX_TASKS], max(0, len(listed) - MAX_TASKS)
    summary["llm_calls"] = sum(r["count"] for r in summary["llm"])
    summary["total_tokens"] = sum(r.get("sum_total_tokens") or 0 for r in summary["llm"])
    summary["estimated_cost"] = sum(r.get("sum_cost") or 0 for r in summary["llm"])
    return summary


def _read_tasks(parser: LogParser, where: list[str], tasks: dict[str, dict[str, Any]],
                executions: list[dict[str, Any]]) -> None:
    """The session's tasks from their start and end lines, and its ``@observe_task_execution`` calls."""
    for r in parser.records("task", where=where):
        op = r.get("operation")
        if op in ("task_start", "task_end"):
            key = str(r.get("task_id"))
            task = tasks.setdefault(key, {"task_id": r.get("task_id"), "kind": "task", "parent_task_id": None})
            if op == "task_start":
                parent = r.get("parent_task_id")
                task.update(description=r.get("description"), agent=r.get("agent"), started=r.get("timestamp"),
                            parent_task_id=None if parent is None else str(parent))
            else:
                task.update(status=r.get("status"), duration=r.get("duration"), success=r.get("success"))
        elif op == "task_execution":
            duration = r.get("duration")
            ended = r.get("timestamp")
            started = ended - duration if isinstance(duration, (int, float)) and isinstance(ended, float) else ended
            parent = r.get("task_id")
            executions.append({"task_id": None, "kind": "execution", "task_type": r.get("task_type"),
                               "parent_task_id": None if parent is None else str(parent), "agent": r.get("agent"),
                               "started": started, "duration": duration, "success": r.get("success"),
                               "status": "completed" if r.get("success") is not False else "failed",
                               "error_type": r.get("error_type"), **dict.fromkeys(_FIGURES)})


def _query(parser: LogParser, module: str, operations: list[str], where: list[str], keys: list[str],
           aggs: list[str]) -> list[dict[str, Any]]:
    """One scan of a family for the session, grouped finely enough for both the session's tables
    and the per-task figures (``_fold`` and ``_add`` split it): every group kept, never folded."""
    return parser.query(module, operation=operations, where=where, group_by=keys, aggs=aggs,
                        max_groups=_MAX_GROUPS, check_fields=False).rows


def _fold(rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """``rows`` summed over the keys not in ``keys``, in their order (a sum stays null when every
    part is: a model with no price has no cost, not a cost of 0)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row.get(k) for k in keys)
        total = out.get(key)
        if total is None:
            total = out[key] = {**dict(zip(keys, key, strict=True)), **dict.fromkeys(columns)}
        for column in columns:
            value = row.get(column)
            if value is not None:
                total[column] = value if total[column] is None else total[column] + value
    return list(out.values())


def _zero() -> dict[str, Any]:
    return dict.fromkeys(_FIGURES, 0)


def _add(own: dict[str | None, dict[str, Any]], rows: Iterable[dict[str, Any]], columns: dict[str, str]) -> None:
    """Add each row's figures (``columns``: figure -> result column) to its task's own figures."""
    for row in rows:
        figures = own.setdefault(row.get("task_id"), _zero())
        for name, column in columns.items():
            figures[name] += row.get(column) or 0


def _tree(tasks: dict[str, dict[str, Any]], executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks parent first, children by start time, each with ``depth`` and figures that include its
    subtasks'; a task whose parent is not in the session is a root."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for task in [*tasks.values(), *executions]:
        parent = task.get("parent_task_id")
        if task["kind"] == "task":
            for name in _FIGURES:
                task.setdefault(name, 0)
        children.setdefault(parent if parent in tasks else None, []).append(task)
    for group in children.values():
        group.sort(key=lambda t: (t.get("started") is None, t.get("started") or 0))

    out: list[dict[str, Any]] = []

    def visit(task: dict[str, Any], depth: int, path: frozenset[str]) -> dict[str, Any]:
        task["depth"] = depth
        out.append(task)
        totals = {name: task.get(name) or 0 for name in _FIGURES}
        key = str(task["task_id"]) if task["kind"] == "task" else None
        if key is not None:
            inside = path | {key}
            for child in children.get(key, []):
                if child["kind"] == "task" and str(child["task_id"]) in inside:
                    continue  # a circle of parents (ids given by hand) is cut here
                inner = visit(child, depth + 1, inside)
                if child["kind"] == "task":
                    for name in _FIGURES:
                        totals[name] += inner[name]
        if task["kind"] == "task":
            task.update(totals)
        return totals

    for root in children.get(None, []):
        visit(root, 0, frozenset())
    seen = {id(task) for task in out}
    for task in [*tasks.values(), *executions]:  # tasks whose parents name each other in a circle
        if id(task) not in seen:
            visit(task, 0, frozenset())
            seen.update(id(t) for t in out)
    return out
