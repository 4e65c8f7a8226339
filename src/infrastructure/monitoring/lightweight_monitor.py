"""The zero-memory monitor base: every call becomes one line, nothing stays behind.

Subclass it to add a monitor of your own, exactly as the design shows::

    class CustomPerformanceMonitor(LightweightPerformanceMonitor):
        def __init__(self, logger=None):
            super().__init__(logger)

        def record_custom_metric(self, metric_name: str, value: float) -> None:
            self.logger.log_timer(f"custom.{metric_name}", value)

then ``factory.register_monitor("custom", CustomPerformanceMonitor)`` and
``factory.create_monitor("custom")`` returns it, writing to ``logs/custom_metrics.log``.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from ._timing import Timer, fixed, timed_by
from .interfaces import MetricsWriter
from .logger_writer import SWITCHED_ON, default_pool

__all__ = ["LightweightPerformanceMonitor", "set_recording", "switch_off"]

class LightweightPerformanceMonitor:
    """Holds only a reference to its module's writer; instances are cheap and shareable.

    ``logger`` is the module's ``MetricsWriter``. When omitted, the process's default
    writer pool (``logger_writer.default_pool``: the one the process-wide factory uses)
    gives the writer for ``module_name``, so a monitor built by hand writes to the same
    family as one built by the factory.
    """

    module_name: ClassVar[str] = "custom"

    def __init__(self, logger: MetricsWriter | None = None) -> None:
        if logger is None:
            logger = default_pool().get(self.module_name)
        self.logger: MetricsWriter = logger
        _LIVE.add(self)
        if not SWITCHED_ON[0]:
            switch_off(self)
            _SWITCHED.add(self)

    @property
    def module(self) -> str:
        """The module the records are filed under (``<module>_metrics.log``)."""
        return self.logger.module

    def record_timer(self, operation: str, duration: float, **fields: Any) -> None:
        """Record how long ``operation`` took, in seconds."""
        self.logger.log_timer(operation, duration, **fields)

    def record_counter(self, operation: str, value: float = 1, **fields: Any) -> None:
        """Record that ``operation`` happened ``value`` times."""
        self.logger.log_counter(operation, value, **fields)

    def record_gauge(self, operation: str, value: float, **fields: Any) -> None:
        """Record the current level of something (queue length, cache size)."""
        self.logger.log_gauge(operation, value, **fields)

    def record_event(self, operation: str, **fields: Any) -> None:
        """Record that something happened, with any fields."""
        self.logger.log_event(operation, **fields)

    def timer(self, operation: str, /, **fields: Any) -> Any:
        """``with monitor.timer("op") as t: ...; t.set(rows=n)``: one timer line when the block ends."""
        return Timer(self, operation, fields)

    def timed(self, operation: str, **fields: Any) -> Any:
        """``@monitor.timed("op")`` on a function, coroutine, generator or async generator."""
        return timed_by(operation, fixed(self), fields, LightweightPerformanceMonitor.record_timer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(module={self.module!r})"


# --------------------------------------------------------------------------- switched off


class _NullTimer:
    """What ``timer()`` returns when monitoring is off: a context manager that measures nothing."""

    __slots__ = ()
    duration = None

    def __enter__(self) -> _NullTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> _NullTimer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, **fields: Any) -> None:
        return None


_NULL_TIMER = _NullTimer()


def _nothing(self: Any, *args: Any, **kwargs: Any) -> None:
    return None


def _null_timer(self: Any, operation: str, **fields: Any) -> _NullTimer:
    return _NULL_TIMER


def _as_is(self: Any, *args: Any, **kwargs: Any) -> Any:
    """A decorator factory that leaves the function untouched (``@m.timed("x")``, ``@llm.observe``)."""
    if args and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


_OFF_CLASSES: dict[type, type] = {}
_LIVE: weakref.WeakSet[LightweightPerformanceMonitor] = weakref.WeakSet()
"""Every monitor of the process, so recording can be switched off and on at run time."""
_SWITCHED: weakref.WeakSet[LightweightPerformanceMonitor] = weakref.WeakSet()
"""The monitors ``set_recording(False)`` switched off (the ones the configuration switched off stay off)."""


def switch_off(monitor: LightweightPerformanceMonitor) -> LightweightPerformanceMonitor:
    """Turn ``monitor`` into its switched-off twin: every ``record_*`` method returns at once, a
    timer measures nothing and a decorator returns the function itself, so a disabled
    configuration costs one method call per recording site and nothing per decorated call."""
    cls = type(monitor)
    off = _OFF_CLASSES.get(cls)
    if off is None:
        namespace: dict[str, Any] = {name: _nothing for name in dir(cls) if name.startswith("record_")}
        namespace.update(timer=_null_timer, timed=_as_is, observe=_as_is, __slots__=())
        off = _OFF_CLASSES[cls] = type(f"{cls.__name__}SwitchedOff", (cls,), namespace)
    monitor.__class__ = off
    return monitor


def set_recording(on: bool) -> None:
    """Switch recording off or on in this process, without a restart: every live monitor becomes
    its switched-off twin (or back), and the decorators, the tracer and sessions stop (or
    resume) at their next call. Monitors made while it is off start switched off."""
    SWITCHED_ON[0] = bool(on)
    if not on:
        for monitor in list(_LIVE):
            if type(monitor) not in _OFF_CLASSES.values():
                switch_off(monitor)
                _SWITCHED.add(monitor)
        return
    for monitor in list(_SWITCHED):
        monitor.__class__ = type(monitor).__mro__[1]  # the class it had before
    _SWITCHED.clear()
