"""What a query asks for, parsed from Python values or from command-line strings.

Filters: ``Condition(field, op, value)`` with ``op`` one of ``= != < <= > >= in ~``.
Values compare as JSON values: ``success=false`` matches the boolean, ``model=gpt-4``
the string, ``prompt_tokens>100`` numbers only (a string never compares as a number);
``error~time.?out`` searches the value's text with a regular expression, which both engines
read alike (``_regex.py``; the subset is in docs/search.md).

Aggregates, named as they appear in result rows:

=================  ===================  ==============================================
spec               row key              meaning
=================  ===================  ==============================================
``count``          ``count``            matching records
``sum:F``          ``sum_F``            sum of the numeric values of ``F``
``avg:F``          ``avg_F``            their mean
``min:F``/``max:F`` ``min_F``/``max_F``
``pNN:F``          ``pNN_F``            percentile (``p95``, ``p99.9`` -> ``p99_9_F``)
``error_rate``     ``error_rate``       records with ``success`` false / records with ``success``
``errors``         ``errors``           records with ``success`` false
``rate``           ``rate``             records per second of the window (or bucket)
``latest:F``       ``latest_F``         the value of ``F`` in the newest record
``count_if:F=V``   ``count_F_V``        records matching a filter (any filter syntax)
=================  ===================  ==============================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from .._parsers import parse_duration
from ..errors import QueryError
from ._regex import compile_regex

__all__ = [
    "Aggregate", "Condition", "QueryError", "as_bool", "as_number", "as_text",
    "parse_agg", "parse_bucket", "parse_time", "parse_where",
]

OPS: Final = ("=", "!=", "<", "<=", ">", ">=", "in", "~")
_WHERE_RE: Final = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(==|!=|<=|>=|=|<|>|~|\s+in\s+)\s*(.*?)\s*$", re.DOTALL)
_PCT_RE: Final = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_OP_WORDS: Final = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "in": "in",
                     "~": "matches"}
_KINDS: Final = ("count", "sum", "avg", "min", "max", "error_rate", "errors", "rate", "latest")


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any
    regex: re.Pattern[str] | None = _field(default=None, init=False, repr=False, compare=False)
    """``~``: the pattern as ``re`` runs it, with RE2's meaning (what DuckDB runs)."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise QueryError(f"unknown operator {self.op!r}; use one of {', '.join(OPS)}")
        if self.op == "in" and not isinstance(self.value, (list, tuple, set, frozenset)):
            raise QueryError(f"'in' needs a list of values, got {self.value!r}")
        if self.op == "~":
            if not isinstance(self.value, str):
                raise QueryError(f"'~' needs a regular expression (text), got {self.value!r}")
            object.__setattr__(self, "regex", compile_regex(self.value))  # raises QueryError for a bad one

    def test(self, record: dict[str, Any]) -> bool:
        value = record.get(self.field)
        op = self.op
        if op == "=":
            return _equal(value, self.value)
        if op == "!=":
            return not _equal(value, self.value)
        if op == "in":
            return any(_equal(value, w) for w in self.value)
        if op == "~":
            text = as_text(value)
            return text is not None and self.regex.search(text) is not None  # type: ignore[union-attr]
        number = as_number(value)
        if number is None:
            return False
        if op == "<":
            return bool(number < self.value)
        if op == "<=":
            return bool(number <= self.value)
        if op == ">":
            return bool(number > self.value)
        return bool(number >= self.value)

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value!r}" if self.op != "in" else f"{self.field} in {list(self.value)!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Values are read the way DuckDB's ``read_json`` reads a column of the named type (its JSON
# transform, ``from_json``), so the engines agree on every line: a number field accepts numbers,
# booleans (1/0) and numeric strings (ASCII, spaces around allowed); a boolean field accepts
# booleans, numbers (non-zero is true) and, in any case but with no space around, the words
# below; a text field shows a string as itself and anything else as its JSON text.

_TRUE_WORDS: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS: Final = frozenset({"false", "f", "no", "n", "0"})


def as_number(value: Any) -> float | None:
    cls = value.__class__
    if cls is float or cls is int:
        return value  # type: ignore[no-any-return]
    if cls is bool:
        return 1.0 if value else 0.0
    if cls is str:
        if not value.isascii():  # float() reads other scripts' digits; DuckDB does not
            return None
        try:
            return float(value)
        except ValueError:
            pass
        text = value.strip()
        if text.startswith("+-"):  # DuckDB takes one '+' before the signed number: '+-1' is -1
            try:
                return float(text[1:])
            except ValueError:
                return None
        return None
    return None


def as_bool(value: Any) -> bool | None:
    if value is True or value is False:
        return bool(value)
    cls = value.__class__
    if cls is str:
        word = value.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        return None
    if cls is int or cls is float:
        return bool(value)
    return None


def as_text(value: Any) -> str | None:
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    return orjson.dumps(value).decode()  # keys as written, as DuckDB shows a JSON object


def _equal(value: Any, want: Any) -> bool:
    if want is None:
        return value is None
    if want is True or want is False:
        return as_bool(value) is want
    if want.__class__ is str:
        return as_text(value) == want
    return bool(as_number(value) == want)


@dataclass(frozen=True, slots=True)
class Aggregate:
    kind: str
    field: str | None = None
    q: float | None = None
    """The percentile as a fraction (0.95) when ``kind == "percentile"``."""
    condition: Condition | None = None
    """What ``count_if`` counts."""

    @property
    def name(self) -> str:
        if self.kind == "count_if" and self.condition is not None:
            c = self.condition
            value = ",".join(map(_label, c.value)) if c.op == "in" else _label(c.value)
            label = f"{c.field}_{_OP_WORDS[c.op]}_{value}" if c.op != "=" else f"{c.field}_{value}"
            return "count_" + re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
        if self.kind == "percentile":
            assert self.q is not None
            label = f"{self.q * 100:.6g}".replace(".", "_")
            return f"p{label}_{self.field}"
        return self.kind if self.field is None else f"{self.kind}_{self.field}"


def _label(value: Any) -> str:
    """A value as it appears in an aggregate's name: JSON words, numbers without trailing zeros."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_agg(spec: str | Aggregate) -> Aggregate:
    """``count``, ``sum:total_tokens``, ``p95:response_time``, ``error_rate`` …"""
    if isinstance(spec, Aggregate):
        return spec
    text = spec.strip()
    kind, _, field = text.partition(":")
    kind, field = kind.strip().lower(), field.strip()
    match = _PCT_RE.match(kind)
    if match:
        if not field:
            raise QueryError(f"aggregate {spec!r} needs a field: {kind}:FIELD")
        q = float(match.group(1)) / 100
        if not 0 <= q <= 1:
            raise QueryError(f"percentile {kind!r} must be between p0 and p100")
        return Aggregate("percentile", field, q)
    if kind == "count_if":
        if not field:
            raise QueryError(f"aggregate {spec!r} needs a condition: count_if:FIELD=VALUE")
        return Aggregate("count_if", condition=parse_where(field))
    if kind in ("count", "error_rate", "errors", "rate"):
        if field:
            raise QueryError(f"aggregate {kind!r} takes no field (got {spec!r})")
        return Aggregate(kind)
    if kind in ("sum", "avg", "min", "max", "latest"):
        if not field:
            raise QueryError(f"aggregate {spec!r} needs a field: {kind}:FIELD")
        return Aggregate(kind, field)
    raise QueryError(f"unknown aggregate {spec!r}; use count, sum:F, avg:F, min:F, max:F, pNN:F (p50, p95, p99.9), "
                     "error_rate, errors, rate, latest:F or count_if:F=V")


def parse_value(text: str) -> Any:
    """``false`` -> False, ``12`` -> 12, ``2.5`` -> 2.5, ``null`` -> None, ``"x"`` or ``x`` -> 'x'."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def parse_where(spec: str | Condition) -> Condition:
    """``success=false`` (or ``==``), ``model!=gpt-4``, ``prompt_tokens>100``, ``model in gpt-4,gpt-4o``,
    ``error~time.?out`` (a regular expression: the text after ``~``, surrounding quotes removed)."""
    if isinstance(spec, Condition):
        return spec
    match = _WHERE_RE.match(spec)
    if not match:
        raise QueryError(f"cannot read filter {spec!r}; use FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>N, "
                         "FIELD<=N, FIELD>=N, 'FIELD in A,B' or FIELD~REGEX")
    field, op, raw = match.group(1), match.group(2).strip(), match.group(3)
    if op == "==":  # the way most languages spell equality: the same test
        op = "="
    if op == "in":
        return Condition(field, "in", tuple(parse_value(v) for v in raw.split(",")))
    if op == "~":  # a pattern is text, never a number or a word such as null
        quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'"
        return Condition(field, "~", raw[1:-1] if quoted else raw)
    value = parse_value(raw)
    if op in ("<", "<=", ">", ">=") and not _is_number(value):
        raise QueryError(f"filter {spec!r} compares with {raw!r}, which is not a number")
    return Condition(field, op, value)


def parse_time(value: str | float | int | datetime | None) -> float | None:
    """Epoch seconds from epoch seconds, an ISO 8601 string (naive means UTC) or a datetime."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        raise QueryError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"cannot read time {value!r}; use epoch seconds or ISO 8601 "
                         "such as 2024-01-31T12:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_span(value: str | float | int) -> float:
    """``1h``, ``15m``, ``7d``, ``90`` (seconds) -> seconds > 0."""
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise QueryError(str(exc)) from None
    if seconds <= 0:
        raise QueryError(f"a time span must be positive, got {value!r}")
    return seconds


def parse_bucket(value: str | float | int | None) -> float | None:
    """``1m``, ``5m``, ``1h``, ``1d`` -> bucket width in seconds."""
    return None if value is None else parse_span(value)
