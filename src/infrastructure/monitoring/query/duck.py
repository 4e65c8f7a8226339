"""Large scans on DuckDB, with the same answers and the same accounting as the Python loop.

DuckDB's ``read_json`` (newline-delimited, ``ignore_errors``) turns every line into one
row and a line it cannot read into a row of NULLs, so a damaged line is a row whose
``timestamp`` is NULL (or not finite): one scan gives the answer *and* the number of
skipped lines. Only when that number is not zero does a second, cheap query tell which
files hold them, and the Python reader then finds their line numbers and reasons.
Backups an earlier scan found whole (``verified.py``) are read without those checks.

Columns are read with the types the query needs (``DOUBLE`` for a field that is only
aggregated or compared as a number, ``BOOLEAN`` for ``success``, ``VARCHAR`` otherwise),
which is also how the Python loop reads values (``spec.as_number`` and friends).

Whole immutable files (rotated backups and ``.gz``) are read through
``/proc/self/fd/N`` from the descriptors the snapshot opened, so a rotation during the
query cannot swap them; the live file and any part of a file chosen by a time window are
first copied, byte-exact, into a private temporary folder (on ``/dev/shm`` when there is
room), so DuckDB reads exactly the snapshot.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .files import Segment
from .verified import VerifiedFiles, identity

__all__ = ["DuckScan", "available"]

_COPY_CHUNK: Final = 1 << 24
_MAX_LINE: Final = 2 << 20
"""Longest line DuckDB reads (the writers cap theirs at 1 MiB); longer ones count as unreadable."""
_READ_OPTIONS: Final = f"maximum_object_size={_MAX_LINE}, auto_detect=false, records=true"
"""The columns are given, so nothing is sampled: sampling opens many files at once, each with
a 32 MiB buffer, and a family of many small backups would run out of memory."""
_CHECKED: Final = "ignore_errors=true, "
"""Files not known to be whole: a line DuckDB cannot read becomes a row of NULLs, counted."""
_OK: Final = "(timestamp IS NOT NULL AND isfinite(timestamp))"
_OTHER: Final = "__other__"


def available() -> bool:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class _Stats:
    """One group's figures as DuckDB computed them (the shape ``build_rows`` reads)."""

    count: int = 0
    bad: int = 0
    cond_counts: list[int] = field(default_factory=list)
    errors: int = 0
    judged: int = 0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    num: dict[str, list[float]] = field(default_factory=dict)
    latest: dict[str, tuple[float, Any]] = field(default_factory=dict)
    quant: dict[str, list[float | None]] = field(default_factory=dict)

    def quantile_values(self, name: str, qs: list[float]) -> list[float | None]:  # noqa: ARG002 - same shape as _Group
        return self.quant[name]


