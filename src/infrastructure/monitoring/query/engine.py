"""``LogParser``: filter, group and aggregate records straight from the log files.

One pass over a snapshot of the chosen files (see ``files``), streaming: memory holds
one chunk of lines and one accumulator per group, never the records. Groups are capped
(``max_groups``): when a field has more distinct values than that, a first pass ranks
them by count with a bounded Space-Saving counter, and a second pass over the same
snapshot computes exact aggregates for the top ones and folds every other record into
one ``__other__`` row (``result.folded_groups`` says how many groups went there).

Lines that are not metric records are skipped and counted, with file and line number:
``corrupt`` (not JSON, or a line merged with a torn one), ``not a record`` (JSON
without a numeric ``timestamp``), ``torn`` (an incomplete last line a dead writer left).
A line that cannot match the query (it lacks a literal the filters require) is not
parsed at all; it is still checked for the shape of a whole record, so a damaged line
is reported whatever the query.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .duck import available as duck_available
from .files import FamilyFile, Segment, Snapshot, discover, read_segment
from .sketch import Quantiles
from .spec import (
    Aggregate,
    Condition,
    QueryError,
    as_bool,
    as_number,
    as_text,
    parse_agg,
    parse_bucket,
    parse_span,
    parse_time,
    parse_where,
)

__all__ = ["LogParser", "QueryResult", "SkippedLine", "SkipReport"]

_log = logging.getLogger("infrastructure.monitoring.query")

OTHER: Final = "__other__"
_SAMPLE_LIMIT: Final = 100
_FOLDED_LIMIT: Final = 100_000
_INF, _NEG_INF = math.inf, -math.inf
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

    def summary(self) -> str:
        if not self.count:
            return "no line skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.by_reason.items()))
        first = self.samples[0] if self.samples else None
        where = f"; first at {first.file}:{first.line or '?'} ({first.reason})" if first else ""
        return f"{self.count} lines skipped ({parts}){where}"


@dataclass
class QueryResult:
    """Plain rows plus what it took to get them."""

    rows: list[dict[str, Any]]
    group_by: list[str]
    aggregates: list[str]
    skipped: SkipReport
    files_read: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    records_matched: int = 0
    folded_groups: int = 0
    """Distinct groups folded into the ``__other__`` row (``max_groups`` was reached); counted
    exactly up to 100,000 by the Python engine (a lower bound beyond), always by DuckDB."""
    seconds: float = 0.0
    since: float | None = None
    until: float | None = None

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class _Group:
    """Accumulators of one group: a few numbers per requested field, never the records."""

    __slots__ = ("cond_counts", "cond_tests", "count", "errors", "first_ts", "judged", "last_ts", "latest", "num",
                 "quant")

    def __init__(self, num_fields: Sequence[str], quant_fields: Sequence[str], latest_fields: Sequence[str],
                 cond_tests: Sequence[Callable[[dict[str, Any]], bool]] = ()) -> None:
        self.cond_tests = cond_tests
        self.cond_counts = [0] * len(cond_tests)
        self.count = 0
        self.errors = 0
        self.judged = 0
        self.first_ts = math.inf
        self.last_ts = -math.inf
        # per numeric field: [n, total, min, max]
        self.num: dict[str, list[float]] = {f: [0, 0.0, math.inf, -math.inf] for f in num_fields}
        self.quant: dict[str, Quantiles] = {f: Quantiles() for f in quant_fields}
        self.latest: dict[str, tuple[float, Any]] = dict.fromkeys(latest_fields, (-math.inf, None))

    def add(self, record: dict[str, Any], ts: float) -> None:  # noqa: PLR0912 - one record, every field: inline
        self.count += 1
        if ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        success = record.get("success")
        if success is not True and success is not False and success is not None:
            success = as_bool(success)
        if success is True:
            self.judged += 1
        elif success is False:
            self.judged += 1
            self.errors += 1
        if self.num:
            for name, acc in self.num.items():
                value: Any = record.get(name)
                cls = value.__class__
                if cls is not float and cls is not int:
                    value = as_number(value)
                    if value is None:
                        continue
                acc[0] += 1
                acc[1] += value
                if value < acc[2]:
                    acc[2] = value
                if value > acc[3]:
                    acc[3] = value
        if self.quant:
            for name, quant in self.quant.items():
                value = record.get(name)
                cls = value.__class__
                if cls is not float and cls is not int:
                    value = as_number(value)
                    if value is None:
                        continue
                quant.add(value)
        if self.cond_tests:
            for i, test in enumerate(self.cond_tests):
                if test(record):
                    self.cond_counts[i] += 1
        if self.latest:
            for name, (seen, _) in self.latest.items():
                value = record.get(name)
                if value is not None and ts >= seen:
                    self.latest[name] = (ts, value)

    def quantile_values(self, name: str, qs: list[float]) -> list[float | None]:
        return self.quant[name].quantiles(qs)


class LogParser:
    """Answers questions from one log folder.

        parser = LogParser("logs")
        rows = parser.query("llm", operation="llm_call", last="1h", group_by="model",
                            aggs=["count", "error_rate", "p95:response_time", "sum:total_tokens"]).rows

    Every answer is computed from the files at the moment of the call.
    """

    duckdb_threshold: int = 16 << 20
    """Snapshots at least this large go to DuckDB under ``engine="auto"``."""

    def __init__(self, log_dir: str | os.PathLike[str], *, threads: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.log_dir = Path(log_dir)
        self.threads = threads or os.cpu_count() or 1
        self._clock = clock

    def families(self, module: str | None = None) -> dict[str, list[FamilyFile]]:
        """Module -> its files, oldest first (``llm`` -> ``llm_metrics.log.N`` … ``llm_metrics.log``)."""
        return discover(self.log_dir, module)

    def modules(self) -> list[str]:
        return list(self.families())

    # ------------------------------------------------------------------ the query

    def query(
        self,
        module: str | Sequence[str] | None = None,
        *,
        operation: str | Sequence[str] | None = None,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        group_by: str | Sequence[str] = (),
        bucket: str | float | None = None,
        aggs: Sequence[str | Aggregate] = ("count",),
        order_by: str | None = None,
        descending: bool = True,
        limit: int | None = None,
        max_groups: int = 10_000,
        progress: Callable[[int, int], None] | None = None,
        engine: str = "auto",
    ) -> QueryResult:
        """Filter, group, aggregate. Rows are dicts keyed by the group-by fields (plus
        ``bucket``, an ISO 8601 UTC string, when bucketed) and the aggregate names.

        Without ``order_by``, rows come sorted by their group keys (buckets in time order);
        ``limit`` keeps the first rows after ordering (top-N with ``order_by="count"``).

        ``engine``: ``"python"`` streams the lines through orjson; ``"duckdb"`` hands the
        scan to DuckDB (much faster on large files); ``"auto"`` (default) picks DuckDB for
        more than 16 MiB. Both give the same rows and the same skipped-line report.
        """
        if engine not in ("auto", "python", "duckdb"):
            raise QueryError(f"engine must be 'auto', 'python' or 'duckdb', not {engine!r}")
        started = time.perf_counter()
        conditions = _conditions(where)
        if operation is not None:
            ops = (operation,) if isinstance(operation, str) else tuple(operation)
            conditions.insert(0, Condition("operation", "=", ops[0]) if len(ops) == 1 else
                              Condition("operation", "in", ops))
        aggregates = [parse_agg(a) for a in aggs] or [Aggregate("count")]
        keys = [group_by] if isinstance(group_by, str) else list(group_by)
        width = parse_bucket(bucket)
        lo, hi = self._window(since, until, last)
        if max_groups < 1:
            raise QueryError(f"max_groups must be at least 1, got {max_groups}")
        names = [a.name for a in aggregates]
        if order_by is not None and order_by not in names and order_by not in keys and order_by != "bucket":
            raise QueryError(f"order_by {order_by!r} is neither a group-by field nor an aggregate ({', '.join(names)})")

        modules = self._modules(module)
        plan = _Plan(conditions, aggregates, keys, width, lo, hi)
        skipped = SkipReport()
        with Snapshot.open(self.log_dir, modules, lo, hi) as snap:
            use_duck = engine == "duckdb" or (engine == "auto" and snap.bytes >= self.duckdb_threshold)
            if use_duck and not snap.segments:
                use_duck = False  # nothing to read: no engine needed
            if use_duck and not duck_available():
                if engine == "duckdb":
                    raise QueryError("engine='duckdb' needs the duckdb package (pip install duckdb)")
                use_duck = False
            if use_duck:
                try:
                    rows, lines, matched, folded = self._duck(plan, snap, skipped, max_groups, progress, lo, hi)
                except Exception as exc:
                    if not _duck_refused(exc):
                        raise
                    # DuckDB gave up on an input (a damaged archive): the Python reader reads what is readable
                    _log.warning("DuckDB could not read the logs (%s); reading them line by line instead", exc)
                    skipped.count, skipped.by_reason, skipped.samples = 0, {}, []
                    rows, lines, matched, folded = self._python(plan, snap, skipped, max_groups, progress, lo, hi)
            else:
                rows, lines, matched, folded = self._python(plan, snap, skipped, max_groups, progress, lo, hi)
            result = QueryResult(rows, [*keys, *(["bucket"] if width else [])], names, skipped,
                                 files_read=len({s.file.path for s in snap.segments}), bytes_read=snap.bytes,
                                 lines_read=lines, records_matched=matched, folded_groups=folded,
                                 since=lo, until=hi)
        _order(result, order_by, descending, limit)
        result.seconds = time.perf_counter() - started
        return result

    @staticmethod
    def _python(plan: _Plan, snap: Snapshot, skipped: SkipReport, max_groups: int,
                progress: Callable[[int, int], None] | None, lo: float | None,
                hi: float | None) -> tuple[list[dict[str, Any]], int, int, int]:
        scan = _Scan(plan, skipped, max_groups, progress, snap.bytes)
        scan.run(snap.segments)
        folded = 0
        if scan.overflow:  # the top groups by count, exactly, in a second pass
            top = scan.top_keys(max_groups)
            again = _Scan(plan, SkipReport(), max_groups, progress, snap.bytes, keep=top)
            again.run(snap.segments)
            scan, folded = again, again.folded
        return scan.rows(lo, hi), scan.lines, scan.matched, folded

    def _duck(self, plan: _Plan, snap: Snapshot, skipped: SkipReport, max_groups: int,
              progress: Callable[[int, int], None] | None, lo: float | None,
              hi: float | None) -> tuple[list[dict[str, Any]], int, int, int]:
        from .duck import DuckScan
        from .verified import VerifiedFiles

        total = snap.bytes
        scan = DuckScan(plan, snap.segments, threads=self.threads, max_groups=max_groups,
                        verified=VerifiedFiles(self.log_dir))
        scan.run(None if progress is None else lambda share: progress(int(share * total), total))
        # where and why: the Python reader goes through the few inputs that held skipped lines
        checker = _Scan(_Plan([], [Aggregate("count")], [], None, math.inf, None), SkipReport(), 1, None, 0)
        for segment in scan.bad_inputs:
            checker._segment(dataclass_replace(segment, torn=0))
        found = checker.skipped
        for segment in snap.segments:
            if segment.torn:
                tail = os.pread(segment.handle.fileno(), min(segment.torn, 200), segment.end)
                checker._skip(segment, None, segment.end, "torn", tail)
        skipped.count = scan.bad + sum(1 for s in snap.segments if s.torn)
        skipped.by_reason = dict(found.by_reason)
        unexplained = skipped.count - found.count
        if unexplained > 0:
            skipped.by_reason["unreadable"] = skipped.by_reason.get("unreadable", 0) + unexplained
        skipped.samples = found.samples
        if progress is not None:
            progress(total, total)
        return build_rows(plan, scan.groups.items(), lo, hi), 0, scan.matched, scan.folded

    def _modules(self, module: str | Sequence[str] | None) -> list[str]:
        families = self.families()
        if module is None:
            return list(families)
        wanted = [module] if isinstance(module, str) else list(module)
        missing = [m for m in wanted if m not in families]
        if missing and families and len(missing) == len(wanted):
            known = ", ".join(families)
            raise QueryError(f"no log files for module {missing[0]!r} in {self.log_dir} (modules here: {known})")
        return [m for m in wanted if m in families]

    def records(
        self,
        module: str | Sequence[str] | None = None,
        *,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        skipped: SkipReport | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The matching records themselves, oldest file first, streamed (for listings such as traces).
        Damaged lines are counted into ``skipped`` when given."""
        conditions = _conditions(where)
        lo, hi = self._window(since, until, last)
        plan = _Plan(conditions, [Aggregate("count")], [], None, lo, hi)
        report = skipped if skipped is not None else SkipReport()
        with Snapshot.open(self.log_dir, self._modules(module), lo, hi) as snap:
            scan = _Collect(plan, report)
            for segment in snap.segments:
                for _ in scan._chunks(segment):  # one chunk of records in memory at a time
                    yield from scan.found
                    scan.found.clear()

    def _window(self, since: Any, until: Any, last: Any) -> tuple[float | None, float | None]:
        lo, hi = parse_time(since), parse_time(until)
        if last is not None:
            if since is not None:
                raise QueryError("give either last or since, not both")
            hi_or_now = hi if hi is not None else self._clock()
            lo = hi_or_now - parse_span(last)
            hi = hi_or_now if hi is not None else None
        if lo is not None and hi is not None and lo >= hi:
            raise QueryError(f"the window is empty: since {lo} is not before until {hi}")
        return lo, hi


