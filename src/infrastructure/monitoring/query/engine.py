"""``LogParser``: filter, group and aggregate records straight from the log files.

A question is parsed once into a ``QueryPlan`` (``plan.py``), which DuckDB computes over
a snapshot of the chosen files (``files.py``, ``duck.py``): memory holds DuckDB's
per-group state, never the records. Groups are capped (``max_groups``): the top groups
by count are computed exactly and every other record is folded into one ``__other__``
row (``result.folded_groups`` says how many groups went there).

Lines that are not metric records are skipped and counted, with file, line number and
reason (``lines.py``). ``records()`` streams the matching records themselves.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import columnar
from .duck import DuckScan
from .files import FamilyFile, Segment, Snapshot, discover, read_segment
from .lines import SkippedLine, SkipReport, read_records, skip_torn
from .plan import QueryPlan, build_rows, order_rows
from .pyscan import PyScan
from .spec import Aggregate, Condition, QueryError, parse_agg, parse_bucket, parse_span, parse_time, parse_where

__all__ = ["LogParser", "QueryResult", "SkipReport", "SkippedLine"]

_log = logging.getLogger("infrastructure.monitoring.query")


@dataclass
class QueryResult:
    """Plain rows plus what it took to get them."""

    rows: list[dict[str, Any]]
    group_by: list[str]
    aggregates: list[str]
    skipped: SkipReport
    files_read: int = 0
    bytes_read: int = 0
    records_matched: int = 0
    folded_groups: int = 0
    """Distinct groups folded into the ``__other__`` row (``max_groups`` was reached)."""
    seconds: float = 0.0
    since: float | None = None
    until: float | None = None
    plan: QueryPlan | None = field(default=None, repr=False)
    unknown_fields: dict[str, str | None] = field(default_factory=dict)
    """Fields the question names that occur in none of the records of the window (a typo, or
    absent from this window), each with the nearest field that does occur, if any."""
    records_scanned: int | None = None
    """Records in the window whatever the filters (counted when a field was looked for)."""

    def warnings(self) -> list[str]:
        """One sentence per unknown field, as logged."""
        seen = f"the {self.records_scanned:,} records scanned" if self.records_scanned is not None else "any record"
        return [f"field {name!r} occurs in none of {seen}" + (f"; did you mean {near!r}?" if near else "")
                for name, near in self.unknown_fields.items()]

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class LogParser:
    """Answers questions from one log folder.

        parser = LogParser("logs")
        rows = parser.query("llm", operation="llm_call", last="1h", group_by="model",
                            aggs=["count", "error_rate", "p95:response_time", "sum:total_tokens"]).rows

    Every answer is computed from the files at the moment of the call.
    """

    duckdb_threshold: int = 4 << 20
    """Snapshots at least this large (compressed bytes counted ten times) go to DuckDB under
    ``engine="auto"``; smaller ones are answered in Python before DuckDB could even start."""

    def __init__(self, log_dir: str | os.PathLike[str], *, threads: int | None = None,
                 clock: Callable[[], float] = time.time, columnar: bool | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.threads = threads or os.cpu_count() or 1
        self._clock = clock
        self.columnar = columnar
        """Read the columnar copies of settled files where valid ones exist (``query/columnar.py``);
        ``None`` follows ``query.columnar_cache`` of the loaded configuration (on by default)."""

    def families(self, module: str | None = None) -> dict[str, list[FamilyFile]]:
        """Module -> its files, oldest first (``llm`` -> ``llm_metrics.log.N`` … ``llm_metrics.log``)."""
        return discover(self.log_dir, module)

    def modules(self) -> list[str]:
        return list(self.families())

    # ------------------------------------------------------------------ the query

    def plan(
        self,
        *,
        operation: str | Sequence[str] | None = None,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        group_by: str | Sequence[str] = (),
        bucket: str | float | None = None,
        aggs: Sequence[str | Aggregate] = ("count",),
        max_groups: int = 10_000,
    ) -> QueryPlan:
        """The plan of a question (``query`` takes the same arguments); checked here, so a bad
        question fails before any file is opened."""
        conditions = _conditions(where)
        if operation is not None:
            ops = (operation,) if isinstance(operation, str) else tuple(operation)
            conditions.insert(0, Condition("operation", "=", ops[0]) if len(ops) == 1 else
                              Condition("operation", "in", ops))
        if max_groups < 1:
            raise QueryError(f"max_groups must be at least 1, got {max_groups}", params=("max_groups",))
        lo, hi = self._window(since, until, last)
        with _blame("aggs"):
            aggregates = tuple(parse_agg(a) for a in aggs) or (Aggregate("count"),)
        with _blame("bucket"):
            width = parse_bucket(bucket)
        return QueryPlan(
            conditions=tuple(conditions), aggregates=aggregates,
            keys=(group_by,) if isinstance(group_by, str) else tuple(group_by),
            width=width, since=lo, until=hi, max_groups=max_groups,
        )

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
        check_fields: bool = True,
        engine: str = "auto",
    ) -> QueryResult:
        """Filter, group, aggregate. Rows are dicts keyed by the group-by fields (plus
        ``bucket``, an ISO 8601 UTC string, when bucketed) and the aggregate names.

        Without ``order_by``, rows come sorted by their group keys (buckets in time order);
        ``limit`` keeps the first rows after ordering (top-N with ``order_by="count"``).

        A field named in ``where``, ``group_by`` or an aggregate that occurs in no record of
        the window is reported in ``result.unknown_fields`` (with the nearest field that does
        occur) and a logged warning; ``check_fields=False`` skips that check (for questions
        that ask for optional fields on purpose, such as the ready-made reports).

        ``engine``: ``"duckdb"`` or ``"python"`` compute the same figures of the same plan and
        give the same answer; ``"auto"`` (default) takes Python for a few megabytes, DuckDB above.
        """
        started = time.perf_counter()
        plan = self.plan(operation=operation, where=where, since=since, until=until, last=last,
                         group_by=group_by, bucket=bucket, aggs=aggs, max_groups=max_groups)
        if order_by is not None and order_by not in plan.names and order_by not in plan.group_names:
            raise QueryError(f"order_by {order_by!r} is neither a group-by field nor an aggregate "
                             f"({', '.join(plan.names)})", params=("order_by",))
        result = self.run(plan, self._modules(module), progress, check_fields=check_fields, engine=engine)
        result.rows = order_rows(result.rows, order_by, descending, limit)
        result.seconds = time.perf_counter() - started
        return result

    def run(self, plan: QueryPlan, modules: list[str], progress: Callable[[int, int], None] | None = None, *,
            check_fields: bool = True, engine: str = "auto") -> QueryResult:
        """Compute ``plan`` over the families ``modules``: rows in group-key order."""
        if engine not in ("auto", "python", "duckdb"):
            raise QueryError(f"engine must be 'auto', 'python' or 'duckdb', not {engine!r}", params=("engine",))
        skipped = SkipReport()
        rows: list[dict[str, Any]] = []
        matched = folded = 0
        with Snapshot.open(self.log_dir, modules, plan.since, plan.until) as snap:
            total = snap.bytes
            unknown: dict[str, str | None] = {}
            scanned: int | None = None
            if snap.segments:
                weight = sum((10 if s.file.gz else 1) * (s.end - s.start) for s in snap.segments)
                python = engine == "python" or (engine == "auto" and weight < self.duckdb_threshold)
                scan: DuckScan | PyScan
                if python:
                    scan = PyScan(plan, snap.segments, skipped, check_fields=check_fields)
                else:
                    use = self.columnar if self.columnar is not None else columnar.default_enabled()
                    copies = columnar.find_copies(self.log_dir, snap.segments) if use else {}
                    scan = DuckScan(plan, snap.segments, threads=self.threads, check_fields=check_fields,
                                    copies=copies)
                scan.run(None if progress is None else lambda share: progress(int(share * total), total))
                if isinstance(scan, DuckScan):
                    _account(scan, snap, skipped)
                rows, matched, folded = build_rows(plan, scan.groups.items()), scan.matched, scan.folded
                if scan.absent:
                    known = _field_names(snap)
                    unknown = {f: _nearest(f, known) for f in scan.absent}
                    scanned = scan.scanned
            if progress is not None:
                progress(total, total)
            result = QueryResult(rows, plan.group_names, plan.names, skipped,
                                 files_read=len({s.file.path for s in snap.segments}), bytes_read=total,
                                 records_matched=matched, folded_groups=folded, since=plan.since,
                                 until=plan.until, plan=plan, unknown_fields=unknown, records_scanned=scanned)
        for warning in result.warnings():
            _log.warning(warning)
        return result

    def _modules(self, module: str | Sequence[str] | None) -> list[str]:
        families = self.families()
        if module is None:
            return list(families)
        wanted = [module] if isinstance(module, str) else list(module)
        missing = [m for m in wanted if m not in families]
        if missing and families and len(missing) == len(wanted):
            known = ", ".join(families)
            raise QueryError(f"no log files for module {missing[0]!r} in {self.log_dir} (modules here: {known})",
                             params=("module",))
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
        match: Callable[[bytes], bool] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The matching records themselves, oldest file first, streamed (for listings such as traces).
        Damaged lines are counted into ``skipped`` when given. ``match``, when given, screens each raw
        line before it is parsed (``search.search``: the pattern against the line as written)."""
        conditions = tuple(_conditions(where))
        lo, hi = self._window(since, until, last)
        with Snapshot.open(self.log_dir, self._modules(module), lo, hi) as snap:
            for segment in snap.segments:
                for chunk in read_records(segment, skipped, since=lo, until=hi, conditions=conditions, match=match):
                    yield from chunk  # one chunk of records in memory at a time

    def _window(self, since: Any, until: Any, last: Any) -> tuple[float | None, float | None]:
        with _blame("since"):
            lo = parse_time(since)
        with _blame("until"):
            hi = parse_time(until)
        if last is not None:
            if since is not None:
                raise QueryError("give either last or since, not both", params=("last", "since"))
            hi_or_now = hi if hi is not None else self._clock()
            with _blame("last"):
                lo = hi_or_now - parse_span(last)
            hi = hi_or_now if hi is not None else None
        if lo is not None and hi is not None and lo >= hi:
            raise QueryError(f"the window is empty: since {lo} is not before until {hi}", params=("since", "until"))
        return lo, hi


