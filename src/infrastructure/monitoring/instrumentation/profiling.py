"""Profiling on demand: one ``profile`` line per profiled call, in ``profile_metrics.log``.

    @profile("rank_documents", kind="function")      # cProfile: top functions by cumulative time
    def rank(docs): ...

    with profile_context("load_index", kind="memory"):   # tracemalloc: peak and top allocation sites
        index = load()

    with profile_context("export", kind="io"):           # psutil: bytes and calls read and written
        write_files()

Nothing is profiled unless asked for, and nothing when monitoring is switched off (the
code then runs plain). The profile's summary is written and dropped at the end of the
call; only the top ``top`` entries are kept.
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import os
import pstats
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

__all__ = ["KINDS", "profile", "profile_context"]

F = TypeVar("F", bound=Callable[..., Any])
KINDS: Final = ("function", "memory", "io")


def _writer() -> Any:
    from ..factory import PerformanceMonitorFactory
    from ..logger_writer import NoOpMetricsLogger

    writer = PerformanceMonitorFactory.get_instance().get_writer("profile")
    return None if isinstance(writer, NoOpMetricsLogger) else writer


@contextmanager
def profile_context(name: str, kind: str = "function", *, top: int = 10, **fields: Any) -> Iterator[None]:
    """Profile the block and write one ``profile`` line when it ends (also after an exception)."""
    if kind not in KINDS:
        raise ValueError(f"profile kind must be one of {', '.join(KINDS)}, not {kind!r}")
    writer = _writer()
    if writer is None:
        yield
        return
    probe = _PROBES[kind](top)
    started = time.perf_counter()
    error: BaseException | None = None
    probe.start()
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        details = probe.stop()
        extra = {"error_type": type(error).__name__} if error is not None else {}
        writer.log_timer("profile", time.perf_counter() - started, name=name, kind=kind, success=error is None,
                         **details, **extra, **fields)


def profile(name: str | None = None, kind: str = "function", *, top: int = 10, **fields: Any) -> Callable[[F], F]:
    """``@profile()`` / ``@profile("rank", kind="memory")`` on a function or a coroutine."""

    def decorate(fn: F) -> F:
        label = name or fn.__qualname__
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with profile_context(label, kind, top=top, **fields):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with profile_context(label, kind, top=top, **fields):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class _FunctionProbe:
    def __init__(self, top: int) -> None:
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
    def __init__(self, top: int) -> None:
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

    def __init__(self, top: int) -> None:  # noqa: ARG002 - every probe takes the same arguments
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


_PROBES: Final[dict[str, Callable[[int], Any]]] = {"function": _FunctionProbe, "memory": _MemoryProbe,
                                                  "io": _IOProbe}
