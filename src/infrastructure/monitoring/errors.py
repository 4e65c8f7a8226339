"""Every error the package raises on purpose.

Each class also inherits the stdlib type a caller would naturally catch
(``ValueError``, ``LookupError``, ``OSError``), so existing ``except`` clauses keep
working. Messages quote the offending value with ``!r`` and say what would be valid;
the value is kept as an attribute for programs that want it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BadRequestError",
    "ConfigError",
    "InvalidFieldError",
    "MonitoringError",
    "ProfilerUnavailableError",
    "QueryError",
    "UnknownMonitorError",
    "WriteError",
]


class MonitoringError(Exception):
    """Base of every error raised on purpose by this package."""


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


class ConfigError(MonitoringError, ValueError):
    """A configuration key or value is wrong.

    ``key`` is the dotted path (``logging.rotation.max_bytes``), ``value`` what was
    given and ``valid`` a short description of what would be accepted.
    """

    def __init__(
        self,
        key: str,
        value: Any,
        valid: str,
        *,
        source: str | None = None,
    ) -> None:
        self.key = key
        self.value = value
        self.valid = valid
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid value for {key!r}{where}: {value!r}; expected {valid}")

    @classmethod
    def unknown_key(
        cls,
        key: str,
        value: Any,
        known: Iterable[str],
        *,
        source: str | None = None,
    ) -> ConfigError:
        """Build the error for a key that does not exist, suggesting the nearest one."""
        known = sorted(known)
        leaf = key.rsplit(".", 1)[-1]
        hint = _nearest(leaf, known)
        valid = "one of " + ", ".join(known) if known else "no keys here"
        if hint:
            valid += f" (did you mean {hint!r}?)"
        err = cls(key, value, valid, source=source)
        where = f" in {source}" if source else ""
        err.args = (f"unknown key {key!r}{where} (value {value!r}); valid keys: {valid}",)
        return err


class InvalidFieldError(MonitoringError, ValueError):
    """A recorded field has a value that cannot be a metric (strict mode only).

    In the default fail-safe mode the same problem is flagged inside the record
    instead (``"invalid": {"<field>": "<reason>"}``) and the call returns normally.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid value for field {field!r}: {_safe_repr(value)}; {reason}")


class UnknownMonitorError(MonitoringError, LookupError):
    """``create_monitor`` was asked for a name nobody registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        hint = _nearest(name, self.known)
        extra = f" (did you mean {hint!r}?)" if hint else ""
        super().__init__(
            f"unknown monitor {name!r}{extra}; known monitors: {', '.join(self.known)}"
            " (add one with register_monitor(name, cls))"
        )


class QueryError(MonitoringError, ValueError):
    """A question that cannot mean anything: the message says what would be valid.

    ``params`` names the arguments at fault (``("last", "since")``), so the command line
    can name its own flags (``--last``, ``--since``) instead of the Python parameters.
    """

    def __init__(self, message: str, *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = params


class ProfilerUnavailableError(MonitoringError, RuntimeError):
    """A profile of ``kind`` cannot run here (strict mode only; fail-safe mode runs the code
    unprofiled and writes ``reason`` into the profile line): py-spy is not installed, or the
    system does not let it attach to the process."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"cannot take a {kind!r} profile: {reason}")


class BadRequestError(MonitoringError, ValueError):
    """A request to the dashboard server with a parameter it cannot use (answered with 400)."""


class WriteError(MonitoringError, OSError):
    """A record could not be written (strict mode only; fail-safe mode counts it)."""

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"cannot write to {path!r}: {cause}")


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real error
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."