@dataclass(frozen=True)
class _Input:
    path: str
    """What DuckDB reads: ``/proc/self/fd/N`` or a private copy."""
    gz: bool
    segment: Segment
    key: str | None
    """The identity of a settled backup read whole (``verified.identity``), else ``None``."""
    trusted: bool
    """Known from an earlier scan to hold only whole records: read without the per-line checks."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckScan:
    """Run one query plan over snapshot segments; ``groups`` then maps keys to ``_Stats``."""

    def __init__(self, plan: Any, segments: list[Segment], *, threads: int, max_groups: int,
                 memory_limit: str = "512MB", verified: VerifiedFiles | None = None) -> None:
        self.plan = plan
        self.segments = segments
        self.verified = verified
        self.threads = threads
        self.max_groups = max_groups
        self.memory_limit = memory_limit
        self.groups: dict[tuple[Any, ...], _Stats] = {}
        self.bad = 0
        self.bad_inputs: list[Segment] = []
        self.folded = 0
        self.matched = 0
        self._types = self._column_types()

    # ------------------------------------------------------------------ SQL

    def _column_types(self) -> dict[str, str]:
        plan = self.plan
        roles: dict[str, set[str]] = {}

        def role(name: str, kind: str) -> None:
            roles.setdefault(name, set()).add(kind)

        for key in plan.keys:
            role(key, "text")
        for c in [*plan.conditions, *(a.condition for a in plan.count_ifs)]:
            values = c.value if c.op == "in" else (c.value,)
            for v in values:
                if c.op in ("<", "<=", ">", ">=") or (v.__class__ in (int, float)):
                    role(c.field, "num")
                elif v is True or v is False:
                    role(c.field, "bool")
                else:
                    role(c.field, "text")
        for f in (*plan.num_fields, *plan.quant_fields):
            role(f, "num")
        for f in plan.latest_fields:
            role(f, "text")
        if any(a.kind in ("errors", "error_rate") for a in plan.aggregates):
            role("success", "bool")
        types = {"timestamp": "DOUBLE"}
        for name, kinds in roles.items():
            if name == "timestamp":
                continue
            types[name] = "DOUBLE" if kinds == {"num"} else "BOOLEAN" if kinds == {"bool"} else "VARCHAR"
        return types

    def _num(self, name: str) -> str:
        col = _ident(name)
        return col if self._types.get(name) == "DOUBLE" else f"TRY_CAST({col} AS DOUBLE)"

    def _bool(self, name: str) -> str:
        col = _ident(name)
        return col if self._types.get(name) == "BOOLEAN" else f"TRY_CAST({col} AS BOOLEAN)"

    def _text(self, name: str) -> str:
        col = _ident(name)
        return col if self._types.get(name) == "VARCHAR" else f"CAST({col} AS VARCHAR)"

    def _equal(self, name: str, value: Any, params: list[Any] | None) -> str:
        """``name = value`` with the value bound as a parameter (or, with ``params=None``, written
        as an escaped literal: for the aggregates, which come before the WHERE's parameters)."""
        if value is None:
            return f"{_ident(name)} IS NULL"
        if value is True or value is False:
            return f"{self._bool(name)} = {_bind(value, params)}"
        if value.__class__ is str:
            return f"{self._text(name)} = {_bind(value, params)}"
        return f"{self._num(name)} = {_bind(float(value), params)}"

    def _condition(self, c: Any, params: list[Any] | None) -> str:
        if c.op == "=":
            return self._equal(c.field, c.value, params)
        if c.op == "!=":
            eq = self._equal(c.field, c.value, params)
            return f"NOT COALESCE({eq}, false)" if c.value is not None else f"NOT ({eq})"
        if c.op == "in":
            return "(" + " OR ".join(f"COALESCE({self._equal(c.field, v, params)}, false)" for v in c.value) + ")"
        return f"{self._num(c.field)} {c.op} {_bind(float(c.value), params)}"

    def _where(self, params: list[Any]) -> str:
        plan = self.plan
        parts = []
        if plan.since is not None:
            params.append(plan.since)
            parts.append("timestamp >= ?")
        if plan.until is not None:
            params.append(plan.until)
            parts.append("timestamp < ?")
        for c in plan.conditions:
            parts.append(self._condition(c, params))
        return " AND ".join(f"({p})" for p in parts) or "true"

    def _key_exprs(self) -> list[str]:
        exprs = [self._text(k) for k in self.plan.keys]
        if self.plan.width:
            exprs.append(f"floor(timestamp / {float(self.plan.width)!r}) * {float(self.plan.width)!r}")
        return exprs

    def _aggregates(self) -> tuple[list[str], list[tuple[str, Any]]]:
        """Plain aggregates: damaged lines form groups of their own (``__ok`` is a key), so no
        aggregate needs a ``FILTER`` and the scan costs what the bare query costs."""
        plan = self.plan
        sql = ["count(*)"]
        layout: list[tuple[str, Any]] = [("count", None)]
        if any(a.kind == "rate" for a in plan.aggregates):
            sql += ["min(timestamp)", "max(timestamp)"]
            layout += [("first", None), ("last", None)]
        if any(a.kind in ("errors", "error_rate") for a in plan.aggregates):
            sb = self._bool("success")
            judged = f"count({sb})" if any(a.kind == "error_rate" for a in plan.aggregates) else "0"
            sql += [f"count(*) FILTER (WHERE {sb} = false)", judged]
            layout += [("errors", None), ("judged", None)]
        for f in plan.num_fields:
            n = self._num(f)
            kinds = {a.kind for a in plan.aggregates if a.field == f}
            sql += [f"count({n})", f"sum({n})" if kinds & {"sum", "avg"} else "NULL",  # only what is asked
                    f"min({n})" if "min" in kinds else "NULL", f"max({n})" if "max" in kinds else "NULL"]
            layout.append(("num", f))
        for f in plan.quant_fields:
            qs = [a.q for a in plan.aggregates if a.kind == "percentile" and a.field == f]
            sql.append(f"quantile_cont({self._num(f)}, [{', '.join(repr(float(q)) for q in qs)}])")
            layout.append(("quant", (f, len(qs))))
        for f in plan.latest_fields:
            t = self._text(f)
            sql.append(f"arg_max({t}, timestamp) FILTER (WHERE {t} IS NOT NULL)")
            layout.append(("latest", f))
        for agg in plan.count_ifs:
            sql.append(f"count(*) FILTER (WHERE COALESCE({self._condition(agg.condition, None)}, false))")
            layout.append(("cond", None))
        return sql, layout

    # ------------------------------------------------------------------ running

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        import duckdb

        folder = _scratch_folder(sum(s.end - s.start for s in self.segments if not s.whole))
        try:
            inputs = self._inputs(folder)
            con = duckdb.connect(config={"threads": self.threads, "memory_limit": self.memory_limit,
                                         "temp_directory": os.path.join(folder, "spill")})
            try:
                if progress is not None:  # tracked (query_progress) but never printed; it costs a little
                    con.execute("SET enable_progress_bar = true")
                    con.execute("SET enable_progress_bar_print = false")
                con.execute("SET preserve_insertion_order = false")
                if self.threads > 1:
                    # freed buffers go back to the system at once instead of waiting in DuckDB's
                    # allocator cache (128 MiB by default): 190 -> 142 MB peak RSS on 1 GB at 2
                    # threads, for a few percent of speed; one thread stays under 150 MB without it
                    con.execute("SET allocator_flush_threshold = '1MB'")
                    con.execute("SET allocator_bulk_deallocation_flush_threshold = '1MB'")
                self._view(con, inputs)
                self._aggregate(con, progress, checked=any(not i.trusted for i in inputs))
                if self.bad:
                    self._locate(con, inputs)
            finally:
                con.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if self.verified is not None:  # every checked backup not found holding a skipped line is whole
            damaged = {id(s) for s in self.bad_inputs}
            self.verified.add(i.key for i in inputs if i.key and not i.trusted and id(i.segment) not in damaged)

    def _inputs(self, folder: str) -> list[_Input]:
        """What DuckDB reads for each segment: whole backups through their descriptors, partial
        or live ones copied."""
        out = []
        for i, seg in enumerate(self.segments):
            fd = seg.handle.fileno()
            if seg.whole:
                key = identity(os.fstat(fd))
                trusted = self.verified is not None and key in self.verified
                out.append(_Input(f"/proc/self/fd/{fd}", seg.file.gz, seg, key, trusted))
                continue
            path = os.path.join(folder, f"part{i}.jsonl")
            dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _copy_range(fd, dst, seg.start, seg.end)
            finally:
                os.close(dst)
            out.append(_Input(path, False, seg, None, False))
        return out

    def _view(self, con: Any, inputs: list[_Input]) -> None:
        """``__src``: every input's rows plus ``__ok``, whether the line was a whole record. Trusted
        files are read without ``ignore_errors`` and with ``__ok`` a constant, so DuckDB neither
        extracts ``timestamp`` for them (unless the query needs it) nor tests it."""
        columns = "{" + ", ".join(f"{_literal(n)}: {_literal(t)}" for n, t in self._types.items()) + "}"
        selects: list[str] = []
        for trusted in (True, False):
            for gz in (False, True):
                paths = [i.path for i in inputs if i.gz is gz and i.trusted is trusted]
                if paths:
                    listed = "[" + ", ".join(_literal(p) for p in paths) + "]"
                    extra = ", compression='gzip'" if gz else ""
                    checks = "" if trusted else _CHECKED
                    selects.append(
                        f"SELECT *, {'true' if trusted else _OK} AS __ok FROM read_json({listed}, columns={columns}, "
                        f"format='newline_delimited', {checks}{_READ_OPTIONS}{extra})"
                    )
        body = " UNION ALL ".join(selects) if selects else "SELECT NULL::DOUBLE AS timestamp, false AS __ok LIMIT 0"
        con.execute(f"CREATE TEMP VIEW __src AS {body}")


    def _aggregate(self, con: Any, progress: Callable[[float], None] | None, *, checked: bool = True) -> None:
        params: list[Any] = []
        where = self._where(params)
        keys = self._key_exprs()
        sql_aggs, layout = self._aggregates()
        if checked:  # damaged lines all fall in one group of their own, keys NULL
            key_sql = [f"CASE WHEN __ok THEN {k} END AS __k{i}" for i, k in enumerate(keys)]
            group = "GROUP BY " + ", ".join([*(f"__k{i}" for i in range(len(keys))), "__ok"])
            select = ", ".join([*key_sql, "__ok", *sql_aggs])
            query = f"SELECT {select} FROM __src WHERE NOT __ok OR ({where}) {group} LIMIT {self.max_groups + 2}"
        else:  # only trusted files: the plain query
            key_sql = [f"{k} AS __k{i}" for i, k in enumerate(keys)]
            group = ("GROUP BY " + ", ".join(f"__k{i}" for i in range(len(keys)))) if keys else ""
            select = ", ".join([*key_sql, "true", *sql_aggs])
            query = (f"SELECT {select} FROM __src WHERE {where} {group} HAVING count(*) > 0 "
                     f"LIMIT {self.max_groups + 2}")
        rows = _execute(con, query, params, progress)
        if sum(1 for r in rows if r[len(keys)]) > self.max_groups:
            rows = self._folded(con, keys, where, params, key_sql, sql_aggs, progress)
        width = len(keys)
        for row in rows:
            key, ok, figures = tuple(row[:width]), row[width], row[width + 1:]
            if not ok:
                self.bad += int(figures[0])
                continue
            stats = _Stats()
            for (kind, name), value in zip(layout, _chunks(figures, layout), strict=True):
                _fill(stats, kind, name, value)
            self.groups[key] = stats
            self.matched += stats.count

    def _folded(self, con: Any, keys: list[str], where: str, params: list[Any], key_sql: list[str],
                sql_aggs: list[str], progress: Callable[[float], None] | None) -> list[Any]:
        """More groups than ``max_groups``: the top ones by count exactly, the rest as ``__other__``."""
        names = [f"__k{i}" for i in range(len(keys))]
        ranked = ", ".join(f"{k} AS __k{i}" for i, k in enumerate(keys))
        con.execute(f"CREATE TEMP TABLE __top AS SELECT {ranked} FROM __src WHERE __ok AND ({where}) "
                    f"GROUP BY ALL ORDER BY count(*) DESC LIMIT {self.max_groups}", params)
        distinct = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {ranked} FROM __src WHERE __ok AND ({where}))",
                               params).fetchone()
        self.folded = max(0, int(distinct[0]) - self.max_groups) if distinct else 0
        join = " AND ".join(f"t.{n} IS NOT DISTINCT FROM s.{n}" for n in names)
        folded_keys = ", ".join(
            f"CASE WHEN t.__hit THEN s.{n} ELSE {_literal(_OTHER)} END AS {n}" for n in names
        )
        inner = ", ".join([*key_sql, "*"])
        aggs = ", ".join(sql_aggs)
        query = (f"SELECT {folded_keys}, s.__ok, {aggs} FROM (SELECT {inner} FROM __src WHERE NOT __ok OR ({where})) s "
                 f"LEFT JOIN (SELECT *, true AS __hit FROM __top) t ON {join} GROUP BY ALL")
        return _execute(con, query, params, progress)

    def _locate(self, con: Any, inputs: list[_Input]) -> None:
        """Which inputs hold the skipped lines (the Python reader then says where and why).
        One small query per file, newest first, until all are found: the damage is rare and
        a single query over many files would need a read buffer per file at once."""
        remaining = self.bad
        for item in reversed(inputs):
            if item.trusted:
                continue
            extra = ", compression='gzip'" if item.gz else ""
            found = con.execute(
                f"SELECT count(*) FROM read_json({_literal(item.path)}, columns={{'timestamp': 'DOUBLE'}}, "
                f"format='newline_delimited', {_CHECKED}{_READ_OPTIONS}{extra}) WHERE NOT {_OK}"
            ).fetchone()
            if found and found[0]:
                self.bad_inputs.append(item.segment)
                remaining -= int(found[0])
                if remaining <= 0:
                    return


