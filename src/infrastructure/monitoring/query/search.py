"""Find records by regular expression, across rotated and compressed files (``monitoring grep``).

    from infrastructure.monitoring.query import LogParser
    from infrastructure.monitoring.query.search import search

    for record in search(LogParser("logs"), r"rate.?limit", last="1h"):
        print(record["module"], record["operation"])

Without ``field`` the pattern is matched against each line as it is written: compact JSON
(``"model":"gpt-4o"``, no spaces), a quote inside a value written ``\\"`` and a newline ``\\n``.
That is grep over the files, except that backups and ``.gz`` archives are read in order, the
time window is honoured and a match is always a whole record. With ``field`` it is matched
against that field's own text (a number or a boolean as its JSON text): the same test as
``--where 'field~pattern'`` in queries. Patterns are the subset both query engines read alike
(``_regex.py``, docs/search.md); anything else is refused with a ``QueryError``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from ._regex import compile_regex
from .engine import LogParser
from .lines import SkipReport
from .spec import Condition, QueryError, as_number

__all__ = ["search"]


def search(
    parser: LogParser,
    pattern: str,
    *,
    module: str | Sequence[str] | None = None,
    field: str | None = None,
    where: Iterable[str | Condition] | Mapping[str, Any] = (),
    since: str | float | datetime | None = None,
    until: str | float | datetime | None = None,
    last: str | float | None = None,
    ignore_case: bool = False,
    limit: int | None = None,
    skipped: SkipReport | None = None,
) -> Iterator[dict[str, Any]]:
    """The records whose line (or ``field``) matches ``pattern``, oldest first (the families
    merged by time), streamed; with ``limit``, only the newest ``limit`` of them (still oldest
    first, as ``tail`` prints).

    Everything is checked before the first file is opened: a bad pattern, filter, window or
    module raises ``QueryError`` here, not halfway through the output.
    """
    if limit is not None and limit < 1:
        raise QueryError(f"limit must be at least 1, got {limit!r}", params=("limit",))
    regex = ("(?i)" if ignore_case else "") + pattern
    match: Callable[[bytes], bool] | None = None
    in_field: list[Condition] = []
    if field is not None:
        in_field.append(Condition(field, "~", regex))
    else:
        finder = compile_regex(regex).search  # checked and rewritten as a field's pattern is

        def match(line: bytes) -> bool:
            return finder(line.decode("utf-8", "replace")) is not None

    plan = parser.plan(where=where, since=since, until=until, last=last)  # the filters read, the window fixed once
    conditions = [*plan.conditions, *in_field]
    streams = [parser.records(m, where=conditions, since=plan.since, until=plan.until, skipped=skipped, match=match)
               for m in parser._modules(module)]
    found = heapq.merge(*streams, key=_time) if len(streams) > 1 else iter(streams[0] if streams else ())
    return iter(deque(found, maxlen=limit)) if limit is not None else found


def _time(record: dict[str, Any]) -> float:
    # read_records keeps only records whose timestamp reads as a finite number, as DuckDB reads it
    return float(as_number(record["timestamp"]) or 0.0)
