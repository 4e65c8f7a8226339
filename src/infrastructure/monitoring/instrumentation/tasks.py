"""Tasks own their records: while a task runs, every record made in its context carries its ``task_id``.

    start_task("t1", "find sources", agent="researcher")   # binds task_id (and agent)
    llm.record_llm_call(...)                                # this line carries task_id="t1", agent="researcher"
    end_task("t1")                                          # task_end with its duration; the binding is restored

    with task("t2", "write the summary"):                   # the same as a block (failed on an exception)
        with task("t2.1", "outline"):                       # nested: task_start says parent_task_id="t2"
            ...
        record_code_change(["summary.md"], lines_added=40, lines_removed=3)

The binding is a ``context.bind`` like ``session_id``: each thread and asyncio task sees its own
(``carry``/``submit`` take it into a pool). ``end_task`` restores exactly the fields its task
bound, whichever function of the context calls it, so a ``bind`` made in between is kept; a
task ended from another context (another thread) is closed and leaves that context's binding
alone. Tasks that end out of order restore the innermost task still running. What is held in
memory is the open tasks' start times and the fields they replaced (at most 10,000 open tasks
per process; the oldest is forgotten beyond that).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from ..context import BOUND
from ..logger_writer import active_writer
from .decorators import _monitor_lookup

__all__ = ["Task", "end_task", "record_code_change", "start_task", "task"]

_OPEN_LIMIT: Final = 10_000
_MISSING: Final = object()
_BOUND_KEYS: Final = ("task_id", "agent")


@dataclass(eq=False)
class _Open:
    task_id: str
    session_id: Any
    started: float
    outer: dict[str, Any]
    """The bound ``task_id``/``agent`` this task replaced (``_MISSING`` when none was bound)."""
    outer_task: _Open | None
    """The task that was running here when this one started, if any."""
    ended: bool = False


_OPEN: OrderedDict[tuple[Any, str], _Open] = OrderedDict()
_lock = threading.Lock()


class Task:
    """A running task (``start_task`` returns it): ``end()``, or use it as a ``with`` block."""

    __slots__ = ("_ended", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._ended = False

    def end(self, status: str = "completed", **fields: Any) -> None:
        """``end_task(task_id, status, ...)``; a second call does nothing."""
        if not self._ended:
            self._ended = True
            end_task(self.task_id, status, **fields)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if kind is None:
            self.end()
        else:
            self.end("failed", error_type=kind.__name__)

    def __repr__(self) -> str:
        return f"Task({self.task_id!r}, ended={self._ended})"


def start_task(task_id: str, description: str | None = None, *, agent: str | None = None,
               parent_task_id: str | None = None, **fields: Any) -> Task:
    """Write ``task_start`` and bind ``task_id`` (and ``agent``, when given) until ``end_task``.

    ``parent_task_id`` defaults to the task running in this context, so tasks started inside a
    task nest; ``end_task(task_id)`` (or the returned ``Task``'s ``end``/``with``) closes it."""
    task_id = str(task_id)
    current = BOUND.get()
    session_id = current.get("session_id")
    parent = parent_task_id if parent_task_id is not None else current.get("task_id")
    new = {"task_id": task_id, **({"agent": agent} if agent is not None else {})}
    outer_id = current.get("task_id")
    with _lock:
        outer_task = _OPEN.get((session_id, str(outer_id))) if outer_id is not None else None
        if len(_OPEN) >= _OPEN_LIMIT:
            _OPEN.popitem(last=False)  # never ended: forget the oldest
        _OPEN[(session_id, task_id)] = _Open(task_id, session_id, time.perf_counter(),
                                             {k: current.get(k, _MISSING) for k in new}, outer_task)
    BOUND.set(MappingProxyType({**current, **new}))
    extra: dict[str, Any] = {"description": description} if description is not None else {}
    if parent is not None:
        extra["parent_task_id"] = str(parent)
    active_writer("task").log_event("task_start", task_id=task_id, **extra, **fields)
    return Task(task_id)


def task(task_id: str, description: str | None = None, *, agent: str | None = None,
         parent_task_id: str | None = None, **fields: Any) -> Task:
    """``with task("t1", "find sources"):`` — ``start_task`` as a block: ``completed`` at its end,
    ``failed`` (with ``error_type``) when an exception leaves it."""
    return start_task(task_id, description, agent=agent, parent_task_id=parent_task_id, **fields)


def end_task(task_id: str, status: str = "completed", **fields: Any) -> None:
    """Write ``task_end`` (``status``: completed, failed, cancelled ...; ``success`` follows it) with
    the task's duration, and restore the fields it bound in this context."""
    task_id = str(task_id)
    current = BOUND.get()
    with _lock:
        opened = _OPEN.pop((current.get("session_id"), task_id), None)
        if opened is None:  # ended from another context: find it by id alone, the newest first
            key = next((k for k in reversed(_OPEN) if k[1] == task_id), None)
            opened = _OPEN.pop(key) if key is not None else None
        if opened is not None:
            opened.ended = True
    extra: dict[str, Any] = {"duration": time.perf_counter() - opened.started} if opened is not None else {}
    try:  # written still inside the task: the line carries its agent
        active_writer("task").log_event("task_end", task_id=task_id, status=status, success=status == "completed",
                                  **extra, **fields)
    finally:
        if current.get("task_id") == task_id:
            _restore(current, opened)


def _restore(current: Any, opened: _Open | None) -> None:
    """Put back what this task bound: the values of the innermost enclosing task still running, or
    of the context before any of the ended ones began (a parent may have ended first)."""
    if opened is None:  # its bookkeeping is gone (more than 10,000 open tasks): at least drop its id
        BOUND.set(MappingProxyType({k: v for k, v in current.items() if k != "task_id"}))
        return
    chain = [opened]
    while chain[-1].outer_task is not None and chain[-1].outer_task.ended:
        chain.append(chain[-1].outer_task)
    restored = dict(current)
    for key in _BOUND_KEYS:
        owners = [t for t in chain if key in t.outer]
        if not owners:
            continue
        value = owners[-1].outer[key]
        if value is _MISSING:
            restored.pop(key, None)
        else:
            restored[key] = value
    BOUND.set(MappingProxyType(restored))


_TASK_MONITOR: Final = _monitor_lookup("task")


def record_code_change(files_changed: int | Iterable[str], lines_added: int = 0, lines_removed: int = 0,
                       **fields: Any) -> None:
    """What a coding agent changed, in ``task_metrics.log`` (``code_change``), carrying the session
    and task bound here: ``record_code_change`` of the process's ``task`` monitor, the one
    ``create_monitor("task")`` returns (nothing at all while recording is switched off)."""
    monitor = _TASK_MONITOR()
    if monitor is not None:
        monitor.record_code_change(files_changed, lines_added, lines_removed, **fields)
