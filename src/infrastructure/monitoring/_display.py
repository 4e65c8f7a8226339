"""How the command line shows things: tables that fit the terminal, numbers that read well.

A table never gets wider than the terminal (``COLUMNS`` when the output is piped): a
number is never split across lines, a header breaks only between words, a long text
value (``claude-3-5-sonnet-20241022``) is shown whole when there is room and shortened
with ``…`` when there is not. When even that does not fit, the last columns move to a
second table that repeats the row keys, so nothing is dropped. Columns come in order
of importance: keys first, then what people look at first.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from ._parsers import format_size

__all__ = [
    "Column", "cell", "header", "render_table", "sparkline", "terminal_width", "when",
]

_FIELD_LABELS: Final = {
    "response_time": "latency s", "time_to_first_token": "ttft s", "duration": "dur s",
    "prompt_tokens": "prompt tok", "completion_tokens": "compl tok", "total_tokens": "tokens",
    "input_tokens": "input tok", "cpu_percent": "cpu %", "memory_percent": "mem %", "process_rss_bytes": "rss",
    "cost": "cost",
}
_AGG_LABELS: Final = {"count": "count", "errors": "errors", "error_rate": "error %", "rate": "per s",
                      "size_bytes": "size", "added_bytes": "added"}
_MIN_TEXT: Final = 10
"""A shortened text column keeps at least this many characters (``claude-3-…``)."""
_BARS: Final = "▁▂▃▄▅▆▇█"


def terminal_width(stream: TextIO | None = None) -> int:
    """Columns available: ``COLUMNS`` when set (also when piped), else the terminal's, else 100."""
    given = os.environ.get("COLUMNS", "")
    if given.isdigit() and int(given) >= 20:
        return int(given)
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return max(20, os.get_terminal_size(stream.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        pass
    return max(20, shutil.get_terminal_size((100, 24)).columns)


def header(column: str) -> str:
    """A short column title: ``p95_response_time`` -> ``p95 latency s``, ``sum_total_tokens`` -> ``tokens``."""
    if column in _AGG_LABELS:
        return _AGG_LABELS[column]
    kind, _, field = column.partition("_")
    if field and (kind in ("avg", "min", "max", "sum", "latest") or (kind[:1] == "p" and kind[1:2].isdigit())):
        label = _FIELD_LABELS.get(field, field)
        return label if kind == "sum" else f"{kind} {label}"
    return column


def cell(name: str, value: Any) -> str:
    """A value as a table shows it: ``366,051``, ``2.94%``, ``36.4 MiB``, ``0.6889``, ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if name.endswith("error_rate") or name in ("measured", "budget_left"):
            return f"{value:.2%}"
        if "bytes" in name or name.endswith("_size"):
            return format_size(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return format_size(value) if ("bytes" in name or name.endswith("_size")) else f"{value:,}"
    if isinstance(value, (list, dict)):
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return str(value)


def when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or isinstance(epoch, bool):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def sparkline(values: Sequence[float | None]) -> str:
    """``▁▂▅█▃``: one character per value, scaled between the series' own minimum and maximum;
    a gap (no data) is a space."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return " " * len(values)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif span <= 0:
            out.append(_BARS[len(_BARS) // 2] if high else _BARS[0])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1) + 0.5))])
    return "".join(out)


@dataclass(frozen=True)
class Column:
    """One column: ``key`` columns name a row and repeat in a continuation table."""

    name: str
    title: str
    key: bool = False
    numeric: bool = False


def _columns(names: Iterable[str], rows: list[dict[str, Any]], keys: Iterable[str]) -> list[Column]:
    keyset = set(keys)
    out = []
    for name in names:
        numeric = any(isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool) for r in rows)
        out.append(Column(name, header(name), name in keyset, numeric and name not in keyset))
    return out


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _layout(columns: list[Column], cells: dict[str, list[str]], width: int) -> list[list[tuple[Column, int]]]:
    """Split ``columns`` into tables that each fit ``width``: ``(column, its width)`` per table.

    A column is as wide as its widest cell (numbers, never less) and its longest header
    word; a text column may shrink to ``_MIN_TEXT`` (values shortened with ``…``). Each
    table costs 2 characters per column beyond the first for the gaps."""
    def natural(c: Column) -> int:
        longest_word = max((len(w) for w in c.title.split()), default=1)
        return max([longest_word, *(len(v) for v in cells[c.name])])

    def roomy(c: Column) -> int:
        return max([len(c.title), *(len(v) for v in cells[c.name])])

    def shrunk(c: Column) -> int:
        if c.numeric or c.name == "trend":  # numbers and sparklines are never cut
            return natural(c)
        return min(natural(c), max(_MIN_TEXT, *(len(w) for w in c.title.split())))

    keys = [c for c in columns if c.key]
    rest = [c for c in columns if not c.key]

    def pack(size: Any) -> list[list[Column]]:
        packed: list[list[Column]] = []
        current = list(keys)
        for c in rest:
            trial = [*current, c]
            if current != keys and sum(size(x) for x in trial) + 2 * (len(trial) - 1) > width:
                packed.append(current)
                current = [*keys, c]
            else:
                current = trial
        packed.append(current)
        return packed

    # whole values when that takes no more tables than shortened ones would
    tables = pack(shrunk)
    whole = pack(natural)
    if len(whole) <= len(tables):
        tables = whole
    if len(tables) == 1 and sum(roomy(c) for c in columns) + 2 * (len(columns) - 1) <= width:
        return [[(c, roomy(c)) for c in columns]]  # room for every header on one line
    out = []
    for table in tables:
        widths = {c.name: natural(c) for c in table}
        total = sum(widths.values()) + 2 * (len(table) - 1)
        # too wide: shorten the text columns, widest first, down to their minimum
        for c in sorted((c for c in table if not c.numeric and c.name != "trend"), key=lambda c: -widths[c.name]):
            if total <= width:
                break
            cut = min(total - width, widths[c.name] - shrunk(c))
            widths[c.name] -= cut
            total -= cut
        out.append([(c, widths[c.name]) for c in table])
    return out


def _title_lines(title: str, width: int) -> list[str]:
    """The header wrapped between words into ``width`` (never inside a word)."""
    lines: list[str] = []
    for word in title.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def render_table(title: str | None, names: Sequence[str], rows: list[dict[str, Any]], *, keys: Iterable[str] = (),
                 width: int | None = None, caption: str | None = None) -> str:
    """Plain text: ``title``, a header underlined with ``─``, the rows; split in several tables
    when the columns do not fit ``width``; ``caption`` on one line below (shortened to fit)."""
    width = width or terminal_width()
    columns = _columns(names, rows, keys)
    if not any(c.key for c in columns) and columns:  # the first column names the row
        columns[0] = Column(columns[0].name, columns[0].title, True, False)
    cells = {c.name: [cell(c.name, r.get(c.name)) for r in rows] for c in columns}
    out: list[str] = []
    layouts = _layout(columns, cells, width)
    for n, layout in enumerate(layouts):
        if title:
            suffix = "" if len(layouts) == 1 else f" ({n + 1}/{len(layouts)})"
            out.append(_shorten(title + suffix, width))
        titles = [_title_lines(c.title, w) for c, w in layout]
        depth = max(len(t) for t in titles)
        for i in range(depth):
            parts = []
            for (c, w), lines in zip(layout, titles, strict=True):
                text = lines[i - (depth - len(lines))] if i >= depth - len(lines) else ""
                parts.append(text.rjust(w) if c.numeric else text.ljust(w))
            out.append("  ".join(parts).rstrip())
        out.append("  ".join("─" * w for _, w in layout))
        for r in range(len(rows)):
            parts = []
            for c, w in layout:
                value = cells[c.name][r]
                parts.append(value.rjust(w) if c.numeric else _shorten(value, w).ljust(w))
            out.append("  ".join(parts).rstrip())
        if n < len(layouts) - 1:
            out.append("")
    if caption:
        out.append(_shorten(caption, width))
    return "\n".join(out)
