"""The local engine: DuckDB computes a plan's figures over a snapshot of the log files.

DuckDB's ``read_json`` (newline-delimited, ``ignore_errors``) turns every line into one
row and a line it cannot read into a row of NULLs, so a damaged line is a row whose
``timestamp`` is NULL (or not finite): one scan gives the answer *and* the number of
skipped lines. Only when that number is not zero does a second, cheap query tell which
files hold them; the line reader (``lines.py``) then finds their line numbers and reasons.

Columns are read with the types the plan's uses give them (``plan.field_roles``): ``DOUBLE``
for a field aggregated or compared as a number, ``BOOLEAN`` for one compared with
``true``/``false``, ``VARCHAR`` otherwise; a field used several ways is read as ``JSON`` and
converted once per use with ``from_json`` (the transform ``read_json`` itself applies).

Whole rotated backups are read through
``/proc/self/fd/N`` from the descriptors the snapshot opened, so a rotation during the
query cannot swap them; the live file and any part of a file chosen by a time window are
first copied, byte-exact, into a private temporary folder (on ``/dev/shm`` when there is
room), so DuckDB reads exactly the snapshot. A compressed backup is unpacked into that
folder by the line reader (``files.read_segment``), which checks the archive's checksum
(DuckDB's own gzip reader does not) and keeps what a damaged one holds up to the damage:
both read the very same bytes, so the record stream and the aggregates always agree.

Opening a DuckDB database costs about 30 ms, a small query 2 ms: each thread keeps one
in-memory database between queries, dropped after a large scan (so its buffers go back
to the system) and after ``fork``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any, Final

from .columnar import _SQL_TYPE, Copy, _ident, _is_duck_error, _literal, discard, field_sql
from .files import Segment, read_segment
from .plan import OTHER, Figure, QueryPlan, field_roles, suspicious_fields
from .spec import Condition

__all__ = ["DuckScan"]

_COPY_CHUNK: Final = 1 << 24
_MAX_LINE: Final = 2 << 20
"""Longest line DuckDB reads (the writers cap theirs at 1 MiB); longer ones count as unreadable."""
_READ_OPTIONS: Final = (f"format='newline_delimited', ignore_errors=true, maximum_object_size={_MAX_LINE}, "
                        "auto_detect=false, records=true")
"""The columns are given, so nothing is sampled: sampling opens many files at once, each with
a 32 MiB buffer, and a family of many small backups would run out of memory. A line DuckDB
cannot read becomes a row of NULLs, counted as skipped."""
_OK: Final = "(timestamp IS NOT NULL AND isfinite(timestamp))"
_KEEP_CONNECTION_BELOW: Final = 64 << 20
"""A database that scanned more than this is closed afterwards: its allocator's cache goes with it."""
_UNPACKED_RATIO: Final = 12
"""Room to reserve per compressed byte when choosing where to unpack (JSON lines compress ~10:1)."""
_local = threading.local()


def _connection(threads: int, memory_limit: str) -> Any:
    """This thread's DuckDB database (opened on first use, again after a fork)."""
    import duckdb  # the engine is imported when the first question is asked, not with the package

    con = getattr(_local, "con", None)
    if con is None or _local.pid != os.getpid():
        con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
        con.execute("SET preserve_insertion_order = false")
        # freed buffers go back to the system at once instead of waiting in DuckDB's allocator
        # cache (128 MiB by default): peak RSS of a 1 GB scan stays near 150 MB
        con.execute("SET allocator_flush_threshold = '1MB'")
        con.execute("SET allocator_bulk_deallocation_flush_threshold = '1MB'")
        _local.con, _local.pid, _local.threads = con, os.getpid(), threads
    elif _local.threads != threads:
        con.execute(f"SET threads = {int(threads)}")
        _local.threads = threads
    return con


def _drop_connection() -> None:
    con = getattr(_local, "con", None)
    _local.con = None
    if con is not None:
        with contextlib.suppress(Exception):
            con.close()


@dataclass(frozen=True)
class _Input:
    path: str
    """What DuckDB reads: ``/proc/self/fd/N`` or a private copy."""
    segment: Segment