def _duck_refused(exc: BaseException) -> bool:
    try:
        import duckdb
    except ImportError:
        return False
    return isinstance(exc, duckdb.Error)


def _conditions(where: Iterable[str | Condition] | Mapping[str, Any]) -> list[Condition]:
    if isinstance(where, Mapping):
        return [Condition(k, "in", tuple(v)) if isinstance(v, (list, tuple, set, frozenset)) else Condition(k, "=", v)
                for k, v in where.items()]
    if isinstance(where, str):
        where = [where]
    return [parse_where(w) for w in where]


@dataclass
class _Plan:
    conditions: list[Condition]
    aggregates: list[Aggregate]
    keys: list[str]
    width: float | None
    since: float | None
    until: float | None

    def __post_init__(self) -> None:
        self.num_fields = sorted({a.field for a in self.aggregates if a.kind in ("sum", "avg", "min", "max")
                                  and a.field})
        self.quant_fields = sorted({a.field for a in self.aggregates if a.kind == "percentile" and a.field})
        self.latest_fields = sorted({a.field for a in self.aggregates if a.kind == "latest" and a.field})
        self.count_ifs = [a for a in self.aggregates if a.kind == "count_if" and a.condition is not None]
        self.tokens = _required_tokens(self.conditions)


def _required_tokens(conditions: list[Condition]) -> list[bytes]:
    """Literals that must appear in a line for it to possibly match (a cheap pre-filter)."""
    tokens = []
    for c in conditions:
        if c.op != "=":
            continue
        if isinstance(c.value, str) and c.value.isascii() and c.value.isprintable() and not (
            set(c.value) & {'"', "\\", "/"}
        ):
            tokens.append(b'"' + c.value.encode() + b'"')
    return tokens


