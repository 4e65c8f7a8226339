"""What the built-in monitors share: field checks, extra fields, the fail-safe boundary.

Each built-in record method follows one shape: build the record with its keys in
order, run a one-line check of its numbers, merge the caller's extra fields, hand
the record to the writer; all inside ``try`` so a bug never reaches the caller.
Only when the quick check fails does the slow path below work out which field is
wrong, flag it in the record (fail-safe) or raise ``InvalidFieldError`` (strict).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

from .errors import InvalidFieldError
from .lightweight_monitor import LightweightPerformanceMonitor
from .schema import FIELD_INVALID, WRITER_FIELDS

__all__ = ["BaseMonitor", "number_problem"]

INF: Final = math.inf
_RESERVED: Final = WRITER_FIELDS | {FIELD_INVALID}


def number_problem(value: Any, *, integer: bool = False) -> str | None:
    """Why ``value`` cannot be a non-negative metric, or ``None`` when it can."""
    if isinstance(value, bool):
        return "must be a number, not a boolean"
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # Decimal, numpy scalars
        except (TypeError, ValueError):
            return f"must be a number, got {type(value).__name__}"
    if value != value:
        return "must be a finite number, got NaN"
    if value in (INF, -INF):
        return "must be a finite number, got infinity"
    if value < 0:
        return f"must be >= 0, got {value!r}"
    if integer and value != int(value):
        return f"must be a whole number, got {value!r}"
    return None


class BaseMonitor(LightweightPerformanceMonitor):
    """Shared behaviour of the built-in monitors (``llm``, ``tool``, ``checkpoint``, ...)."""

    def _validate(
        self,
        record: dict[str, Any],
        numbers: Iterable[str],
        integers: Iterable[str] = (),
    ) -> None:
        """Slow path: flag every bad field, or raise on the first one in strict mode."""
        integer_names = frozenset(integers)
        problems: dict[str, str] = {}
        for name in numbers:
            if name in record and record[name] is not None:
                reason = number_problem(record[name], integer=name in integer_names)
                if reason:
                    problems[name] = reason
        success = record.get("success", True)
        if success.__class__ is not bool:
            problems["success"] = f"must be true or false, got {type(success).__name__}"
        self._flag(record, problems)

    def _flag(self, record: dict[str, Any], problems: dict[str, str]) -> None:
        if not problems:
            return
        if self.logger.strict:
            name, reason = next(iter(problems.items()))
            raise InvalidFieldError(name, record.get(name), reason)
        for name, reason in problems.items():
            self.logger.report_invalid(name, reason)
            if isinstance(record.get(name), str):
                record[name] = self.logger.scrub(record[name])
            if name == "success":
                record["success"] = bool(record["success"]) if isinstance(record["success"], (int, float)) else False
        existing = record.get(FIELD_INVALID)
        record[FIELD_INVALID] = {**existing, **problems} if isinstance(existing, dict) else problems

    def _merge_extra(self, record: dict[str, Any], extra: dict[str, Any]) -> None:
        """Add the caller's extra fields after the built-in ones, never over them (redacted first)."""
        extra = self.logger.redact(extra)
        if _RESERVED.isdisjoint(extra) and record.keys().isdisjoint(extra):
            record.update(extra)
            return
        for key, value in extra.items():
            name = key
            if key in _RESERVED or key in record:
                if self.logger.strict:
                    raise InvalidFieldError(key, value, "is a built-in field name; choose another name")
                self.logger.report_invalid(key, "built-in field name; kept as user_" + key)
                name = "user_" + key
            record[name] = value

    def _finish_timer(self, record: dict[str, Any], extra: dict[str, Any], *, size: bool = False) -> None:
        """Check ``duration`` (and ``size``) and ``success``, add the extras, write: the tail of every timed record."""
        try:
            valid = 0 <= record["duration"] < INF and record["success"].__class__ is bool
            if size:
                valid = valid and 0 <= record["size"] < INF
        except TypeError:
            valid = False
        if not valid:
            self._validate(record, ("duration", "size"), ("size",))
        if extra:
            self._merge_extra(record, extra)
        self.logger.write_record(record, screened=True)

    def _failed(self, exc: Exception) -> None:
        """The fail-safe boundary of every record method."""
        if self.logger.strict:
            raise exc
        self.logger.report_internal_error(exc)