class DuckScan:
    """Compute ``plan``'s figures over ``segments``; ``groups`` then maps group keys to figures.

    ``bad`` counts the lines that were not whole records, ``bad_inputs`` lists the segments
    holding them, ``folded`` the distinct groups beyond ``max_groups`` and ``matched`` the
    records counted.
    """

    def __init__(self, plan: QueryPlan, segments: list[Segment], *, threads: int,
                 memory_limit: str = "512MB", check_fields: bool = True,
                 copies: Mapping[int, Copy] | None = None) -> None:
        self.plan = plan
        self.check_fields = check_fields
        self.segments = segments
        self.copies: dict[int, Copy] = dict(copies or {})
        """Segment index -> the columnar copy read instead of its JSON (``columnar.py``)."""
        self.copy_skips: list[tuple[Segment, Copy]] = []
        """Copies whose source holds damaged lines: their reasons and line numbers are in the copy."""
        self.threads = threads
        self.memory_limit = memory_limit
        self.groups: dict[tuple[Any, ...], dict[Figure, Any]] = {}
        self.bad = 0
        self.bad_inputs: list[Segment] = []
        self.folded = 0
        self.matched = 0
        self.unpacked: list[Segment] = []
        """Compressed segments that end early (or fail their checksum): read as far as they go."""
        self.absent: list[str] = []
        """Fields the plan names that occur in no record of the window (``suspicious_fields``)."""
        self.scanned = 0
        """Records in the window, whatever the filters (counted only when a field was checked)."""
        self._roles = field_roles(plan)

    # ------------------------------------------------------------------ SQL

    def _column(self, name: str, role: str) -> str:
        """The ``__src`` column holding ``name`` read as ``role``: the field's own name when it is
        read one way, else one column per way."""
        return _ident(name) if len(self._roles.get(name, ())) <= 1 else _ident(f"__{role}__{name}")

    def _num(self, name: str) -> str:
        return self._column(name, "num")

    def _bool(self, name: str) -> str:
        return self._column(name, "bool")

    def _text(self, name: str) -> str:
        return self._column(name, "text")

    def _columns(self, read: Callable[[str, str], str]) -> list[str]:
        """``__src``'s select list: each field once per way it is read, ``read(field, role)`` giving
        the SQL of a field read one way."""
        out = []
        for name, roles in self._roles.items():
            for role in sorted(roles):
                out.append(f"{read(name, role)} AS {self._column(name, role)}")
        return out

    def _equal(self, name: str, value: Any, params: list[Any] | None) -> str:
        """``name = value`` with the value bound as a parameter (or, with ``params=None``, written
        as an escaped literal: for the aggregates, which come before the WHERE's parameters)."""
        if value is None:
            return f"{self._text(name)} IS NULL"
        if value is True or value is False:
            return f"{self._bool(name)} = {_bind(value, params)}"
        if value.__class__ is str:
            return f"{self._text(name)} = {_bind(value, params)}"
        return f"{self._num(name)} = {_bind(float(value), params)}"

    def _condition(self, c: Condition, params: list[Any] | None) -> str:
        if c.op == "=":
            return self._equal(c.field, c.value, params)
        if c.op == "!=":
            eq = self._equal(c.field, c.value, params)
            return f"NOT COALESCE({eq}, false)" if c.value is not None else f"NOT ({eq})"
        if c.op == "in":
            return "(" + " OR ".join(f"COALESCE({self._equal(c.field, v, params)}, false)" for v in c.value) + ")"
        if c.op == "~":  # RE2, as written: Condition checked that re reads it alike (query/_regex.py)
            return f"regexp_matches({self._text(c.field)}, {_bind(c.value, params)})"
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
        parts.extend(self._condition(c, params) for c in plan.conditions)
        return " AND ".join(f"({p})" for p in parts) or "true"

    def _key_exprs(self) -> list[str]:
        exprs = [self._text(k) for k in self.plan.keys]
        if self.plan.width:
            width = float(self.plan.width)
            exprs.append(f"floor(timestamp / {width!r}) * {width!r}")
        return exprs

    def _figure(self, f: Figure) -> str:
        """The SQL of one figure: the only place a figure's meaning is written for DuckDB."""
        kind = f.kind
        if kind == "count":
            return "count(*)"
        if kind == "first":
            return "min(timestamp)"
        if kind == "last":
            return "max(timestamp)"
        if kind == "errors":
            return f"count(*) FILTER (WHERE {self._bool('success')} = false)"
        if kind == "judged":
            return f"count({self._bool('success')})"
        if kind in ("n", "sum", "min", "max"):
            return f"{'count' if kind == 'n' else kind}({self._num(str(f.field))})"
        if kind == "quantiles":
            return f"quantile_cont({self._num(str(f.field))}, [{', '.join(repr(q) for q in f.qs)}])"
        if kind == "latest":
            text = self._text(str(f.field))
            return f"arg_max({text}, timestamp) FILTER (WHERE {text} IS NOT NULL)"
        if kind == "count_if":
            assert f.condition is not None
            return f"count(*) FILTER (WHERE COALESCE({self._condition(f.condition, None)}, false))"
        raise AssertionError(f"no SQL for figure {f!r}")

    # ------------------------------------------------------------------ running

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        if self.copies:
            try:
                self._run(progress)
                return
            except Exception as exc:
                if not _is_duck_error(exc):  # DuckDB refused an input, rather than our code failing
                    raise
                self._forget_bad_copies()  # a copy DuckDB cannot read: the JSON answers, the copy is rebuilt
                self.groups, self.bad, self.bad_inputs, self.folded, self.matched = {}, 0, [], 0, 0
                self.unpacked, self.copy_skips, self.absent, self.scanned = [], [], [], 0
        self._run(progress)

    def _forget_bad_copies(self) -> None:
        # DuckDB is loaded when a copy is first built or read, not with the package
        import duckdb  # a dependency of the package, imported when a question needs it

        con = duckdb.connect(config={"threads": 1})
        try:
            for copy in self.copies.values():
                try:
                    con.execute(f"SELECT count(*) FROM (SELECT DISTINCT * FROM read_parquet({_literal(copy.path)}))"
                                ).fetchall()
                except duckdb.Error as exc:
                    discard(copy.path, f"unreadable: {exc}")
        finally:
            con.close()
        self.copies = {}

    def _run(self, progress: Callable[[float], None] | None) -> None:
        reading = [s for i, s in enumerate(self.segments) if i not in self.copies]
        tails = sum(s.end - c.upto for i, s in enumerate(self.segments)
                    if (c := self.copies.get(i)) is not None and c.upto is not None)
        folder = _scratch_folder(sum(s.end - s.start for s in reading if not s.whole) + tails
                                 + sum(_UNPACKED_RATIO * s.size for s in reading if s.file.gz))
        scanned = sum(s.end - s.start for s in reading) + tails
        con = _connection(self.threads, self.memory_limit).cursor()
        try:
            con.execute(f"SET temp_directory = {_literal(os.path.join(folder, 'spill'))}")
            if progress is not None:  # tracked (query_progress) but never printed; it costs a little
                con.execute("SET enable_progress_bar = true")
                con.execute("SET enable_progress_bar_print = false")
            self._scan(con, self._inputs(folder), progress)
        finally:
            con.close()
            shutil.rmtree(folder, ignore_errors=True)
            if scanned > _KEEP_CONNECTION_BELOW:
                _drop_connection()

    def _scan(self, con: Any, inputs: list[_Input], progress: Callable[[float], None] | None) -> None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW __src AS {self._source(inputs)}")
        self._aggregate(con, progress)
        if self.bad:
            self._locate(con, inputs)
        suspects = suspicious_fields(self.plan, self.groups) if self.check_fields else []
        if suspects and (inputs or self.copies):
            self._presence(con, inputs, suspects)

    def _presence(self, con: Any, inputs: list[_Input], fields: list[str]) -> None:
        """Which of ``fields`` occur in any record of the window, whatever its value's type (a
        second, narrow scan, made only when a field's figures all came out empty)."""
        columns = "{" + ", ".join([f"{_literal('timestamp')}: 'DOUBLE'",
                                   *(f"{_literal(f)}: 'JSON'" for f in fields)]) + "}"
        listed = "[" + ", ".join(_literal(i.path) for i in inputs) + "]"
        params: list[Any] = []
        window = [_OK]
        if self.plan.since is not None:
            params.append(self.plan.since)
            window.append("timestamp >= ?")
        if self.plan.until is not None:
            params.append(self.plan.until)
            window.append("timestamp < ?")
        counts = ", ".join(f"count({_ident(f)})" for f in fields)
        totals = [0] * (len(fields) + 1)
        if inputs:
            row = con.execute(f"SELECT count(*), {counts} FROM read_json({listed}, columns={columns}, "
                              f"{_READ_OPTIONS}) WHERE {' AND '.join(window)}", params).fetchone()
            totals = [int(n) for n in row]
        if self.copies:
            read = self._copy_reader()
            present = ", ".join(f"count({read(f, 'text')})" for f in fields)
            copies = "[" + ", ".join(_literal(c.path) for c in self.copies.values()) + "]"
            row = con.execute(f"SELECT count(*), {present} FROM read_parquet({copies}, union_by_name=true) "
                              f"WHERE {' AND '.join(window)}", params).fetchone()
            totals = [a + int(b) for a, b in zip(totals, row, strict=True)]
        self.scanned = totals[0]
        self.absent = [f for f, n in zip(fields, totals[1:], strict=True) if not n]

    def _inputs(self, folder: str) -> list[_Input]:
        """What DuckDB reads for each segment: whole backups through their descriptors, compressed
        ones unpacked, partial or live ones copied."""
        out = []
        for i, seg in enumerate(self.segments):
            stored = self.copies.get(i)
            if stored is not None and stored.upto is None:
                if stored.damaged:
                    self.unpacked.append(seg)
                continue
            fd = seg.handle.fileno()
            if stored is not None and stored.upto is not None:  # the copy holds the start, the JSON the rest
                if stored.upto < seg.end:
                    path = os.path.join(folder, f"rest{i}.jsonl")
                    dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    try:
                        _copy_range(fd, dst, stored.upto, seg.end)
                    finally:
                        os.close(dst)
                    out.append(_Input(path, dataclass_replace(seg, start=stored.upto, first_line=None)))
                continue
            if seg.file.gz:
                path = os.path.join(folder, f"unpacked{i}.jsonl")
                with open(path, "wb") as copy:
                    for chunk in read_segment(seg):
                        copy.write(chunk)
                if seg.damaged:
                    self.unpacked.append(seg)
                out.append(_Input(path, seg))
                continue
            if seg.whole:
                out.append(_Input(f"/proc/self/fd/{fd}", seg))
                continue
            path = os.path.join(folder, f"part{i}.jsonl")
            dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _copy_range(fd, dst, seg.start, seg.end)
            finally:
                os.close(dst)
            out.append(_Input(path, seg))
        return out

    def _source(self, inputs: list[_Input]) -> str:
        """``__src``: every input's rows plus ``__ok``, whether the line was a whole record."""
        declared = {n: (_SQL_TYPE[next(iter(r))] if len(r) == 1 else "JSON") for n, r in self._roles.items()}
        columns = "{" + ", ".join(f"{_literal(n)}: {_literal(t)}" for n, t in declared.items()) + "}"

        def read(name: str, role: str) -> str:
            if declared[name] != "JSON":
                return _ident(name)
            return f"from_json({_ident(name)}, {_literal(chr(34) + _SQL_TYPE[role] + chr(34))})"

        parts = []
        if inputs:
            listed = "[" + ", ".join(_literal(i.path) for i in inputs) + "]"
            parts.append(f"SELECT {', '.join(self._columns(read))}, {_OK} AS __ok "
                         f"FROM read_json({listed}, columns={columns}, {_READ_OPTIONS})")
        if self.copies:
            parts.append(self._copies_source())
        if not parts:
            return "SELECT NULL::DOUBLE AS timestamp, false AS __ok LIMIT 0"
        return " UNION ALL BY NAME ".join(f"({p})" for p in parts)

    def _copies_source(self) -> str:
        """The copies' rows with the plan's columns (``_copy_reader``)."""
        listed = "[" + ", ".join(_literal(c.path) for c in self.copies.values()) + "]"
        return (f"SELECT {', '.join(self._columns(self._copy_reader()))}, {_OK} AS __ok "
                f"FROM read_parquet({listed}, union_by_name=true)")

    def _copy_reader(self) -> Callable[[str, str], str]:
        """``read(field, role)``: the SQL reading a field of the copies' rows from their typed and companion
        columns exactly as ``read_json`` would read it from the JSON (``columnar.field_sql``), over the
        columns of all the copies read together."""
        kinds: dict[str, set[str]] = {}
        for copy in self.copies.values():
            for name, stored in copy.columns.items():
                kinds.setdefault(name, set()).update(stored)
        rest = any(copy.rest for copy in self.copies.values())

        def read(name: str, role: str) -> str:
            return "timestamp" if name == "timestamp" else field_sql(name, kinds.get(name, ()), role, rest)

        return read

    def _aggregate(self, con: Any, progress: Callable[[float], None] | None) -> None:
        """Damaged lines all fall in one group of their own (keys NULL, ``__ok`` false), so no
        figure needs a ``FILTER`` for them and the scan costs what the bare query costs."""
        params: list[Any] = []
        where = self._where(params)
        keys = self._key_exprs()
        figures = self.plan.figures
        sql_figures = [self._figure(f) for f in figures]
        key_sql = [f"CASE WHEN __ok THEN {k} END AS __k{i}" for i, k in enumerate(keys)]
        group = "GROUP BY " + ", ".join([*(f"__k{i}" for i in range(len(keys))), "__ok"])
        select = ", ".join([*key_sql, "__ok", *sql_figures])
        limit = self.plan.max_groups + 2
        rows = _execute(con, f"SELECT {select} FROM __src WHERE NOT __ok OR ({where}) {group} LIMIT {limit}",
                        params, progress)
        width = len(keys)
        if sum(1 for r in rows if r[width]) > self.plan.max_groups:
            rows = self._folded(con, keys, where, params, key_sql, sql_figures, progress)
        for row in rows:
            key, ok, values = tuple(row[:width]), row[width], row[width + 1:]
            if not ok:
                self.bad += int(values[0])
                continue
            found = dict(zip(figures, values, strict=True))
            self.groups[key] = found
            self.matched += int(found[Figure("count")])

    def _folded(self, con: Any, keys: list[str], where: str, params: list[Any], key_sql: list[str],
                sql_figures: list[str], progress: Callable[[float], None] | None) -> list[Any]:
        """More groups than ``max_groups``: the top ones by count exactly, the rest as ``__other__``."""
        names = [f"__k{i}" for i in range(len(keys))]
        ranked = ", ".join(f"{k} AS __k{i}" for i, k in enumerate(keys))
        cap = self.plan.max_groups
        ties = "".join(f", {n} ASC NULLS LAST" for n in names)  # the same top whatever reads the records
        con.execute(f"CREATE OR REPLACE TEMP TABLE __top AS SELECT {ranked} FROM __src WHERE __ok AND ({where}) "
                    f"GROUP BY ALL ORDER BY count(*) DESC{ties} LIMIT {cap}", params)
        distinct = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {ranked} FROM __src WHERE __ok AND ({where}))",
                               params).fetchone()
        self.folded = max(0, int(distinct[0]) - cap) if distinct else 0
        join = " AND ".join(f"t.{n} IS NOT DISTINCT FROM s.{n}" for n in names)
        # a folded row keeps NULL keys here (a time bucket is a number, not text): __hit says which
        folded_keys = ", ".join(f"CASE WHEN t.__hit THEN s.{n} END AS {n}" for n in names)
        inner = ", ".join([*key_sql, "*"])
        query = (f"SELECT coalesce(t.__hit, false) AS __kept, {folded_keys}, s.__ok, {', '.join(sql_figures)} "
                 f"FROM (SELECT {inner} FROM __src WHERE NOT __ok OR ({where})) s "
                 f"LEFT JOIN (SELECT *, true AS __hit FROM __top) t ON {join} GROUP BY ALL")
        other = (OTHER,) * len(keys)
        return [row[1:] if row[0] or not row[len(keys) + 1] else (*other, *row[len(keys) + 1:])
                for row in _execute(con, query, params, progress)]

    def _locate(self, con: Any, inputs: list[_Input]) -> None:
        """Which inputs hold the skipped lines (the line reader then says where and why).
        One small query per file, newest first, until all are found: the damage is rare and
        a single query over many files would need a read buffer per file at once."""
        remaining = self.bad
        for i, copy in self.copies.items():
            if copy.bad:
                self.copy_skips.append((self.segments[i], copy))
                remaining -= copy.bad
        if remaining <= 0:
            return
        for item in reversed(inputs):
            found = con.execute(
                f"SELECT count(*) FROM read_json({_literal(item.path)}, columns={{'timestamp': 'DOUBLE'}}, "
                f"{_READ_OPTIONS}) WHERE NOT {_OK}"
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

