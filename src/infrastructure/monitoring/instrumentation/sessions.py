"""Agent sessions and their tasks, as log lines; the summary is computed from the logs.

    with start_session(agent="researcher") as session:     # binds session_id to everything inside
        start_task("t1", "find sources")
        ...
        end_task("t1", "completed")

``session_start`` (in ``session_metrics.log``) carries the environment: operating system
and version, Python version, host, user name, working directory, project root, time zone,
package version and the environment variables of an allow-list (``sessions.environment_variables``
in the configuration, through the redactor; never the whole environment).
Tasks (``tasks.py``) bind their ``task_id`` to the records made inside them and write
``task_start``/``task_end`` to ``task_metrics.log``. ``query.sessions.session_summary`` reads
everything back: tasks with their own LLM calls, tokens, cost, tool calls and errors, agents and
tools used, code changes, LLM calls, tokens and estimated cost by model.
"""

from __future__ import annotations

import contextlib
import fnmatch
import getpass
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from ..context import Binding, bind
from ..logger_writer import NoOpMetricsLogger, active_writer, default_pool
from .tasks import end_task, start_task

__all__ = ["Session", "end_task", "start_session", "start_task"]

PROJECT_MARKERS: Final = (".git", ".hg", "pyproject.toml", "setup.py", "setup.cfg")
"""What marks a project's root folder, looked for from the working directory upwards."""


def environment(variables: Iterable[str] = (), *, project_root: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a session record says about where it ran; ``variables``: the names (or ``PREFIX_*``) of
    the environment variables to copy."""
    # the package version reads importlib.metadata: only when a session starts
    from .. import __version__

    offset = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    return {
        "os": platform.system(), "os_version": platform.release(), "platform": platform.platform(),
        "python_version": platform.python_version(), "python_implementation": platform.python_implementation(),
        "cwd": os.getcwd(), "timezone": time.tzname[time.localtime().tm_isdst],  # host: the writer stamps it
        "utc_offset_seconds": offset, "package_version": __version__,
        "argv0": sys.argv[0] if sys.argv else None,
        "user_name": _user_name(),
        "project_root": str(project_root) if project_root is not None else find_project_root(),
        "environment_variables": selected_variables(variables, os.environ if environ is None else environ),
    }


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no USER/LOGNAME and no passwd entry (a bare container)
        return None


def find_project_root(start: str | os.PathLike[str] | None = None) -> str:
    """The nearest folder from ``start`` (the working directory) upwards holding a ``PROJECT_MARKERS``
    entry; the working directory itself when none does."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return str(folder)
    return str(here)


def selected_variables(patterns: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` named by ``patterns`` (exact names, or prefixes ending in ``*``),
    sorted by name. The values are screened by the writer's redactor like any field."""
    wanted = [p for p in patterns if p and p != "*"]
    return {name: environ[name] for name in sorted(environ)
            if any(fnmatch.fnmatchcase(name, p) if p.endswith("*") else name == p for p in wanted)}


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
        active_writer("session").log_event("session_end", session_id=self.session_id, status=status,
                                     duration=time.perf_counter() - self._start, **fields)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.end("failed" if kind is not None else "completed",
                 **({"error_type": kind.__name__} if kind is not None else {}))
        with contextlib.suppress(ValueError):  # ended in another context than it began: leave that one alone
            self._binding.__exit__(kind, exc, tb)


def start_session(session_id: str | None = None, *, environment_variables: Iterable[str] | None = None,
                  project_root: str | os.PathLike[str] | None = None, **fields: Any) -> Session:
    """Write ``session_start`` with the environment and bind ``session_id`` (a new one if not given).

    ``environment_variables`` replaces the configured allow-list (``sessions.environment_variables``)
    for this session; ``project_root`` the folder found from the working directory."""
    sid = session_id or uuid.uuid4().hex[:16]
    binding = bind(session_id=sid)
    writer = active_writer("session")
    if not isinstance(writer, NoOpMetricsLogger):
        names = environment_variables if environment_variables is not None else \
            default_pool().settings.sessions.environment_variables
        writer.log_event("session_start", **environment(names, project_root=project_root), **fields)
    return Session(sid, binding)
