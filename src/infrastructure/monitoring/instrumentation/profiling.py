"""Profiling on demand: one ``profile`` line per profiled call, in ``profile_metrics.log``.

    @profile("rank_documents", kind="function")      # cProfile: top functions by cumulative time
    def rank(docs): ...

    with profile_context("load_index", kind="memory"):   # tracemalloc: peak and top allocation sites
        index = load()

    with profile_context("export", kind="io"):           # psutil: bytes and calls read and written
        write_files()

    with profile_context("train_step", kind="cpu"):      # py-spy: top functions by samples on the CPU
        step()

    start_profiling("cpu")                               # code that no decorator or block can wrap
    ...
    record = stop_profiling("cpu")                       # writes the line, returns it (.duration, .details)

Nothing is profiled unless asked for, and nothing when monitoring is switched off, in the
configuration or by ``PerformanceMonitorFactory.disable()`` (the code then runs plain). The
profile's summary is written and dropped at the end of the call; only the top ``top``
entries are kept. ``cpu`` needs py-spy (the ``profile`` extra,
docs/profiling.md): when it is missing, or the system forbids it to attach, the line says so
in ``profiler_error`` (and a warning is logged once) and the code runs unprofiled; in strict
mode ``ProfilerUnavailableError`` is raised instead.
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import logging
import os
import pstats
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

from ..errors import ProfilerUnavailableError
from ..logger_writer import NoOpMetricsLogger, active_writer
from ._cpu import CpuSampler

__all__ = ["KINDS", "ProfileRecord", "ProfileType", "profile", "profile_context", "start_profiling",
           "stop_profiling"]

F = TypeVar("F", bound=Callable[..., Any])
KINDS: Final = ("function", "memory", "io", "cpu")
_log = logging.getLogger(__name__)


class ProfileType(StrEnum):
    """The kinds of profile, for code written as ``profile("f", ProfileType.FUNCTION)``; plain strings work too."""

    FUNCTION = "function"
    MEMORY = "memory"
    IO = "io"
    CPU = "cpu"


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """What a profile found: the fields of its ``profile`` line (``details``), returned by ``stop_profiling``."""

    name: str
    kind: str
    duration: float
    """Seconds from start to stop."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """``top_functions``, ``peak_bytes``, ``samples``, ... as in the line (empty when monitoring is off)."""

    @property
    def profiler_error(self) -> str | None:
        """Why nothing was profiled (py-spy missing or not allowed to attach), else ``None``."""
        error = self.details.get("profiler_error")
        return None if error is None else str(error)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"profile kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return str(kind)


class _Run:
    """One profile in progress: what ``profile_context`` and ``start_profiling`` share."""

    def __init__(self, name: str, kind: str, top: int, rate: int, fields: dict[str, Any]) -> None:
        self.name, self.kind, self.fields = name, kind, fields
        writer = active_writer("profile")
        self.writer = None if isinstance(writer, NoOpMetricsLogger) else writer
        """``None`` while recording is switched off: then nothing is profiled either."""
        self.thread = threading.get_ident()
        self.probe = _PROBES[kind](top, rate) if self.writer is not None else None
        self.started = time.perf_counter()
        if self.probe is not None:
            self.probe.start()
            error = getattr(self.probe, "error", None)
            if error is not None:
                if writer.strict:
                    raise ProfilerUnavailableError(kind, error)
                _warn_once(error)

    def finish(self, error: BaseException | None = None) -> ProfileRecord:
        details: dict[str, Any] = self.probe.stop() if self.probe is not None else {}
        duration = time.perf_counter() - self.started
        if self.writer is not None:
            extra = {"error_type": type(error).__name__} if error is not None else {}
            self.writer.log_timer("profile", duration, name=self.name, kind=self.kind, success=error is None,
                                  **details, **extra, **self.fields)
        return ProfileRecord(self.name, self.kind, duration, details)


@contextmanager
def profile_context(name: str, kind: str = "function", *, top: int = 10, rate: int = 100,
                    **fields: Any) -> Iterator[None]:
    """Profile the block and write one ``profile`` line when it ends (also after an exception).
    ``rate``: samples per second of a ``cpu`` profile."""
    run = _Run(name, _check_kind(kind), top, rate, fields)
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        run.finish(error)


def profile(name: str | None = None, kind: str = "function", *, top: int = 10, rate: int = 100,
            **fields: Any) -> Callable[[F], F]:
    """``@profile()`` / ``@profile("rank", kind="memory")`` on a function or a coroutine."""
    _check_kind(kind)

    def decorate(fn: F) -> F:
        label = name or fn.__qualname__
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with profile_context(label, kind, top=top, rate=rate, **fields):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with profile_context(label, kind, top=top, rate=rate, **fields):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# --------------------------------------------------------------------------- start / stop

_RUNNING: dict[str, _Run] = {}
"""Kind -> the profile of that kind in progress: one per kind per process."""
_running_lock = threading.Lock()


def start_profiling(what: str = "function", kind: str | None = None, /, *, top: int = 10, rate: int = 100,
                    **fields: Any) -> bool:
    """Start a profile that ``stop_profiling`` ends, for code no decorator or ``with`` block can wrap.

    ``start_profiling("cpu")`` names the profile after its kind; ``start_profiling("warmup", "cpu")``
    (the design's order: name, then kind) gives it a name. One profile per kind runs at a time in
    a process: starting a second one of a kind logs a warning and changes nothing. A ``function``
    profile sees the thread that started it, and only that thread may stop it. Returns whether
    a profiler is now running (``False`` when monitoring is off, the kind is busy, or py-spy
    cannot sample).
    """
    name, chosen = (what, kind) if kind is not None else (str(what), what)
    chosen = _check_kind(chosen)
    with _running_lock:
        current = _RUNNING.get(chosen)
        if current is not None:
            _log.warning("a %s profile (%r) is already running; stop_profiling(%r) before starting another",
                         chosen, current.name, chosen)
            return False
        run = _RUNNING[chosen] = _Run(name, chosen, top, rate, fields)
    return run.probe is not None and getattr(run.probe, "error", None) is None


def stop_profiling(kind: str | None = None) -> ProfileRecord | None:
    """End the profile of ``kind`` (or the only one running), write its line and return it.

    Without a profile to stop this does nothing but log a warning and return ``None``.
    """
    with _running_lock:
        if kind is None:
            if len(_RUNNING) != 1:
                running = ", ".join(sorted(_RUNNING))
                _log.warning("stop_profiling(): " + ("no profile is running (nothing to stop)" if not running else
                             f"several profiles are running ({running}); name the kind to stop"))
                return None
            kind = next(iter(_RUNNING))
        run = _RUNNING.get(str(kind))
        if run is None:
            _log.warning("stop_profiling(%r): no %s profile is running (nothing to stop; start_profiling(%r) "
                         "starts one)", str(kind), str(kind), str(kind))
            return None
        if run.kind == "function" and run.thread != threading.get_ident():
            _log.warning("stop_profiling('function'): a function profile is stopped by the thread that started it; "
                         "it keeps running")
            return None
        del _RUNNING[run.kind]
    return run.finish()


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A profiler that cannot run is said once per process and reason, not once per profiled call."""
    if message not in _warned:
        _warned.add(message)
        _log.warning("%s", message)


# --------------------------------------------------------------------------- probes


class _FunctionProbe:
    def __init__(self, top: int, rate: int) -> None:  # noqa: ARG002 - every probe takes the same arguments
        self.top = top
        self.profiler = cProfile.Profile()

    def start(self) -> None:
        self.profiler.enable()

    def stop(self) -> dict[str, Any]:
        self.profiler.disable()
        stats = pstats.Stats(self.profiler)
        rows = []
        for (filename, line, function), (_, calls, total, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append({"function": f"{os.path.basename(filename)}:{line}({function})", "calls": calls,
                         "total_time": round(total, 6), "cumulative_time": round(cumulative, 6)})
        rows.sort(key=lambda r: r["cumulative_time"], reverse=True)
        return {"top_functions": rows[: self.top], "function_calls": stats.total_calls}  # type: ignore[attr-defined]


class _MemoryProbe:
    def __init__(self, top: int, rate: int) -> None:  # noqa: ARG002 - every probe takes the same arguments
        self.top = top
        self.started_here = False

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self.started_here = True
        tracemalloc.reset_peak()
        self.baseline = tracemalloc.get_traced_memory()[0]

    def stop(self) -> dict[str, Any]:
        current, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
        if self.started_here:
            tracemalloc.stop()
        sites = [{"site": f"{os.path.basename(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                  "size_bytes": s.size, "count": s.count}
                 for s in snapshot.statistics("lineno")[: self.top]]
        return {"peak_bytes": max(0, peak - self.baseline), "retained_bytes": max(0, current - self.baseline),
                "top_allocations": sites}


class _IOProbe:
    _FIELDS: Final = ("read_bytes", "write_bytes", "read_count", "write_count", "read_chars", "write_chars")

    def __init__(self, top: int, rate: int) -> None:  # noqa: ARG002 - every probe takes the same arguments
        # psutil is only needed once an io profile is asked for
        import psutil

        self.process = psutil.Process()
        self.before: dict[str, int] = {}

    def _counters(self) -> dict[str, int]:
        counters = self.process.io_counters()
        return {f: getattr(counters, f) for f in self._FIELDS if hasattr(counters, f)}

    def start(self) -> None:
        self.before = self._counters()

    def stop(self) -> dict[str, Any]:
        after = self._counters()
        return {f: after[f] - self.before.get(f, 0) for f in after}


_PROBES: Final[dict[str, Callable[[int, int], Any]]] = {"function": _FunctionProbe, "memory": _MemoryProbe,
                                                       "io": _IOProbe, "cpu": CpuSampler}