def _account(scan: DuckScan, snap: Snapshot, skipped: SkipReport) -> None:
    """The skipped lines of a scan: DuckDB counted them; the line reader says where and why, going
    only through the few inputs that held some."""
    found = SkipReport()
    for segment in scan.bad_inputs:
        for _ in read_records(dataclass_replace(segment), found, since=float("inf"), ends=False):
            pass
    for segment in snap.segments:
        skip_torn(segment, found)
    for segment, copy in scan.copy_skips:
        _copied_skips(segment, copy, found)
    for segment in scan.unpacked:
        found.add(segment, None, segment.end, "damaged archive", b"")
    skipped.count = scan.bad + sum(1 for s in snap.segments if s.torn) + len(scan.unpacked)
    skipped.by_reason = dict(found.by_reason)
    unexplained = skipped.count - found.count
    if unexplained > 0:
        skipped.by_reason["unreadable"] = skipped.by_reason.get("unreadable", 0) + unexplained
    skipped.samples = found.samples


def _field_names(snap: Snapshot, limit: int = 64 * 1024) -> set[str]:
    """The field names of the first records of each file read (to suggest a near one)."""
    names: set[str] = set()
    for segment in snap.segments:
        head = next(read_segment(dataclass_replace(segment, end=min(segment.end, segment.start + limit))), b"")
        for line in head.split(b"\n"):
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict):
                    names.update(k for k in record if isinstance(k, str))
    return names