def _bind(value: Any, params: list[Any] | None) -> str:
    if params is not None:
        params.append(value)
        return "?"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "NULL"
    return _literal(str(value))


def _chunks(figures: Iterable[Any], layout: list[tuple[str, Any]]) -> list[Any]:
    it = iter(figures)
    out = []
    for kind, _ in layout:
        if kind == "num":
            out.append([next(it), next(it), next(it), next(it)])
        else:
            out.append(next(it))
    return out


def _fill(stats: _Stats, kind: str, name: Any, value: Any) -> None:
    if kind == "count":
        stats.count = int(value)
    elif kind == "first":
        stats.first_ts = math.inf if value is None else value
    elif kind == "last":
        stats.last_ts = -math.inf if value is None else value
    elif kind == "bad":
        stats.bad = int(value)
    elif kind == "errors":
        stats.errors = int(value)
    elif kind == "judged":
        stats.judged = int(value)
    elif kind == "num":
        n, total, low, high = value
        if total is not None and float(total).is_integer() and abs(total) < 2**53:
            total = int(total)
        stats.num[name] = [int(n), total or 0, low, high]
    elif kind == "quant":
        label, n = name
        stats.quant[label] = list(value) if value is not None else [None] * n
    elif kind == "latest":
        stats.latest[name] = (0, _decode(value))
    elif kind == "cond":
        stats.cond_counts.append(int(value))