class _Scan:
    def __init__(self, plan: _Plan, skipped: SkipReport, max_groups: int,
                 progress: Callable[[int, int], None] | None, total: int, keep: set[tuple[Any, ...]] | None = None):
        self.plan = plan
        self.skipped = skipped
        self.max_groups = max_groups
        self.progress = progress
        self.total = total
        self.keep = keep
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.counts: dict[tuple[Any, ...], int] | None = None
        self.overflow = False
        self.lines = 0
        self.matched = 0
        self.folded = 0
        self._folded_keys: set[tuple[Any, ...]] = set()

    def _new_group(self) -> _Group:
        p = self.plan
        return _Group(p.num_fields, p.quant_fields, p.latest_fields,
                      [a.condition.test for a in p.count_ifs if a.condition is not None])

    def run(self, segments: list[Segment]) -> None:
        done = 0
        for segment in segments:
            self._segment(segment)
            done += segment.end - segment.start
            if self.progress is not None:
                self.progress(done, self.total)

    def _segment(self, segment: Segment) -> None:
        for _ in self._chunks(segment):
            pass

    def _chunks(self, segment: Segment) -> Iterator[None]:
        """Scan ``segment`` one chunk of lines at a time, pausing after each (``records`` hands
        out what a chunk matched; an aggregation just runs through)."""
        first = (segment.first_line or 1) - 1
        line_no = first
        chunk_start = segment.start
        for chunk in read_segment(segment):
            n = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
            self._every_line(segment, chunk, chunk_start, line_no)
            yield
            line_no += n
            chunk_start += len(chunk)
        self.lines += line_no - first
        if segment.torn:
            tail = os.pread(segment.handle.fileno(), min(segment.torn, 200), segment.end)
            self._skip(segment, line_no + 1, segment.end, "torn", tail)
        if segment.damaged:
            self._skip(segment, None, segment.end, "damaged archive", b"")

    def _add(self, record: dict[str, Any], ts: float) -> None:
        plan = self.plan
        key: tuple[Any, ...] = tuple([_hashable(record.get(k)) for k in plan.keys])
        if plan.width:
            key = (*key, math.floor(ts / plan.width) * plan.width)
        if self.counts is not None:  # past the cap: only rank the keys for the second pass
            self._count(key)
            return
        groups = self.groups
        group = groups.get(key)
        if group is None:
            if self.keep is not None and key not in self.keep:
                if len(self._folded_keys) < _FOLDED_LIMIT:
                    self._folded_keys.add(key)
                self.folded = len(self._folded_keys)
                key = (OTHER,) * len(key)
                group = groups.get(key)
            if group is None:
                if self.keep is None and len(groups) >= self.max_groups:
                    self._count(key)
                    return
                group = groups[key] = self._new_group()
        group.add(record, ts)

    def _every_line(self, segment: Segment, chunk: bytes, chunk_start: int,  # noqa: PLR0912 - flat on purpose
                    line_no: int) -> None:
        """Parse every line (the inner loop of full scans: kept flat, locals only)."""
        plan = self.plan
        tests = [c.test for c in plan.conditions]
        tokens = plan.tokens
        single_key = plan.keys[0] if len(plan.keys) == 1 and not plan.width else None
        since = -math.inf if plan.since is None else plan.since
        until = math.inf if plan.until is None else plan.until
        groups = self.groups
        loads, json_error, hashable = _loads, _JSONError, _hashable
        flt, integer, dct = float, int, dict
        matched = 0
        lines = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        for i, line in enumerate(lines):
            if tokens and not all(t in line for t in tokens) and line[:1] == b"{" and line[-1:] == b"}" \
                    and line.find(b'{"timestamp"', 1) < 0:
                continue  # a whole record that cannot match: not worth parsing
            try:
                record = loads(line)
            except json_error:
                if line.strip():  # a blank line holds no record: nothing lost, nothing to report (as DuckDB)
                    self._skip(segment, line_no + i + 1, _offset(chunk_start, lines, i), "corrupt", line)
                continue
            if record.__class__ is not dct:
                self._skip(segment, line_no + i + 1, _offset(chunk_start, lines, i), "not a record", line)
                continue
            raw: Any = record.get("timestamp")
            cls = raw.__class__
            if (cls is flt or cls is integer) and raw == raw and raw not in (_INF, _NEG_INF):
                ts: float = raw
            else:
                converted = as_number(raw)
                if converted is None or not math.isfinite(converted):
                    self._skip(segment, line_no + i + 1, _offset(chunk_start, lines, i), "not a record", line)
                    continue
                ts = converted
            if ts < since or ts >= until:
                continue
            if tests and not all(test(record) for test in tests):
                continue
            matched += 1
            if single_key is not None and self.counts is None:
                value = record.get(single_key)
                group = groups.get((value,) if value.__class__ is str else (hashable(value),))
                if group is not None:
                    group.add(record, ts)
                    continue
            self._add(record, ts)
        self.matched += matched

    def _count(self, key: tuple[Any, ...]) -> None:
        """Misra-Gries counts, bounded to ``4 * max_groups`` keys, to rank the keys for the second
        pass. When full, every count drops by the median count and the keys that reach zero go:
        at least half the room is freed at once (amortised O(log n) per record), and any key
        seen in more than 1/(2 * max_groups) of the records is always kept."""
        if self.counts is None:
            self.overflow = True
            self.counts = {k: g.count for k, g in self.groups.items()}
        counts = self.counts
        if key in counts:
            counts[key] += 1
            return
        if len(counts) >= 4 * self.max_groups:
            cut = sorted(counts.values())[len(counts) // 2]
            self.counts = counts = {k: n - cut for k, n in counts.items() if n > cut}
        counts[key] = 1

    def top_keys(self, n: int) -> set[tuple[Any, ...]]:
        counts = self.counts or {}
        return set(sorted(counts, key=counts.__getitem__, reverse=True)[:n])

    def _skip(self, segment: Segment, line_no: int | None, offset: int, reason: str, line: bytes) -> None:
        report = self.skipped
        report.count += 1
        report.by_reason[reason] = report.by_reason.get(reason, 0) + 1
        if len(report.samples) < _SAMPLE_LIMIT:
            number = line_no
            if segment.first_line is None or number is None:
                number = _line_number(segment, offset)
            report.samples.append(SkippedLine(str(segment.file.path), number, offset, reason,
                                              line[:120].decode("utf-8", "replace")))

    def rows(self, since: float | None, until: float | None) -> list[dict[str, Any]]:
        return build_rows(self.plan, self.groups.items(), since, until)


class _Collect(_Scan):
    """A scan that keeps the matching records of one segment instead of aggregating them."""

    def __init__(self, plan: _Plan, skipped: SkipReport) -> None:
        super().__init__(plan, skipped, 1, None, 0)
        self.found: list[dict[str, Any]] = []

    def _add(self, record: dict[str, Any], ts: float) -> None:  # noqa: ARG002 - the signature of _Scan._add
        self.found.append(record)


def build_rows(plan: _Plan, groups: Iterable[tuple[tuple[Any, ...], Any]], since: float | None,
               until: float | None) -> list[dict[str, Any]]:
    """Result rows from per-group statistics (``_Group`` here, or what DuckDB computed)."""
    out = []
    for key, group in sorted(groups, key=lambda kv: _sort_key(kv[0])):
        if not group.count:
            continue
        row: dict[str, Any] = {}
        for i, name in enumerate(plan.keys):
            row[name] = key[i]
        if plan.width:
            start = key[-1]
            row["bucket"] = start if start == OTHER else _iso(start)
        seconds = plan.width or _span(since, until, group)
        quantiles: dict[tuple[str, float], float | None] = {}
        for qfield in plan.quant_fields:
            wanted = [a.q for a in plan.aggregates if a.kind == "percentile" and a.field == qfield and a.q is not None]
            for q, v in zip(wanted, group.quantile_values(qfield, wanted), strict=True):
                quantiles[(qfield, q)] = v
        for agg in plan.aggregates:
            if agg.kind == "count_if":
                row[agg.name] = group.cond_counts[plan.count_ifs.index(agg)]
                continue
            row[agg.name] = _value(agg, group, seconds, quantiles)
        out.append(row)
    return out


def _value(agg: Aggregate, group: Any, seconds: float | None,
           quantiles: dict[tuple[str, float], float | None]) -> Any:
    kind = agg.kind
    if kind == "count":
        return group.count
    if kind == "errors":
        return group.errors
    if kind == "error_rate":
        return group.errors / group.judged if group.judged else None
    if kind == "rate":
        return group.count / seconds if seconds else None
    if kind == "percentile":
        return quantiles[(str(agg.field), float(agg.q or 0))]
    if kind == "latest":
        return group.latest[agg.field][1]
    n, total, low, high = group.num[agg.field]
    if not n:
        return None
    if kind == "sum":
        return total
    if kind == "avg":
        return total / n
    return low if kind == "min" else high


def _offset(chunk_start: int, lines: list[bytes], index: int) -> int:
    """Byte offset of ``lines[index]`` (computed only for a line being reported)."""
    return chunk_start + sum(len(line) + 1 for line in lines[:index])


def _span(since: float | None, until: float | None, group: Any) -> float | None:
    lo = since if since is not None else group.first_ts
    hi = until if until is not None else group.last_ts
    span = hi - lo
    return span if span > 0 else None


_hashable = as_text
"""Group keys are the field's text, as DuckDB shows a VARCHAR column (``true``, ``12``, ``{"a":1}``)."""


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v == OTHER, v is None, type(v).__name__, v if v is not None else 0) for v in key)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _order(result: QueryResult, order_by: str | None, descending: bool, limit: int | None) -> None:
    rows = result.rows
    if order_by is not None:
        present = [r for r in rows if r.get(order_by) is not None and r.get(order_by) != OTHER]
        absent = [r for r in rows if r.get(order_by) is None or r.get(order_by) == OTHER]
        present.sort(key=lambda r: r[order_by], reverse=descending)
        rows = present + absent
        other = [r for r in rows if OTHER in r.values()]
        rows = [r for r in rows if OTHER not in r.values()] + other  # the folded row always last
    if limit is not None:
        rows = rows[:limit]
    result.rows = rows
