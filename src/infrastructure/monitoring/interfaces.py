"""The contracts between the rooms of the package.

Anything that satisfies these protocols can stand in for the built-in parts: a sink
that ships lines elsewhere, a writer that only counts, a monitor written by a user.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["EventDict", "LineSink", "MetricsWriter", "Monitor", "Processor", "WrappedLogger"]

WrappedLogger = Any
"""Whatever a processor receives as ``logger``: the writer, or structlog's logger."""

EventDict = MutableMapping[str, Any]
"""One record on its way to the file; key order is the order on disk."""

Processor = Callable[[WrappedLogger, str, EventDict], EventDict]
"""structlog's processor signature ``(logger, method_name, event_dict) -> event_dict``.

Any structlog processor plugs into the writer unchanged and ours plug into
structlog. A processor may change the record in place and return it, return a new
one, or raise ``DropRecord`` (or structlog's ``DropEvent``) to drop it on purpose.
"""


@runtime_checkable
class LineSink(Protocol):
    """Where rendered lines go.

    ``write`` receives one complete line ending in ``\\n`` and the record's timestamp;
    it must either put the whole line in place with one write or raise ``OSError``.
    It never buffers: once it returns, the line is in the operating system's hands.
    The writer above it decides whether an error is counted (fail-safe) or raised
    (strict). ``close`` is idempotent.
    """

    path: str

    def write(self, line: bytes, now: float) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class MetricsWriter(Protocol):
    """What a monitor writes through (the design's ``logger``).

    Every method returns ``None`` and, unless strict mode is on, never raises: a
    failure is counted, reported through stdlib ``logging`` at a bounded rate and
    summarised in the family's own log once writing works again.
    """

    module: str
    strict: bool

    def scrub(self, value: Any) -> Any:
        """Return a caller-supplied string with credential-shaped parts replaced."""
        ...

    def redact(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Return ``fields`` with secret keys and credential-shaped values replaced."""
        ...

    def report_invalid(self, field: str, reason: str) -> None: ...

    def report_internal_error(self, exc: BaseException) -> None: ...

    def log_timer(self, operation: str, duration: float, **fields: Any) -> None: ...

    def log_counter(self, operation: str, value: float = 1, **fields: Any) -> None: ...

    def log_gauge(self, operation: str, value: float, **fields: Any) -> None: ...

    def log_event(self, operation: str, **fields: Any) -> None: ...

    def write_record(self, record: dict[str, Any], *, screened: bool = False) -> None: ...


@runtime_checkable
class Monitor(Protocol):
    """A per-module monitor: a thin, stateless front over one ``MetricsWriter``.

    Its record methods return ``None`` and never raise unless strict mode is on;
    they keep nothing after returning, so one instance can be shared by every
    thread of a process.
    """

    logger: MetricsWriter

    @property
    def module(self) -> str: ...

    def record_timer(self, operation: str, duration: float, **fields: Any) -> None: ...

    def record_counter(self, operation: str, value: float = 1, **fields: Any) -> None: ...

    def record_gauge(self, operation: str, value: float, **fields: Any) -> None: ...

    def record_event(self, operation: str, **fields: Any) -> None: ...
