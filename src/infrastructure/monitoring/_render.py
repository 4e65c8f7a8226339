"""Render a record as one compact JSON line, whatever the caller put in it.

The fast path is a single ``orjson.dumps``. Values orjson cannot take (Decimal, Path,
sets, arbitrary objects) go through ``json_default``; a record orjson rejects as a whole
(cycles, huge ints, non-string keys, lone surrogates) is rebuilt by ``_sanitize`` and
rendered again. A line longer than the cap has its largest values cut and listed
under ``truncated``. Nothing here raises for any input.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from enum import Enum
from os import PathLike
from typing import Any, Final
from uuid import UUID

import orjson

from .schema import FIELD_METRIC_TYPE, FIELD_MODULE, FIELD_OPERATION, FIELD_TIMESTAMP, FIELD_TRUNCATED, MAX_NESTING

__all__ = ["fit_line", "render", "safe_repr"]

_OPT: Final = orjson.OPT_APPEND_NEWLINE
_PROTECTED: Final = frozenset({FIELD_TIMESTAMP, FIELD_METRIC_TYPE, FIELD_OPERATION, FIELD_MODULE, FIELD_TRUNCATED})
_INT_MAX: Final = (1 << 63) - 1
_INT_MIN: Final = -(1 << 63)


def safe_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters; a raising ``__repr__`` gives a placeholder."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - hostile objects must not break a record
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_default(value: Any) -> Any:
    """What orjson calls for a value it does not know; also used by the careful path."""
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, PathLike):
        return str(value.__fspath__())
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {safe_repr(value.args[0] if value.args else '', 500)}"
    return safe_repr(value)


def _sanitize(value: Any, depth: int, path: tuple[int, ...]) -> Any:
    """A JSON-safe copy: cycles and excess depth become markers, odd keys become strings."""
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is float:
        return value
    if isinstance(value, int) and not isinstance(value, Enum):
        return value if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if depth >= MAX_NESTING:
        return "<max depth>"
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        ident = id(value)
        if ident in path:
            return "<cycle>"
        inner = (*path, ident)
        if isinstance(value, Mapping):
            try:
                items = list(value.items())
            except Exception:  # noqa: BLE001
                return safe_repr(value)
            return {_key(k): _sanitize(v, depth + 1, inner) for k, v in items}
        return [_sanitize(v, depth + 1, inner) for v in value]
    try:
        return _sanitize(json_default(value), depth + 1, path)
    except Exception:  # noqa: BLE001
        return f"<unrepresentable {type(value).__name__}>"


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key.encode("utf-8", "replace").decode("utf-8")
    return safe_repr(key) if not isinstance(key, (int, float, bool)) and key is not None else str(key)


def render(record: Mapping[str, Any]) -> bytes:
    """One line, newline included."""
    try:
        return orjson.dumps(record, default=json_default, option=_OPT)
    except Exception:  # noqa: BLE001 - cycles, big ints, odd keys, surrogates, raising __str__
        return orjson.dumps(_sanitize(record, 0, ()), option=_OPT)


def fit_line(record: dict[str, Any], line: bytes, limit: int) -> bytes:
    """Cut the largest values until the line fits in ``limit`` bytes; list them under ``truncated``."""
    record = _sanitize(record, 0, ())
    truncated: list[str] = list(record.get(FIELD_TRUNCATED) or [])
    for _ in range(64):
        excess = len(line) - limit
        if excess <= 0:
            return line
        sizes = [
            (len(orjson.dumps(value)), key) for key, value in record.items() if key not in _PROTECTED
        ]
        if not sizes:
            break
        _, key = max(sizes)
        value = record[key]
        text = value if isinstance(value, str) else orjson.dumps(value).decode("utf-8")
        raw = text.encode("utf-8")
        marker_room = 48
        keep = max(0, min(len(raw) - excess - marker_room, len(raw) // 2))
        record[key] = raw[:keep].decode("utf-8", "ignore") + f"...[truncated {len(raw) - keep} bytes]"
        if key not in truncated:
            truncated.append(key)
        record[FIELD_TRUNCATED] = truncated
        line = orjson.dumps(record, option=_OPT)
    # Only protected fields left and still too long: keep the essentials.
    essential_keys = (FIELD_TIMESTAMP, FIELD_METRIC_TYPE, FIELD_OPERATION, FIELD_MODULE)
    essentials = {k: record[k] for k in essential_keys if k in record}
    essentials[FIELD_TRUNCATED] = ["*"]
    return orjson.dumps(_clip_strings(essentials, limit // 8), option=_OPT)


def _clip_strings(record: dict[str, Any], room: int) -> dict[str, Any]:
    return {k: (v[:room] if isinstance(v, str) else v) for k, v in record.items()}
