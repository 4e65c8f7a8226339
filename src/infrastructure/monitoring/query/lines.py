"""Read records line by line: for listings (``LogParser.records``) and to say where a damaged line is.

Aggregation is DuckDB's (``duck.py``); this reader serves what needs the records
themselves — traces, sessions, profiles, searches — and, when a scan found lines that
are not whole records, tells which line of which file each one is and why:
``corrupt`` (not JSON, or a line merged with a torn one), ``not a record`` (JSON
without a numeric ``timestamp``), ``torn`` (an incomplete last line a dead writer
left), ``damaged archive`` (a compressed file that ends early). Memory holds one chunk
of lines at a time, never the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from .files import Segment, read_segment
from .spec import Condition, as_number

__all__ = ["SkipReport", "SkippedLine", "read_records", "skip_torn"]

_SAMPLE_LIMIT: Final = 100
_INF, _NEG_INF = math.inf, -math.inf
_INFINITE: Final = (_INF, _NEG_INF)
_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


@dataclass(frozen=True, slots=True)
class SkippedLine:
    file: str
    line: int | None
    """1-based line number in the file (``None`` inside a compressed file read from the middle)."""
    offset: int
    reason: str
    excerpt: str


@dataclass
class SkipReport:
    """Every line a query could not use, counted; the first 100 listed."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    samples: list[SkippedLine] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, segment: Segment, line_no: int | None, offset: int, reason: str, line: bytes) -> None:
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.samples) < _SAMPLE_LIMIT:
            number = line_no
            if segment.first_line is None or number is None:
                number = _line_number(segment, offset)
            self.samples.append(SkippedLine(str(segment.file.path), number, offset, reason,
                                            line[:120].decode("utf-8", "replace")))

    def merge(self, other: SkipReport) -> None:
        self.count += other.count
        for reason, n in other.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + n
        self.samples.extend(other.samples[: max(0, _SAMPLE_LIMIT - len(self.samples))])

    def summary(self) -> str:
        if not self.count:
            return "no line skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.by_reason.items()))
        first = self.samples[0] if self.samples else None
        where = f"; first at {first.file}:{first.line or '?'} ({first.reason})" if first else ""
        return f"{self.count} lines skipped ({parts}){where}"


def read_records(segment: Segment, skipped: SkipReport | None, *,  # noqa: PLR0912 - the line loop, flat on purpose
                 since: float | None = None, until: float | None = None,
                 conditions: tuple[Condition, ...] = (), ends: bool = True,
                 match: Callable[[bytes], bool] | None = None) -> Iterator[list[dict[str, Any]]]:
    """The records of ``segment`` in ``[since, until)`` matching every condition, one chunk's worth
    (a list) at a time; every line that is not a whole record goes to ``skipped``, and with ``ends``
    also a torn last line and a compressed file that ends early. ``match`` screens the raw lines
    first (a search): a line it refuses is neither parsed nor examined.

    With ``skipped=None`` nobody counts the damaged lines, so a line that lacks a literal the
    conditions need is not even parsed. Counted, every line is parsed: only parsing tells a damaged
    line from a whole record, and the count must be DuckDB's, which reads every line."""
    tests = [c.test for c in conditions]
    tokens = _required_tokens(conditions) if skipped is None else []
    if skipped is None:
        skipped = SkipReport()
    lo = _NEG_INF if since is None else since
    hi = _INF if until is None else until
    line_no = (segment.first_line or 1) - 1
    chunk_start = segment.start
    for chunk in read_segment(segment):
        lines = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        found: list[dict[str, Any]] = []
        for i, line in enumerate(lines):  # the inner loop of every small question: plain loops, no generators
            if match is not None and not match(line):
                continue
            if tokens:
                missing = False
                for token in tokens:
                    if token not in line:
                        missing = True
                        break
                if missing and b"\\u" not in line:
                    continue  # cannot match (no escape can hide the literal): not worth parsing
            try:
                record = _loads(line)
            except _JSONError as exc:
                record = _lenient(line, exc)  # NaN, Infinity, 1e400: DuckDB reads them, so do we
                if record is None:
                    if line.strip():  # a blank line holds no record: nothing lost, nothing to report (as DuckDB)
                        skipped.add(segment, line_no + i + 1, _offset(chunk_start, lines, i), "corrupt", line)
                    continue
            if record.__class__ is not dict:
                skipped.add(segment, line_no + i + 1, _offset(chunk_start, lines, i), "not a record", line)
                continue
            ts = record.get("timestamp")
            if ts.__class__ is not float or ts != ts or ts in _INFINITE:
                ts = as_number(ts)
                if ts is None or not math.isfinite(ts):
                    skipped.add(segment, line_no + i + 1, _offset(chunk_start, lines, i), "not a record", line)
                    continue
            if lo <= ts < hi:
                for test in tests:
                    if not test(record):
                        break
                else:
                    found.append(record)
        yield found
        line_no += len(lines)
        chunk_start += len(chunk)
    if ends:
        skip_torn(segment, skipped, line_no + 1)
        if segment.damaged:
            skipped.add(segment, None, segment.end, "damaged archive", b"")


def _lenient(line: bytes, error: orjson.JSONDecodeError) -> Any:
    """The line as Python's ``json`` reads it when strict JSON failed only on a number DuckDB reads
    too (``NaN``, ``Infinity``, ``1e400``); ``None`` for anything else (garbage, a lone surrogate)."""
    at = line[error.pos:error.pos + 4]
    if not (at.startswith((b"NaN", b"Inf", b"-Inf")) or str(error).startswith("number is infinity")):
        return None
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def skip_torn(segment: Segment, skipped: SkipReport, line_no: int | None = None) -> None:
    """Report the partial last line a dead writer left in ``segment``, if any."""
    if segment.torn:
        tail = os.pread(segment.handle.fileno(), min(segment.torn, 200), segment.end)
        skipped.add(segment, line_no, segment.end, "torn", tail)


def _required_tokens(conditions: tuple[Condition, ...]) -> list[bytes]:
    """Literals that must appear in a line for it to possibly match (a cheap pre-filter): ``"text"``
    for ``field=text``, unless a value that is not a string could read as that text (``=`` with text
    compares ``as_text``: ``404``, ``true``, ``null`` (NaN), ``[1]`` match ``"404"``, ``"true"`` …)."""
    tokens = []
    for c in conditions:
        if c.op != "=" or not isinstance(c.value, str) or _may_be_json_text(c.value):
            continue
        if c.value.isascii() and c.value.isprintable() and not (set(c.value) & {'"', "\\", "/"}):
            tokens.append(b'"' + c.value.encode() + b'"')
    return tokens


def _may_be_json_text(text: str) -> bool:
    """Could ``as_text`` of a number, a boolean, null or a nested value be ``text``?"""
    if text in ("true", "false", "null") or text.startswith(("[", "{")):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _offset(chunk_start: int, lines: list[bytes], index: int) -> int:
    """Byte offset of ``lines[index]`` (computed only for a line being reported)."""
    return chunk_start + sum(len(line) + 1 for line in lines[:index])


def _line_number(segment: Segment, offset: int) -> int | None:
    """Count the lines before ``offset`` (only for a reported line, after a seek)."""
    if segment.file.gz:
        return None
    fd = segment.handle.fileno()
    count, pos = 0, 0
    while pos < offset:
        data = os.pread(fd, min(1 << 22, offset - pos), pos)
        if not data:
            break
        count += data.count(b"\n")
        pos += len(data)
    return count + 1
