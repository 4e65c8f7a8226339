"""Turn human config values ("50 MB", "1h", "yes") into numbers, once, at load time."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_size", "parse_bool", "parse_duration", "parse_size"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_size(value: object) -> int:
    """Bytes from ``52428800``, ``"50 MB"`` (decimal) or ``"50 MiB"`` (binary).

    Raises ``ValueError`` quoting an unparsable string and ``TypeError`` naming a
    wrong type, so the config loader can wrap either into a ``ConfigError``.
    """
    if isinstance(value, bool):
        raise TypeError(f"a size must be an int or a string like '50 MB', not {type(value).__name__}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value!r}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise TypeError(f"a size must be an int or a string like '50 MB', not {type(value).__name__}")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"cannot parse size {value!r}; use bytes or e.g. '512 KiB', '50 MB', '1 GiB'")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").lower()])


def format_size(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: the other way round, for people reading a report."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` or a ``timedelta``."""
    if isinstance(value, bool):
        raise TypeError(f"a duration must be a number or a string like '1h', not {type(value).__name__}")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)):
        if value < 0 or value != value:
            raise ValueError(f"a duration must be a non-negative number: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise TypeError(f"a duration must be a number or a string like '1h', not {type(value).__name__}")
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError(f"cannot parse duration {value!r}; use seconds or e.g. '500ms', '30s', '15m', '1h', '7d'")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "").lower()]


def parse_bool(value: object) -> bool:
    """``True`` from ``true``/``1``/``yes``/``on`` (any case), ``False`` from the opposites."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError(f"cannot parse boolean {value!r}; use true/false, 1/0, yes/no or on/off")
