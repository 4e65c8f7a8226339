"""``ClickHouseParser``: the read side's questions answered by the ClickHouse table the shipper fills.

It has ``LogParser``'s query interface (``query``, ``run``, ``records``, ``modules``,
``families``), so reports, alerts, SLOs, anomalies, traces and the dashboard take
either. A question is planned exactly as locally (``LogParser.plan``: the same
``QueryPlan``, the same errors), compiled to SQL (``sql.py``) and computed on the
server; only each group's figures come back, and ``plan.build_rows`` turns them into
the same rows the local engines give: counts and integer sums equal, other sums and
percentiles equal up to the order of floating-point additions (1e-9 relative).

What differs from the files is what never reached the table: lines that are not
records (the shipper skips and counts them, so ``skipped`` is always empty here) and
what is not shipped yet (``monitoring status`` on each host shows the lag).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import orjson

from ..query.engine import LogParser, QueryResult, _nearest
from ..query.lines import SkipReport
from ..query.plan import OTHER, Figure, QueryPlan, build_rows, order_rows, suspicious_fields
from ..query.spec import Aggregate, Condition, QueryError
from .clickhouse import ClickHouseClient, ClickHouseError
from .schema import COLUMNS, LEGACY, TableNames, dialect_for, parse_version
from .settings import ClickHouseSettings
from .shipper import password_from_env, user_from_env
from .sql import (
    RECORD_COLUMNS,
    Fields,
    PlanSQL,
    extra_modes,
    filter_sql,
    literal,
    profile_sql,
    records_sql,
    scope_sql,
)

__all__ = ["ClickHouseParser", "ModuleStatus", "TableStatus", "record_of"]

_log = logging.getLogger("infrastructure.monitoring.query")

_READ_SETTINGS: Final = {"output_format_json_quote_64bit_integers": 0, "output_format_json_quote_denormals": 1}
_MISSING: Final = frozenset({60, 81})
"""UNKNOWN_TABLE, UNKNOWN_DATABASE."""
_INTEGER_FIGURES: Final = frozenset({"count", "n", "errors", "judged", "count_if"})
_FLOAT_FIGURES: Final = frozenset({"first", "last", "sum", "min", "max"})
_KINDS: Final = {c.name: c.kind for c in COLUMNS if c.kind != "fixed"}
_MODULES_FRESH: Final = 5.0
"""Seconds the list of modules is reused (one report asks for it several times)."""


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)  # "nan" and "inf" arrive quoted


@dataclass
class ModuleStatus:
    module: str
    records: int
    oldest: float | None
    newest: float | None
    hosts: int


@dataclass
class TableStatus:
    """The table at a glance (``monitoring status --clickhouse``)."""

    target: str
    version: str
    modules: list[ModuleStatus] = field(default_factory=list)
    parts: int = 0
    days: int = 0
    rows: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)


class ClickHouseParser:
    """Answers questions from the fleet's ClickHouse table, as ``LogParser`` does from one folder.

        parser = ClickHouseParser(settings.clickhouse)        # url, database, table, cluster
        rows = parser.query("llm", last="1h", group_by=["host", "model"],
                            aggs=["count", "p95:response_time"]).rows

    With ``settings.cluster`` it reads the ``Distributed`` table (every shard answers its
    part; percentiles and the ``__other__`` fold are computed over the whole fleet).
    The user and password come from ``MONITORING_CLICKHOUSE_USER`` / the variable
    ``password_env`` names, as for the shipper.
    """

    def __init__(self, settings: ClickHouseSettings, *, client: ClickHouseClient | None = None,
                 environ: dict[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client or ClickHouseClient(settings.url, user=user_from_env(settings, environ),
                                                 password=password_from_env(settings, environ),
                                                 timeout=settings.timeout)
        self.names = TableNames(settings.database, settings.table, settings.cluster)
        self.table = self.names.qualified
        self.target = f"{settings.url} {settings.database}.{settings.table}"
        self._clock = clock
        self._planner = LogParser(os.curdir, clock=clock)
        """Plans questions exactly as the local parser does (planning reads no file)."""
        self._dialect: str | None = None
        self.version: str | None = None
        self._modules_cache: tuple[float, list[str]] | None = None
        self._lock = threading.RLock()
        """One question at a time on the kept-alive connection (the dashboard server asks from many
        threads); ``records`` streams on connections of its own."""

    def __repr__(self) -> str:
        return f"ClickHouseParser({self.target!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ClickHouseParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the server

    @property
    def dialect(self) -> str:
        """``current`` or ``legacy``, from the server's version (asked once)."""
        if self._dialect is None:
            with self._lock:
                self.version = self.client.version()
            self._dialect = dialect_for(parse_version(self.version))
        return self._dialect

    def _ask(self, sql: str) -> dict[str, Any]:
        """The answer of ``sql`` as ClickHouse's ``JSONCompact`` document (rows in ``data``)."""
        try:
            with self._lock:
                body = self.client.query(f"{sql}\nFORMAT JSONCompact", settings=_READ_SETTINGS)
        except ClickHouseError as exc:
            if exc.code in _MISSING:
                raise ClickHouseError(f"{self.target}: the table does not exist; ship logs into it first "
                                      f"(monitoring ship --clickhouse {self.settings.url} --database "
                                      f"{self.settings.database})", exc.code, exc.status) from None
            raise
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    def _rows(self, sql: str) -> list[list[Any]]:
        data: list[list[Any]] = self._ask(sql)["data"]
        return data

    # ------------------------------------------------------------------ modules

    def modules(self) -> list[str]:
        """The modules (families) that have rows, sorted. A current server answers one small query
        per module, each starting where the previous module ends (the primary key starts with
        ``module`` and is read in order); 18.16, which would read on to the end each time, one pass
        over the ``module`` column."""
        now = time.monotonic()
        cached = self._modules_cache
        if cached is not None and now - cached[0] < _MODULES_FRESH:
            return list(cached[1])
        found: list[str] = []
        if self.dialect == LEGACY:
            found = [str(r[0]) for r in self._rows(f"SELECT DISTINCT module FROM {self.table} ORDER BY module")]
        else:
            while True:
                after = f"WHERE module > {literal(found[-1])} " if found else ""
                rows = self._rows(f"SELECT module FROM {self.table} {after}ORDER BY module LIMIT 1")
                if not rows:
                    break
                found.append(str(rows[0][0]))
        self._modules_cache = (now, found)
        return list(found)

    def families(self, module: str | None = None) -> dict[str, list[Any]]:
        """Module -> ``[]`` for every module with rows (there are no files to list here); with
        ``module``, that one only, or nothing when it has no rows."""
        if module is None:
            return {m: [] for m in self.modules()}
        rows = self._rows(f"SELECT 1 FROM {self.table} WHERE module = {literal(module)} LIMIT 1")
        return {module: []} if rows else {}

    def _modules(self, module: str | Sequence[str] | None) -> list[str] | None:
        """``None`` for every module; else the wanted ones present (an error when none is)."""
        if module is None:
            return None
        wanted = [module] if isinstance(module, str) else list(module)
        found = [m for m in wanted if self.families(m)]  # each a look at the primary key
        if not found and (present := self.modules()):
            raise QueryError(f"no records of module {wanted[0]!r} in {self.target} (modules here: "
                             f"{', '.join(present)})")
        return found

    # ------------------------------------------------------------------ the query

    def plan(self, **question: Any) -> QueryPlan:
        """The plan of a question, exactly as ``LogParser.plan`` makes it."""
        return self._planner.plan(**question)

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
        """``LogParser.query``, computed by the server. ``engine`` is accepted for the same
        signature (the server is the engine) and checked the same way."""
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

    def run(self, plan: QueryPlan, modules: list[str] | None, progress: Callable[[int, int], None] | None = None,
            *, check_fields: bool = True, engine: str = "auto") -> QueryResult:
        """Compute ``plan`` over ``modules`` (``None``: all): rows in group-key order."""
        if engine not in ("auto", "python", "duckdb"):
            raise QueryError(f"engine must be 'auto', 'python' or 'duckdb', not {engine!r}", params=("engine",))
        result = QueryResult([], plan.group_names, plan.names, SkipReport(), since=plan.since, until=plan.until,
                             plan=plan)
        if modules is not None and not modules:
            return result
        sql = PlanSQL(plan, self.table, self.dialect, modules)
        sql = replace(sql, extra=self._profile(sql.scope(), sql.extra_fields()))
        groups, folded, read = self._groups(sql)
        result.rows = build_rows(plan, groups.items())
        result.records_matched = sum(int(f[Figure("count")]) for f in groups.values())
        result.folded_groups = folded
        result.bytes_read = read
        if check_fields:
            suspects = suspicious_fields(plan, groups)
            if suspects:
                self._presence(sql, suspects, result)
        if progress is not None:
            progress(read, read)
        for warning in result.warnings():
            _log.warning(warning)
        return result

    def _profile(self, scope: str, names: list[str]) -> dict[str, str]:
        """How the rows in scope hold ``names`` in ``extra``: most fields that have a column are never
        there, and then the question reads the column alone (a quick look first, ``profile_sql``)."""
        modes: dict[str, str] = {}
        for fields, statement in profile_sql(self.table, scope, names):
            modes.update(extra_modes(fields, self._rows(statement)[0]))
        return modes

    def _groups(self, sql: PlanSQL) -> tuple[dict[tuple[Any, ...], dict[Figure, Any]], int, int]:
        """Group keys -> figures, the groups folded into ``__other__``, the bytes the server read."""
        plan = sql.plan
        width = len(plan.keys) + (1 if plan.width else 0)
        if not width:
            answer = self._ask(sql.grouped())
            return self._decode(plan, answer["data"], width, fold=False), 0, _read(answer)
        answer = self._ask(sql.grouped(limit=plan.max_groups + 1))
        read = _read(answer)
        if len(answer["data"]) <= plan.max_groups:
            return self._decode(plan, answer["data"], width, fold=False), 0, read
        # more groups than the cap: the top ones exactly, every other record in one __other__ group
        distinct = int(self._rows(sql.distinct_sql())[0][0])
        answer = self._ask(sql.grouped(fold=True))
        return (self._decode(plan, answer["data"], width, fold=True), max(0, distinct - plan.max_groups),
                read + _read(answer))

    @staticmethod
    def _decode(plan: QueryPlan, data: list[list[Any]], width: int, *, fold: bool
                ) -> dict[tuple[Any, ...], dict[Figure, Any]]:
        groups: dict[tuple[Any, ...], dict[Figure, Any]] = {}
        for line in data:
            hit, row = (bool(line[0]), line[1:]) if fold else (True, line)
            key: tuple[Any, ...] = tuple(row[:width]) if hit else (OTHER,) * width
            if plan.width and hit:
                key = (*key[:-1], float(key[-1]))
            figures: dict[Figure, Any] = {}
            for f, value in zip(plan.figures, row[width:], strict=True):
                if f.kind in _INTEGER_FIGURES:
                    figures[f] = int(value or 0)
                elif f.kind in _FLOAT_FIGURES:
                    figures[f] = _float(value)
                elif f.kind == "quantiles":
                    figures[f] = [float(v) for v in value] if value else None
                else:
                    figures[f] = value
            groups[key] = figures
        return groups

    def _presence(self, sql: PlanSQL, suspects: list[str], result: QueryResult) -> None:
        """Which suspect fields occur in no record of the window, with the nearest that does."""
        counts = self._rows(sql.presence_sql(suspects))[0]
        absent = [name for name, n in zip(suspects, counts[1:], strict=True) if not int(n)]
        if absent:
            known = self._field_names(sql)
            result.unknown_fields = {name: _nearest(name, known) for name in absent}
            result.records_scanned = int(counts[0])

    def _field_names(self, sql: PlanSQL, sample: int = 2000) -> set[str]:
        """The fields the window's records have: typed columns holding a value, and the keys of a
        sample of ``extra`` objects (to suggest a near name)."""
        typed_sql, extra_sql = sql.field_names_sql(sample)
        counts = self._rows(typed_sql)[0]
        names = {"timestamp", "module", "operation"} | {c for c, n in zip(_KINDS, counts, strict=True) if int(n)}
        for (text,) in self._rows(extra_sql):
            try:
                found = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(found, dict):
                names.update(found)
        return names

    # ------------------------------------------------------------------ records

    def records(
        self,
        module: str | Sequence[str] | None = None,
        *,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        skipped: SkipReport | None = None,  # noqa: ARG002 - nothing unreadable reaches the table
    ) -> Iterator[dict[str, Any]]:
        """The matching records, rebuilt from their row (typed columns and ``extra``), oldest first
        within each module, streamed from the server."""
        plan = self.plan(where=where, since=since, until=until, last=last)
        modules = self._modules(module)
        if modules is not None and not modules:
            return
        scope = scope_sql(plan.conditions, plan.since, plan.until, modules)
        probe = Fields(self.dialect)
        filter_sql(probe, plan.conditions)
        extra = self._profile(scope, probe.looked_up)
        statement = records_sql(self.dialect, self.table, plan.conditions, plan.since, plan.until, modules, extra)
        for line in self.client.lines(f"{statement}\nFORMAT JSONEachRow", settings=_READ_SETTINGS):
            yield record_of(orjson.loads(line))

    # ------------------------------------------------------------------ status

    def status(self) -> TableStatus:
        """Per module: records, oldest and newest, shipping hosts; the table's parts and their sizes;
        the writer faults the records report (as ``folder_status`` shows for a folder)."""
        self.dialect  # noqa: B018 - asks the server's version once
        status = TableStatus(self.target, str(self.version))
        for module, n, lo, hi, hosts in self._rows(
                f"SELECT module, count(), min(timestamp), max(timestamp), uniqExact(source_host) FROM {self.table} "
                "GROUP BY module ORDER BY module"):
            status.modules.append(ModuleStatus(str(module), int(n), _float(lo), _float(hi), int(hosts)))
        databases = {self.settings.database}
        if self.settings.cluster:
            databases |= {str(r[0]) for r in self._rows(
                "SELECT DISTINCT default_database FROM system.clusters "
                f"WHERE cluster = {literal(self.settings.cluster)}")
                if r[0]}
        parts = self._rows(
            "SELECT count(), uniqExact(partition), sum(rows), sum(data_compressed_bytes), "
            f"sum(data_uncompressed_bytes) FROM system.parts WHERE active AND table = {literal(self.names.local)} "
            f"AND database IN ({', '.join(literal(d) for d in sorted(databases))})")
        if parts:
            status.parts, status.days, status.rows, status.compressed_bytes, status.uncompressed_bytes = (
                int(v or 0) for v in parts[0])
        if status.modules:
            status.faults = self.query(operation="writer_fault", where=["metric_type=event"], group_by="module",
                                       check_fields=False, aggs=["count", "sum:dropped", "latest:fault"]).rows
        return status


def _read(answer: Mapping[str, Any]) -> int:
    stats = answer.get("statistics") or {}
    return int(stats.get("bytes_read") or 0)


def record_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record rebuilt from its row: the typed columns that hold a value, then every field of ``extra``."""
    extra = row.get("extra") or "{}"
    fields: dict[str, Any] = orjson.loads(extra) if extra != "{}" else {}
    record: dict[str, Any] = {"timestamp": float(row["timestamp"])}
    if "module" not in fields:
        record["module"] = row["module"]
    if row.get("operation"):
        record["operation"] = row["operation"]
    for name in RECORD_COLUMNS[3:-1]:
        value = row.get(name)
        if value is None:
            continue
        kind = _KINDS[name]
        record[name] = bool(value) if kind == "bool" else float(value) if kind == "float" else value
    record.update(fields)
    return record
