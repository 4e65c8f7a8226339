"""The small-question engine: a plan's figures computed in Python, for a few megabytes.

Starting DuckDB costs about 180 ms in a fresh process (import and first connection); a
question about the last hour reads a few kilobytes after the bisection and is answered
here in a few milliseconds. Both engines compute the same ``Figure``s of the same plan
(``plan.py`` defines every aggregate once, from figures), read values the same way
(``spec.as_number``/``as_bool``/``as_text`` follow DuckDB's conversions), fold the same
groups into ``__other__`` (most records first, ties by key) and interpolate percentiles
by the same formula over every value, so they give the same answer; only the last bit
of a floating-point sum may differ, since no two engines add in the same order.
Memory holds one chunk of lines, the groups, and the values of fields asked for
percentiles (8 bytes each).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

from .files import Segment
from .lines import SkipReport, read_records
from .plan import OTHER, Figure, QueryPlan, suspicious_fields
from .spec import as_bool, as_number, as_text

__all__ = ["PyScan", "quantile"]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else as_text(value)


def quantile(ordered: Any, q: float) -> float:
    """Linear interpolation between the two closest ranks (DuckDB's ``quantile_cont``)."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = math.ceil(h)
    low = ordered[lo]
    return float(low + (h - lo) * (ordered[hi] - low))


class _Group:
    """The running figures of one group: a few numbers per field asked for, never the records."""

    __slots__ = ("cond", "count", "errors", "first", "judged", "last", "latest", "num", "quant")

    def __init__(self, plan: QueryPlan, conditions: int) -> None:
        self.count = 0
        self.first = math.inf
        self.last = -math.inf
        self.errors = 0
        self.judged = 0
        self.num: dict[str, list[float]] = {}
        self.quant: dict[str, array[float]] = {}
        self.latest: dict[str, tuple[float, str | None]] = {}
        self.cond = [0] * conditions
        for f in plan.figures:
            if f.kind in ("n", "sum", "min", "max"):
                self.num.setdefault(str(f.field), [0, 0.0, math.inf, -math.inf])
            elif f.kind == "quantiles":
                self.quant[str(f.field)] = array("d")
            elif f.kind == "latest":
                self.latest[str(f.field)] = (-math.inf, None)

    def add(self, record: dict[str, Any], ts: float,  # noqa: PLR0912 - flat on purpose
            tests: list[Callable[[dict[str, Any]], bool]]) -> None:
        # the inner loop of every small question: comparisons inline, conversions only when needed
        self.count += 1
        if ts < self.first:  # noqa: PLR1730 - min() costs a call per record
            self.first = ts
        if ts > self.last:  # noqa: PLR1730
            self.last = ts
        success = record.get("success")
        if success is not True and success is not False:
            success = as_bool(success)
        if success is not None:
            self.judged += 1
            if success is False:
                self.errors += 1
        for name, acc in self.num.items():
            value = record.get(name)
            if value.__class__ is not float:  # an int too: DuckDB reads the field as DOUBLE, so 2**60 + 1 is 2**60
                value = as_number(value)
                if value is None:
                    continue
                value = float(value)
            acc[0] += 1
            acc[1] += value
            if value < acc[2]:  # noqa: PLR1730
                acc[2] = value
            if value > acc[3]:  # noqa: PLR1730
                acc[3] = value
        for name, values in self.quant.items():
            value = record.get(name)
            if value.__class__ is not float and value.__class__ is not int:
                value = as_number(value)
                if value is None:
                    continue
            values.append(value)
        if self.latest:
            self._latest(record, ts)
        if tests:
            for i, test in enumerate(tests):
                if test(record):
                    self.cond[i] += 1

    def _latest(self, record: dict[str, Any], ts: float) -> None:
        for name, (seen, _) in self.latest.items():
            text = as_text(record.get(name))
            if text is not None and ts >= seen:
                self.latest[name] = (ts, text)

    def merge(self, other: _Group) -> None:
        """Fold ``other`` in (a group beyond ``max_groups`` joining ``__other__``)."""
        self.count += other.count
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.errors += other.errors
        self.judged += other.judged
        for name, acc in self.num.items():
            theirs = other.num[name]
            acc[0] += theirs[0]
            acc[1] += theirs[1]
            acc[2] = min(acc[2], theirs[2])
            acc[3] = max(acc[3], theirs[3])
        for name, values in self.quant.items():
            values.extend(other.quant[name])
        for name, (seen, text) in other.latest.items():
            if text is not None and seen >= self.latest[name][0]:
                self.latest[name] = (seen, text)
        self.cond = [a + b for a, b in zip(self.cond, other.cond, strict=True)]

    def figures(self, plan: QueryPlan, conditions: dict[Figure, int]) -> dict[Figure, Any]:
        out: dict[Figure, Any] = {}
        for f in plan.figures:
            kind, name = f.kind, str(f.field)
            if kind == "count":
                out[f] = self.count
            elif kind == "first":
                out[f] = self.first
            elif kind == "last":
                out[f] = self.last
            elif kind == "errors":
                out[f] = self.errors
            elif kind == "judged":
                out[f] = self.judged
            elif kind in ("n", "sum", "min", "max"):
                n, total, low, high = self.num[name]
                out[f] = int(n) if kind == "n" else None if not n else {"sum": total, "min": low, "max": high}[kind]
            elif kind == "quantiles":
                ordered = sorted(self.quant[name])
                out[f] = [quantile(ordered, q) for q in f.qs] if ordered else None
            elif kind == "latest":
                out[f] = self.latest[name][1]
            elif kind == "count_if":
                out[f] = self.cond[conditions[f]]
        return out


class PyScan:
    """Compute ``plan``'s figures over ``segments``, with the attributes ``DuckScan`` has."""

    def __init__(self, plan: QueryPlan, segments: list[Segment], skipped: SkipReport, *,
                 check_fields: bool = True) -> None:
        self.plan = plan
        self.segments = segments
        self.skipped = skipped
        self.check_fields = check_fields
        self.groups: dict[tuple[Any, ...], dict[Figure, Any]] = {}
        self.folded = 0
        self.matched = 0
        self.absent: list[str] = []
        self.scanned = 0

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        plan = self.plan
        count_ifs = [f for f in plan.figures if f.kind == "count_if" and f.condition is not None]
        cond_index = {f: i for i, f in enumerate(count_ifs)}
        cond_tests: list[Callable[[dict[str, Any]], bool]] = [f.condition.test for f in count_ifs
                                                              if f.condition is not None]
        keys, width = plan.keys, plan.width
        groups: dict[tuple[Any, ...], _Group] = {}
        total = sum(s.end - s.start for s in self.segments) or 1
        done = 0
        for segment in self.segments:
            for chunk in read_records(segment, self.skipped, since=plan.since, until=plan.until,
                                      conditions=plan.conditions):
                for record in chunk:
                    ts = record["timestamp"]
                    if ts.__class__ is not float:
                        ts = float(as_number(ts) or 0.0)
                    key: tuple[Any, ...] = tuple([_text(record.get(k)) for k in keys])
                    if width:
                        key = (*key, math.floor(ts / width) * width)
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = _Group(plan, len(cond_tests))
                    group.add(record, ts, cond_tests)
            done += segment.end - segment.start
            if progress is not None:
                progress(done / total)
        if len(groups) > plan.max_groups:
            groups = self._fold(groups)
        self.groups = {k: g.figures(plan, cond_index) for k, g in groups.items()}
        self.matched = sum(g.count for g in groups.values())
        suspects = suspicious_fields(plan, self.groups) if self.check_fields else []
        if suspects:
            self._presence(suspects)

    def _presence(self, fields: list[str]) -> None:
        """Which of ``fields`` occur in any record of the window (a second pass, made only when a
        field's figures all came out empty)."""
        seen: set[str] = set()
        scanned = 0
        for segment in self.segments:
            for chunk in read_records(segment, None, since=self.plan.since, until=self.plan.until):
                scanned += len(chunk)
                for record in chunk:
                    seen.update(f for f in fields if f in record)
        self.absent = [f for f in fields if f not in seen]
        self.scanned = scanned

    def _fold(self, groups: dict[tuple[Any, ...], _Group]) -> dict[tuple[Any, ...], _Group]:
        """The ``max_groups`` groups with most records (ties by key, absent values last, as DuckDB
        orders them) stay; every other folds into one ``__other__`` group."""
        def rank(item: tuple[tuple[Any, ...], _Group]) -> tuple[Any, ...]:
            key, group = item
            return (-group.count, *((v is None, "" if v is None else v) for v in key))

        ordered = sorted(groups.items(), key=rank)
        kept = dict(ordered[: self.plan.max_groups])
        self.folded = len(ordered) - len(kept)
        other: _Group | None = None
        for _, group in ordered[self.plan.max_groups:]:
            if other is None:
                other = group
            else:
                other.merge(group)
        if other is not None:
            kept[(OTHER,) * len(next(iter(groups)))] = other
        return kept
