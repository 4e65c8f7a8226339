"""Validators shared by the configuration sections: each takes ``(value, key, source)``
and returns the checked value or raises ``ConfigError`` naming the key, the value and
what would be valid."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._parsers import parse_duration, parse_size
from .errors import ConfigError

Validator = Callable[[Any, str, str], Any]

_COLLECTED: contextvars.ContextVar[list[ConfigError] | None] = contextvars.ContextVar("config_errors", default=None)


@contextlib.contextmanager
def collecting_errors() -> Iterator[list[ConfigError]]:
    """Inside, a bad key or value is added to the yielded list and skipped (its default kept)
    instead of raised, so ``monitoring validate-config`` can report every error at once."""
    found: list[ConfigError] = []
    token = _COLLECTED.set(found)
    try:
        yield found
    finally:
        _COLLECTED.reset(token)


def _refuse(error: ConfigError) -> None:
    collected = _COLLECTED.get()
    if collected is None:
        raise error
    if all(e.key != error.key for e in collected):  # a missing key after its bad value: said already
        collected.append(error)


def _bool(value: Any, key: str, src: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(key, value, "true or false", source=src)


def _positive_int(minimum: int) -> Validator:
    def check(value: Any, key: str, src: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise ConfigError(key, value, f"an integer >= {minimum}", source=src)

    return check


def _size(minimum: int) -> Validator:
    def check(value: Any, key: str, src: str) -> int:
        try:
            size = parse_size(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, value, f"a size in bytes or a string like '50 MB' ({exc})", source=src) from None
        if size < minimum:
            raise ConfigError(key, value, f"a size of at least {minimum} bytes (0 to disable)", source=src)
        return size

    return check


def _seconds(value: Any, key: str, src: str) -> float:
    try:
        return parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, value, f"seconds or a string like '30s', '1h' ({exc})", source=src) from None


def _number(minimum: float, *, strict_min: bool = False) -> Validator:
    def check(value: Any, key: str, src: str) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        if ok and (value > minimum if strict_min else value >= minimum):
            return float(value)
        relation = ">" if strict_min else ">="
        raise ConfigError(key, value, f"a number {relation} {minimum}", source=src)

    return check


def _optional(check: Validator) -> Validator:
    def optional(value: Any, key: str, src: str) -> Any:
        return None if value is None else check(value, key, src)

    return optional


def _str_list(value: Any, key: str, src: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(key, value, "a list of non-empty strings", source=src)


def _section(
    raw: Any, key: str, src: str, schema: Mapping[str, Validator]
) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "a mapping of " + ", ".join(sorted(schema)), source=src)
    out: dict[str, Any] = {}
    for name, value in raw.items():
        path = f"{key}.{name}" if key else str(name)
        check = schema.get(name) if isinstance(name, str) else None
        if check is None:
            _refuse(ConfigError.unknown_key(path, value, schema, source=src))
            continue
        try:
            out[name] = check(value, path, src)
        except ConfigError as exc:
            _refuse(exc)
    return out


def _text(value: Any, key: str, src: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    raise ConfigError(key, value, "a non-empty string", source=src)


def _share(value: Any, key: str, src: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ConfigError(key, value, "a number between 0 and 1", source=src)