def _decode(text: Any) -> Any:
    if text is None:
        return None
    import orjson

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return value if value.__class__ in (int, float) else text


def _execute(con: Any, query: str, params: list[Any], progress: Callable[[float], None] | None) -> list[Any]:
    if progress is None:
        return list(con.execute(query, params).fetchall())
    result: list[Any] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.extend(con.execute(query, params).fetchall())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
        with contextlib.suppress(Exception):
            done = con.query_progress()
            if done is not None and done >= 0:
                progress(float(done) / 100)
    if failure:
        raise failure[0]
    return result


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    """Bytes ``[start, end)`` of ``src`` to ``dst``, in the kernel when it can."""
    pos = start
    while pos < end:
        try:
            sent = os.sendfile(dst, src, pos, min(_COPY_CHUNK, end - pos))
        except OSError:
            sent = os.write(dst, os.pread(src, min(_COPY_CHUNK, end - pos), pos))
        if sent <= 0:
            raise OSError(f"copy of a log segment stopped at {pos} of {end}")
        pos += sent


def _scratch_folder(needed: int) -> str:
    """A private folder for copies and DuckDB's spill files: RAM-backed when it has room."""
    shm = "/dev/shm"
    with contextlib.suppress(OSError):
        if os.path.isdir(shm) and shutil.disk_usage(shm).free > 2 * needed + (64 << 20):
            return tempfile.mkdtemp(prefix="monitoring-query-", dir=shm)
    return tempfile.mkdtemp(prefix="monitoring-query-")