def _nearest(name: str, known: Iterable[str]) -> str | None:
    """The known field a typo most likely meant: fewest edits (a swap of two neighbours counts
    as one), then the same length (``modle`` -> ``model`` rather than ``module``), then the most
    similar; ``None`` when nothing is within a third of the name's length."""
    best: tuple[int, int, float, str] | None = None
    for candidate in known:
        edits = _edits(name.lower(), candidate.lower())
        if edits > max(1, len(name) // 3):
            continue
        rank = (edits, abs(len(candidate) - len(name)), -difflib.SequenceMatcher(None, name, candidate).ratio(),
                candidate)
        if best is None or rank < best:
            best = rank
    return best[3] if best else None


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _copied_skips(segment: Segment, copy: columnar.Copy, found: SkipReport) -> None:
    """The damaged lines of a file read through its copy: counted, with reasons and places, when built."""
    skips = copy.skips
    path = str(segment.file.path)
    found.merge(SkipReport(int(skips.get("count", 0)),
                           {reason: int(n) for reason, n in (skips.get("by_reason") or {}).items()},
                           [SkippedLine(path, line, offset, reason, excerpt)
                            for line, offset, reason, excerpt in skips.get("samples") or []]))


def _conditions(where: Iterable[str | Condition] | Mapping[str, Any]) -> list[Condition]:
    with _blame("where"):
        if isinstance(where, Mapping):
            return [Condition(k, "in", tuple(v)) if isinstance(v, (list, tuple, set, frozenset))
                    else Condition(k, "=", v) for k, v in where.items()]
        if isinstance(where, str):
            where = [where]
        return [parse_where(w) for w in where]


@contextlib.contextmanager
def _blame(param: str) -> Iterator[None]:
    """A ``QueryError`` raised inside names ``param`` as the argument at fault."""
    try:
        yield
    except QueryError as exc:
        if exc.params:
            raise
        raise QueryError(str(exc), params=(param,)) from None
