"""Columnar copies of settled log files: parse a backup once, answer from typed columns after.

A rotated backup never changes again, so the JSON of it only needs to be parsed once. The
builder writes a Parquet copy (zstd, DuckDB's ``COPY … TO``) of each settled file into
``<log_dir>/.columnar/`` (hidden: no family, never cleaned as a log); a query reads the
copy instead of the JSON where a valid one exists (``duck.py``) and the JSON everywhere
else — the live file, a window that cuts a file, anything not yet covered. Copies are
derived data: deleting the folder loses nothing, the builder makes them again.

**Identity.** A copy is named after its source:
``<base>@<dev>-<inode>-<size>-<mtime_ns>-<fingerprint>.parquet`` (hex), the fingerprint
being a hash of the source's first line. Renames by rotation (``.1`` -> ``.2``) keep all
five, so the copy follows its file. A query recomputes the name from the descriptor it
opened, so a file that was appended to, replaced or truncated simply has no copy. When
the cleaner compresses ``.N`` to ``.N.gz`` (keeping the modification time) it renames the
copy to the archive's identity (``repoint``); the sidecar records the *content* identity —
first-line fingerprint, uncompressed length, modification time, rows — and a copy is
only used for a ``.gz`` whose gzip trailer agrees on the length (and for a plain file whose
size equals it). Any other compressor's archive gets its copy re-pointed by the builder
when the content identity matches, or a new one.

**Live files.** The part of a live file that no writer can still be changing (all of it when the
file has been idle a while, else up to a line end 2 MiB before its end) gets a *prefix copy*
``<base>@<dev>-<inode>-<length>-0-<fingerprint>``, made again each time the part not yet copied
is as large as the part copied (at least 1 MiB): a query reads the prefix copy and only the
rest of the file as JSON. A prefix copy is used only when the file still holds the same bytes
where the copy ends (a hash of the 4 KiB before that point, and the first line); it is dropped
once the file, rotated away, has its whole copy.

**Same answer.** Every top-level key of the file gets one typed column (``"name|s"`` text,
``|b`` boolean, ``|i`` integer within 2**53, ``|d`` finite real, ``|j`` any value as JSON text;
the kind is the one most values have in a sample of the file) holding the values of that kind.
A row holding a value of another kind (a number where the sample saw text, ``"true"`` as a
string, a huge integer, ``1e400``, a nested value) also keeps all its values as one JSON object
in ``__rest``. A query reads a field as the plan's type from the typed column with the
conversion ``read_json`` applies to a JSON value of that kind, and from ``__rest`` with
``from_json`` — DuckDB's own JSON transform, the one ``read_json`` uses. The key set is complete
by construction: either proved from byte counts (every ``:`` of the file is a key of a stored
column or inside a stored string, and no colon is escaped), or listed with ``json_keys`` over
the whole file. Damaged lines stay rows of the copy with the NULL timestamp ``read_json`` gives
them, so a query counts them exactly as it would over the JSON; their reasons, line numbers
and excerpts (from the line reader, at build time) are in the sidecar ``<name>.json``.

**Never wrong.** A copy is written under a temporary name and renamed, its sidecar first.
A copy whose sidecar is missing or unreadable, whose identity or size disagrees, or that
DuckDB cannot read is ignored with one warning (the JSON is read instead) and deleted, so
the builder makes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from .._copies import (
    FOLDER,
    PREFIX_MIN_BYTES,
    SETTLED_SECONDS,
    build_in_worker,
    copy_sizes,
    parse_any,
    prefix_due,
    prefix_end,
    prefix_index,
    prune,
    remove_copy_of,
    repoint,
)
from .._copies import TMP_PREFIX as _TMP_PREFIX
from .._copies import names as _names
from .._copies import remove as _remove
from .files import FamilyFile, Segment, discover, gzip_content_size, last_line_end, read_segment

__all__ = [
    "FOLDER", "PREFIX_MIN_BYTES", "SETTLED_SECONDS", "BuildResult", "Copy", "CoverageStatus", "build_copy",
    "build_in_worker", "build_pending", "copy_sizes", "find_copies", "prune", "remove_copy_of", "repoint",
    "set_default_enabled", "status",
]

_log = logging.getLogger("infrastructure.monitoring.query.columnar")

FORMAT: Final = 2
"""Bumped when the layout changes: copies of another format are ignored and rebuilt."""
_HEAD: Final = 64 * 1024
_MAX_KEYS: Final = 400
"""A file with more distinct top-level keys is not copied (the JSON is read)."""
_SAMPLE_LINES: Final = 2000
_BUILD_MEMORY: Final = "64MB"
_SAMPLE_LIMIT: Final = 100
_KINDS: Final = ("s", "b", "i", "d", "j")
_warned: set[str] = set()
_warn_lock = threading.Lock()
_switch = {"enabled": True}


def set_default_enabled(enabled: bool) -> None:
    """Whether a ``LogParser`` built without ``columnar=`` reads copies (``query.columnar_cache``; the
    command line sets it from the loaded configuration)."""
    _switch["enabled"] = bool(enabled)


def default_enabled() -> bool:
    return _switch["enabled"]


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class Identity:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    fingerprint: str

    def name(self, base: str) -> str:
        return f"{base}@{self.dev:x}-{self.ino:x}-{self.size:x}-{self.mtime_ns:x}-{self.fingerprint}"


def _fingerprint(head: bytes) -> str:
    cut = head.find(b"\n")
    return hashlib.blake2b(head if cut < 0 else head[:cut + 1], digest_size=8).hexdigest()


def _head(handle: IO[bytes], gz: bool) -> bytes:
    if not gz:
        return os.pread(handle.fileno(), _HEAD, 0)
    handle.seek(0)
    try:
        with gzip.GzipFile(fileobj=handle) as unpacked:
            return unpacked.read1(_HEAD)
    except (OSError, EOFError, zlib.error):
        return b""


def identity_of(handle: IO[bytes], gz: bool, st: os.stat_result | None = None) -> Identity:
    st = st or os.fstat(handle.fileno())
    return Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, _fingerprint(_head(handle, gz)))


# --------------------------------------------------------------------------- reading copies


@dataclass
class Copy:
    """A valid copy of one segment's file, as a query uses it."""

    path: str
    columns: dict[str, list[str]]
    """field -> the kinds stored for it (``s``/``b``/``i``/``d`` typed, ``j`` companion)."""
    bad: int
    skips: dict[str, Any]
    """``count``, ``by_reason``, ``samples`` ([line, offset, reason, excerpt]) of the damaged lines."""
    damaged: bool
    """Made from a compressed file that ends early (reported as one damaged archive)."""
    rest: bool = False
    """Some rows hold a value not of its column's kind: those rows are read from ``__rest``."""
    upto: int | None = None
    """A copy of the file's first ``upto`` bytes (a live file's settled part): the rest is read as JSON."""


def _warn(path: str, why: str) -> None:
    with _warn_lock:
        if path in _warned:
            return
        _warned.add(path)
    _log.warning("columnar copy %s ignored (%s); the JSON is read instead and the copy will be rebuilt", path, why)


def discard(path: str, why: str) -> None:
    """Ignore a copy with one warning and remove it (and its sidecar), so the builder makes it again."""
    _warn(path, why)
    for name in (path, path[: -len(".parquet")] + ".json"):
        with contextlib.suppress(OSError):
            os.unlink(name)


def _load_sidecar(path: str) -> dict[str, Any] | None:
    try:
        with open(path[: -len(".parquet")] + ".json", "rb") as handle:
            meta = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _valid(path: str, meta: dict[str, Any] | None, ident: Identity, gz: bool, fd: int) -> str | None:
    """Why the copy at ``path`` cannot stand for the file ``ident`` (None when it can)."""
    if meta is None:
        return "its sidecar is missing or unreadable"
    if meta.get("format") != FORMAT:
        return f"format {meta.get('format')!r}, expected {FORMAT}"
    if meta.get("unsupported"):
        return "unsupported"
    content = meta.get("content") or {}
    if content.get("fingerprint") != ident.fingerprint or content.get("mtime_ns") != ident.mtime_ns:
        return "its content identity differs from the file's"
    length = content.get("length")
    if not isinstance(length, int):
        return "no length recorded"
    if gz:
        isize = gzip_content_size(fd)  # a truncated archive has no trailer to compare with
        if not meta.get("damaged") and (isize is None or isize != length % (1 << 32)):
            return "the archive's length differs from the copy's source"
    elif length != ident.size:
        return "the file's size differs from the copy's source"
    if meta.get("prefix"):
        return "a prefix copy"
    return _valid_parquet(path, meta)


def _valid_parquet(path: str, meta: dict[str, Any]) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return "it vanished"
    if st.st_size != meta.get("bytes"):
        return f"it is {st.st_size} bytes, {meta.get('bytes')} were written (truncated or replaced)"
    with open(path, "rb") as handle:
        if os.pread(handle.fileno(), 4, 0) != b"PAR1" or os.pread(handle.fileno(), 4, st.st_size - 4) != b"PAR1":
            return "not a Parquet file (bad header or footer)"
    columns = meta.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(k, list) and set(k) <= set(_KINDS)
                                                for k in columns.values()):
        return "its column list does not fit"
    return None


def find_copies(log_dir: str | os.PathLike[str], segments: list[Segment]) -> dict[int, Copy]:
    """Segment index -> its valid copy: a whole copy for a settled segment read whole, else the longest
    valid prefix copy of a plain file read from its start. Never raises: anything odd means the JSON
    is read."""
    folder = os.path.join(log_dir, FOLDER)
    try:
        names = set(os.listdir(folder))
    except OSError:
        return {}
    prefixes = prefix_index(names)
    found: dict[int, Copy] = {}
    for i, seg in enumerate(segments):
        if seg.start or (seg.file.index == 0 and not prefixes):
            continue
        try:
            copy = _whole_copy(folder, names, seg) if seg.whole and seg.file.index > 0 else None
            if copy is None and not seg.file.gz:
                copy = _prefix_copy(folder, prefixes, seg)
        except OSError as exc:
            _log.debug("no columnar copy for %s: %s", seg.file.path, exc)
            continue
        if copy is not None:
            found[i] = copy
    return found


def _as_copy(path: str, meta: dict[str, Any], upto: int | None = None) -> Copy:
    return Copy(path, {k: list(v) for k, v in meta["columns"].items()}, int(meta.get("bad", 0)),
                meta.get("skips") or {}, bool(meta.get("damaged")), bool(meta.get("rest_rows")), upto)


def _whole_copy(folder: str, names: set[str], seg: Segment) -> Copy | None:
    ident = identity_of(seg.handle, seg.file.gz)
    name = ident.name(seg.file.base) + ".parquet"
    if name not in names:
        return None
    path = os.path.join(folder, name)
    meta = _load_sidecar(path)
    why = _valid(path, meta, ident, seg.file.gz, seg.handle.fileno())
    if why is not None or meta is None:
        discard(path, why or "no sidecar")
        return None
    return _as_copy(path, meta)


def _prefix_copy(folder: str, prefixes: dict[tuple[int, int], list[tuple[int, str]]], seg: Segment) -> Copy | None:
    fd = seg.handle.fileno()
    st = os.fstat(fd)
    usable = sorted((n for n in prefixes.get((st.st_dev, st.st_ino), []) if n[0] <= seg.end), reverse=True)
    if not usable:
        return None
    fingerprint = _fingerprint(_head(seg.handle, False))
    n, name = usable[0]
    path = os.path.join(folder, name)
    meta = _load_sidecar(path)
    why = _valid_prefix(path, meta, fingerprint, fd, n)
    if why is not None or meta is None:
        discard(path, why or "no sidecar")
        return None
    return _as_copy(path, meta, n)


def _tail_hash(fd: int, n: int) -> str:
    """A hash of the last 4 KiB before ``n``: where a prefix copy ends, the file must be unchanged."""
    start = max(0, n - 4096)
    return hashlib.blake2b(os.pread(fd, n - start, start), digest_size=8).hexdigest()


def _valid_prefix(path: str, meta: dict[str, Any] | None, fingerprint: str, fd: int, n: int) -> str | None:
    if meta is None:
        return "its sidecar is missing or unreadable"
    if meta.get("format") != FORMAT or not meta.get("prefix"):
        return f"format {meta.get('format')!r}, expected {FORMAT}"
    content = meta.get("content") or {}
    if content.get("fingerprint") != fingerprint or content.get("length") != n:
        return "its content identity differs from the file's"
    if content.get("tail") != _tail_hash(fd, n):
        return "the file differs from the copy where the copy ends"
    return _valid_parquet(path, meta)


_SQL_TYPE: Final = {"num": "DOUBLE", "bool": "BOOLEAN", "text": "VARCHAR"}


def _col(name: str, kind: str) -> str:
    return '"' + f"{name}|{kind}".replace('"', '""') + '"'


def field_sql(name: str, kinds: Iterable[str], want: str, rest: bool = False) -> str:
    """SQL reading field ``name`` as ``want`` (num/bool/text) from a copy's typed columns ``kinds``, with
    the conversion ``read_json`` applies to a JSON value of each kind; with ``rest``, rows that hold
    ``__rest`` are read from it with ``from_json`` (DuckDB's JSON transform, the one ``read_json`` uses).
    Within a file a field has one column; across files the others are NULL, so the first non-NULL
    conversion is the value."""
    sql_type = _SQL_TYPE[want]
    parts = []
    for kind in sorted(kinds, key=_KINDS.index):
        col = _col(name, kind)
        if kind == "s":
            parts.append(col if want == "text" else f"TRY_CAST({col} AS {sql_type})")
        elif kind == "b":
            parts.append(col if want == "bool" else f"CAST({col} AS {sql_type})")
        elif kind in ("i", "d"):
            if want == "num":
                parts.append(col if kind == "d" else f"CAST({col} AS DOUBLE)")
            elif want == "bool":
                parts.append(f"({col} <> 0)")
            else:
                parts.append(f"CAST({col} AS VARCHAR)")
        else:
            parts.append(f"from_json({col}, '\"{sql_type}\"')")
    typed = f"NULL::{sql_type}" if not parts else parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"
    if not rest:
        return typed
    shape = _literal(orjson.dumps({name: sql_type}).decode())
    return f"CASE WHEN __rest IS NULL THEN {typed} ELSE from_json(__rest, {shape})[{_literal(name)}] END"


# --------------------------------------------------------------------------- building


@dataclass
class BuildResult:
    path: str
    """The source file."""
    copy: str | None = None
    built: bool = False
    reason: str = ""
    seconds: float = 0.0
    source_bytes: int = 0
    copy_bytes: int = 0


def _kind(value: Any) -> str:
    cls = value.__class__
    if cls is bool:
        return "b"
    if cls is int:
        return "i" if abs(value) < 2**53 else "j"
    if cls is float:
        return "d"
    if cls is str:
        return "s"
    return "j"


def _sample_kinds(path: str) -> dict[str, str]:
    """Each top-level key of the first lines -> the kind most of its values have."""
    seen: dict[str, dict[str, int]] = {}
    with open(path, "rb") as handle:
        for n, line in enumerate(handle):
            if n >= _SAMPLE_LINES:
                break
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.__class__ is not dict:
                continue
            for key, value in record.items():
                if value is not None:
                    counts = seen.setdefault(key, {})
                    k = _kind(value)
                    counts[k] = counts.get(k, 0) + 1
    return {key: max(counts, key=lambda k: counts[k]) for key, counts in seen.items()}


def _byte_counts(path: str) -> tuple[int, bool]:
    """Colons in the file, and whether it holds an escaped one (``\\u003a``), in one pass."""
    colons = 0
    escaped = False
    tail = b""
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(1 << 22):
            colons += chunk.count(b":")
            if not escaped and b"\\u003" in tail + chunk:
                window = (tail + chunk).lower()
                escaped = b"\\u003a" in window
            tail = chunk[-5:]
    return colons, escaped


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value_sql(t: str, kind: str) -> tuple[str, str]:
    """(parsed, canonical) SQL over ``t``, one key's value as JSON text (``yyjson``'s serialization:
    no spaces, strings quoted, integers without a point or exponent). The typed column keeps the
    parsed value where it is canonical: of the column's kind, read back exactly as ``read_json``
    reads the JSON value (see ``field_sql``). ``parsed`` is referred to as ``{v}`` in ``canonical``."""
    if kind == "s":
        return (f"CASE WHEN contains({t}, '\\') THEN json_extract_string({t}, '$') "
                f"ELSE substr({t}, 2, length({t}) - 2) END",
                f"starts_with({t}, '\"')")
    if kind == "b":
        return f"({t} = 'true')", f"({t} = 'true' OR {t} = 'false')"
    if kind == "i":
        return (f"TRY_CAST({t} AS BIGINT)",
                "({v} BETWEEN -9007199254740991 AND 9007199254740991 AND NOT contains(" + t + ", '.') AND "
                "NOT contains(" + t + ", 'e') AND NOT contains(" + t + ", 'E'))")
    if kind == "d":
        return (f"TRY_CAST({t} AS DOUBLE)",
                "(isfinite({v}) AND (contains(" + t + ", '.') OR contains(" + t + ", 'e') OR contains(" + t
                + ", 'E')))")
    return t, "true"


def _connect(memory_limit: str) -> Any:
    # DuckDB is loaded when a copy is first built or read, not with the package
    import duckdb

    con = duckdb.connect(config={"threads": 1, "memory_limit": memory_limit})
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET allocator_flush_threshold = '1MB'")
    return con


def _all_keys(con: Any, path: str) -> list[str] | None:
    """Every top-level key of the file's objects (None beyond ``_MAX_KEYS``)."""
    # duck imports this module at its top: its reading options are taken when a copy is built
    from .duck import _MAX_LINE

    rows = con.execute(
        f"SELECT DISTINCT unnest(json_keys(json)) FROM read_json_objects({_literal(path)}, "
        f"format='newline_delimited', ignore_errors=true, maximum_object_size={_MAX_LINE}) "
        "WHERE json_type(json) = 'OBJECT' LIMIT " + str(_MAX_KEYS + 1)).fetchall()
    keys = [r[0] for r in rows]
    return None if len(keys) > _MAX_KEYS else keys


def _write(con: Any, path: str, out: str, kinds: dict[str, str], options: str) -> dict[str, list[str]]:
    """COPY the typed read of ``path`` to ``out``: one typed column per key, and ``__rest`` holding, for
    a row with a value not of its column's kind, every value of the row as a JSON object (rare rows:
    one such column costs little, one companion per key would cost more than the rest of the copy)."""
    keys = [k for k in kinds if k != "timestamp"]
    columns = {"timestamp": "DOUBLE", **dict.fromkeys(keys, "JSON")}
    spec = "{" + ", ".join(f"{_literal(n)}: {_literal(t)}" for n, t in columns.items()) + "}"
    texts, parsed, checked, final = ["timestamp"], ["*"], ["*"], ["timestamp"]
    flags = []
    for n, key in enumerate(keys):
        t, v, ok = f"__t{n}", f"__v{n}", f"__ok{n}"
        value, canon = _value_sql(t, kinds[key])
        texts.append(f"CAST({_ident(key)} AS VARCHAR) AS {t}")
        parsed.append(f"{value} AS {v}")
        if canon == "true":
            final.append(f"{v} AS {_col(key, kinds[key])}")
            continue
        checked.append(f"({t} IS NULL OR COALESCE({canon.format(v=v)}, false)) AS {ok}")
        final.append(f"CASE WHEN {ok} THEN {v} END AS {_col(key, kinds[key])}")
        flags.append(ok)
    if flags:
        whole = ", ".join(f"{_literal(k)}, CAST(__t{n} AS JSON)" for n, k in enumerate(keys))
        final.append(f"CASE WHEN NOT ({' AND '.join(flags)}) THEN CAST(json_object({whole}) AS VARCHAR) END AS __rest")
    else:
        final.append("NULL::VARCHAR AS __rest")
    source = f"read_json({_literal(path)}, columns={spec}, {options})"
    query = (f"SELECT {', '.join(final)} FROM (SELECT {', '.join(checked)} FROM (SELECT {', '.join(parsed)} FROM "
             f"(SELECT {', '.join(texts)} FROM {source})))")
    rows = max(8192, min(122880, 1_500_000 // len(final)))  # a row group is held in memory until written
    con.execute(f"COPY ({query}) TO {_literal(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {rows})")
    return {k: [kinds[k]] for k in keys}


def _complete(con: Any, out: str, written: dict[str, list[str]], colons: int) -> tuple[bool, int]:
    """(is every key of the file a stored column?, rows with ``__rest``). Each key has exactly one colon;
    the file's other colons are inside strings. When no row needed ``__rest`` and the file holds no
    escaped colon, the stored strings hold exactly their raw colons, so (keys present in stored
    columns) + (colons inside stored strings and JSON texts) == (colons in the file) leaves no room
    for a key that is not stored."""
    present = ["count(timestamp)"]
    inside = []
    for key, kinds in written.items():
        for k in kinds:
            c = _col(key, k)
            present.append(f"count({c})")
            if k in ("s", "j"):
                inside.append(f"COALESCE(sum(length({c}) - length(replace({c}, ':', ''))), 0)")
    row = con.execute(f"SELECT {' + '.join(present + inside)}, count(__rest) FROM read_parquet({_literal(out)})"
                      ).fetchone()
    if not row:
        return False, 0
    rest = int(row[1])
    return rest == 0 and int(row[0]) == colons, rest


def _skip_report(segment: Segment) -> dict[str, Any]:
    """Reasons, line numbers and excerpts of the damaged lines, from the line reader."""
    # the line reader is needed only for a file with damaged lines
    from .lines import SkipReport, read_records

    report = SkipReport()
    for _ in read_records(segment, report, since=float("inf"), ends=False):
        pass
    return {"count": report.count, "by_reason": report.by_reason,
            "samples": [[s.line, s.offset, s.reason, s.excerpt] for s in report.samples[:_SAMPLE_LIMIT]]}


def build_copy(log_dir: str | os.PathLike[str], source: FamilyFile, *, memory_limit: str = _BUILD_MEMORY,
               con: Any = None, prefix: bool = False) -> BuildResult:
    """Write the columnar copy of one settled file (nothing when a valid one exists); with ``prefix``,
    of the settled part of a plain file still written to (its first bytes up to a line end that no
    writer can still be writing). Never raises for a file it cannot copy: the reason is in the result
    and queries read the JSON."""
    started = time.perf_counter()
    result = BuildResult(str(source.path))
    folder = os.path.join(log_dir, FOLDER)
    try:
        handle = open(source.path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        result.reason = f"cannot open: {exc}"
        return result
    own = con is None
    failed: Identity | None = None
    try:
        with handle, tempfile.TemporaryDirectory(prefix="monitoring-columnar-") as scratch:
            st = os.fstat(handle.fileno())
            names = _names(folder)  # listed once: what copies and markers this build starts from
            planned = _plan(folder, names, source, handle, st, prefix, result)
            if planned is None:
                return result
            ident, upto = planned
            failed = ident
            os.makedirs(folder, exist_ok=True)
            if con is None:
                con = _connect(memory_limit)
            _build(con, folder, names, source, handle, st, ident, scratch, result, upto)
            return result
    except Exception as exc:
        if not _is_duck_error(exc) and not isinstance(exc, OSError):
            raise
        result.reason = f"{type(exc).__name__}: {exc}"
        _log.warning("columnar copy of %s not built: %s", source.path, result.reason)
        if failed is not None:
            _unsupported(folder, failed.name(source.base), failed, BuildResult(result.path),
                         f"build failed: {result.reason[:200]}", retry=True)
        return result
    finally:
        if own and con is not None:
            with contextlib.suppress(Exception):
                con.close()
        for leftover in Path(folder).glob(f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        result.seconds = time.perf_counter() - started


def _refused(folder: str, names: list[str], st: os.stat_result, whole: bool) -> str | None:
    """Why this file is not to be copied (a marker a build left), while that still holds."""
    for name in names:
        parsed = parse_any(name) if name.endswith(".json") else None
        if parsed is None or parsed[1][:2] != (st.st_dev, st.st_ino):
            continue
        if whole and parsed[1][2:] != (st.st_size, st.st_mtime_ns):
            continue
        meta = _load_sidecar(os.path.join(folder, name[: -len(".json")] + ".parquet"))
        if meta and meta.get("unsupported") and (not meta.get("retry_at") or time.time() < float(meta["retry_at"])):
            return str(meta["unsupported"])
    return None


def _plan(folder: str, names: list[str], source: FamilyFile, handle: IO[bytes], st: os.stat_result, prefix: bool,
          result: BuildResult) -> tuple[Identity, int | None] | None:
    """The identity of the copy to build and where it ends (None: the whole file), or None (with the
    reason in ``result``) when there is nothing to build."""
    refused = _refused(folder, names, st, not prefix)
    if refused is not None:
        result.reason = f"not copied: {refused}"
        return None
    if prefix:
        upto = _prefix_target(names, source, handle, st)
        if upto is None:
            result.reason = "prefix copy up to date"
            return None
        return Identity(st.st_dev, st.st_ino, upto, 0, _fingerprint(_head(handle, False))), upto
    if time.time() - st.st_mtime < SETTLED_SECONDS:
        result.reason = "not settled yet"
        return None
    ident = identity_of(handle, source.gz, st)
    final = os.path.join(folder, ident.name(source.base) + ".parquet")
    if os.path.exists(final) and _valid(final, _load_sidecar(final), ident, source.gz, handle.fileno()) is None:
        result.copy, result.reason = final, "already built"
        return None
    if os.path.isdir(folder) and _repoint_by_content(folder, source.base, ident, source.gz, handle.fileno()):
        result.copy, result.reason = final, "re-pointed"
        return None
    return ident, None


def _prefix_target(names: list[str], source: FamilyFile, handle: IO[bytes], st: os.stat_result) -> int | None:
    """Where a new prefix copy of this plain file would end, or None when the one there is enough (the
    scheduled service's rule, ``_copies.prefix_due``, applied at the line end it can only guess)."""
    if source.gz:
        return None
    done = max((n for n, _ in prefix_index(names).get((st.st_dev, st.st_ino), [])), default=0)
    end = prefix_end(st.st_size, st.st_mtime, time.time())
    if not prefix_due(end, done):
        return None
    upto = last_line_end(handle.fileno(), end)
    return upto if prefix_due(upto, done) else None


def _text_of(source: FamilyFile, handle: IO[bytes], st: os.stat_result, scratch: str, upto: int | None,
             segment: Segment) -> str | None:
    """The path DuckDB reads: the file itself, its unpacked archive, or its first ``upto`` bytes; None
    for a settled file that ends in a torn line (read as JSON, where the torn line is reported)."""
    # duck imports this module at its top: its reading options are taken when a copy is built
    from .duck import _copy_range

    fd = handle.fileno()
    if source.gz:
        path = os.path.join(scratch, "unpacked.jsonl")
        with open(path, "wb") as out:
            for chunk in read_segment(segment):
                out.write(chunk)
        segment.end = os.path.getsize(path)
        return path
    if upto is not None:
        path = os.path.join(scratch, "prefix.jsonl")
        out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _copy_range(fd, out_fd, 0, upto)
        finally:
            os.close(out_fd)
        return path
    if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
        return None
    return f"/proc/self/fd/{fd}"


def _typed_copy(con: Any, path: str, tmp: str) -> tuple[dict[str, list[str]], int] | None:
    """Write the copy of ``path`` to ``tmp`` with every key of the file; (columns, rows in ``__rest``),
    or None when the file's keys cannot be columns (too many, or differing only by case)."""
    # duck imports this module at its top: its reading options are taken when a copy is built
    from .duck import _READ_OPTIONS

    kinds = _sample_kinds(path)
    kinds.pop("timestamp", None)
    if len(kinds) > _MAX_KEYS or _case_clash(kinds):
        return None
    colons, escaped = _byte_counts(path)
    written = _write(con, path, tmp, kinds, _READ_OPTIONS)
    complete, rest = _complete(con, tmp, written, colons)
    if escaped or not complete:
        keys = _all_keys(con, path)
        if keys is None or _case_clash(dict.fromkeys(k for k in keys if k != "timestamp")):
            return None
        full = {k: kinds.get(k, "j") for k in keys if k != "timestamp"}
        if set(full) != set(kinds):
            written = _write(con, path, tmp, full, _READ_OPTIONS)
            rest = _complete(con, tmp, written, colons)[1]
    return written, rest


def _build(con: Any, folder: str, names: list[str], source: FamilyFile, handle: IO[bytes], st: os.stat_result,
           ident: Identity, scratch: str, result: BuildResult, upto: int | None = None) -> None:
    fd = handle.fileno()
    name = ident.name(source.base)
    size = st.st_size if upto is None else upto
    segment = Segment(source, handle, 0, size, 1, 0, size)
    path = _text_of(source, handle, st, scratch, upto, segment)
    if path is None:
        _unsupported(folder, name, ident, result, "it ends in a torn line")
        return
    length = os.path.getsize(path) if source.gz else size
    result.source_bytes = length
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{name}.parquet")
    typed = _typed_copy(con, path, tmp)
    if typed is None:
        _unsupported(folder, name, ident, result, "too many keys, or keys that differ only by case")
        return
    written, rest = typed
    stats = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE NOT (timestamp IS NOT NULL AND isfinite(timestamp))) "
        f"FROM read_parquet({_literal(tmp)})").fetchone()
    rows, bad = (int(stats[0]), int(stats[1])) if stats else (0, 0)
    skips = _skip_report(segment) if bad else {"count": 0, "by_reason": {}, "samples": []}
    content: dict[str, Any] = {"fingerprint": ident.fingerprint, "length": length, "rows": rows}
    if upto is None:
        after = os.fstat(fd)
        changed = (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns)
        content["mtime_ns"] = ident.mtime_ns
    else:
        content["tail"] = _tail_hash(fd, upto)
        changed = content["tail"] != hashlib.blake2b(_file_tail(path, upto), digest_size=8).hexdigest()
    if changed:
        result.reason = "the file changed while it was copied"
        return
    meta: dict[str, Any] = {
        "format": FORMAT, "source": str(source.path), "base": source.base, "prefix": upto is not None,
        "content": content, "columns": written, "rest_rows": rest, "rows": rows, "bad": bad, "skips": skips,
        "damaged": segment.damaged, "bytes": os.path.getsize(tmp), "built": time.time(),
    }
    _publish(folder, name, tmp, meta)
    if os.fstat(fd).st_nlink == 0:  # deleted by the cleaner meanwhile: keep no orphan
        _remove(folder, name)
        result.reason = "the file was deleted while it was copied"
        return
    if upto is not None:  # the shorter prefix copies of this file are superseded
        for n, shorter in prefix_index(names).get((st.st_dev, st.st_ino), []):
            if n < upto:
                _remove(folder, shorter[: -len(".parquet")])
    result.copy, result.built, result.copy_bytes = os.path.join(folder, name + ".parquet"), True, int(meta["bytes"])


def _file_tail(path: str, n: int) -> bytes:
    """The bytes of the copied text just before ``n`` (what the tail hash of the source must match)."""
    with open(path, "rb") as handle:
        start = max(0, n - 4096)
        return os.pread(handle.fileno(), n - start, start)


def _is_duck_error(exc: BaseException) -> bool:
    try:
        # DuckDB is loaded when a copy is first built or read, not with the package
        import duckdb
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, duckdb.Error)


def _case_clash(keys: dict[str, Any]) -> bool:
    lowered = {k.lower() for k in keys}
    return len(lowered) != len(keys) or any(k == "" or "|" in k for k in keys) or "timestamp" in {
        k.lower() for k in keys if k != "timestamp"}


def _publish(folder: str, name: str, tmp: str, meta: dict[str, Any]) -> None:
    """Sidecar first, then the copy, each renamed into place: a copy is never seen without its sidecar."""
    side_tmp = tmp[: -len(".parquet")] + ".json"
    with open(side_tmp, "wb") as handle:
        handle.write(orjson.dumps(meta))
    os.rename(side_tmp, os.path.join(folder, name + ".json"))
    os.rename(tmp, os.path.join(folder, name + ".parquet"))


_RETRY_FAILED_SECONDS: Final = 3600.0
"""A build that failed (out of memory, disk full, …) is tried again after this long, not every run."""


def _unsupported(folder: str, name: str, ident: Identity, result: BuildResult, why: str,
                 retry: bool = False) -> BuildResult:
    """Remember that this file is read as JSON (a sidecar without a copy), so it is not tried again
    (or, with ``retry``, not before ``_RETRY_FAILED_SECONDS``)."""
    meta: dict[str, Any] = {"format": FORMAT, "unsupported": why,
                            "content": {"fingerprint": ident.fingerprint, "mtime_ns": ident.mtime_ns}}
    if retry:
        meta["retry_at"] = time.time() + _RETRY_FAILED_SECONDS
    path = os.path.join(folder, name + ".json")
    with contextlib.suppress(OSError):
        tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{name}.json")
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps(meta))
        os.rename(tmp, path)
    result.reason = f"not copied: {why}"
    return result


def _repoint_by_content(folder: str, base: str, ident: Identity, gz: bool, fd: int) -> bool:
    """A copy of the same content under another identity (compressed by another tool, or moved):
    rename it to this file's identity."""
    if not gz:
        return False
    suffix = f"-{ident.mtime_ns:x}-{ident.fingerprint}.parquet"
    for entry in os.scandir(folder):
        if entry.name.startswith(base + "@") and entry.name.endswith(suffix):
            meta = _load_sidecar(entry.path)
            target = ident.name(base)
            if meta is not None and meta.get("format") == FORMAT and _valid(entry.path, meta, ident, gz, fd) is None:
                old = entry.name[: -len(".parquet")]
                with contextlib.suppress(OSError):
                    os.rename(os.path.join(folder, old + ".json"), os.path.join(folder, target + ".json"))
                    os.rename(entry.path, os.path.join(folder, target + ".parquet"))
                    return True
    return False


# --------------------------------------------------------------------------- the folder


def _plain_files(log_dir: str | os.PathLike[str]) -> list[FamilyFile]:
    """Every family file, newest first within each family."""
    out: list[FamilyFile] = []
    for files in discover(log_dir).values():
        out.extend(reversed(files))
    return out


@dataclass
class CoverageStatus:
    log_dir: str
    files: int = 0
    bytes: int = 0
    covered_files: int = 0
    covered_bytes: int = 0
    copy_bytes: int = 0
    pending: list[str] = field(default_factory=list)
    pending_bytes: int = 0
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    live_files: int = 0
    live_bytes: int = 0
    live_covered_bytes: int = 0
    """Bytes of the live files read through prefix copies (the rest of them is read as JSON)."""

    def to_dict(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "files": self.files, "bytes": self.bytes,
                "covered_files": self.covered_files, "covered_bytes": self.covered_bytes,
                "copy_bytes": self.copy_bytes, "pending": self.pending, "pending_bytes": self.pending_bytes,
                "unsupported": [list(u) for u in self.unsupported], "live_files": self.live_files,
                "live_bytes": self.live_bytes, "live_covered_bytes": self.live_covered_bytes}


def status(log_dir: str | os.PathLike[str]) -> CoverageStatus:
    """Coverage: the settled files with a valid copy, what is pending, how much of the live files has a
    prefix copy, what the copies take."""
    out = CoverageStatus(str(log_dir))
    folder = os.path.join(log_dir, FOLDER)
    names = set(_names(folder))
    prefixes = prefix_index(names)
    for f in _plain_files(log_dir):
        try:
            with open(f.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                seg = Segment(f, handle, 0, st.st_size, 1, 0, st.st_size)
                if f.index == 0:
                    out.live_files += 1
                    out.live_bytes += st.st_size
                    prefix = _prefix_copy(folder, prefixes, seg) if not f.gz else None
                    out.live_covered_bytes += prefix.upto or 0 if prefix is not None else 0
                    continue
                out.files += 1
                out.bytes += st.st_size
                ident = identity_of(handle, f.gz, st)
                path = os.path.join(folder, ident.name(f.base) + ".parquet")
                meta = _load_sidecar(path)
                if meta is not None and meta.get("unsupported"):
                    out.unsupported.append((str(f.path), str(meta["unsupported"])))
                    continue
                if path[len(folder) + 1:] in names and _valid(path, meta, ident, f.gz, handle.fileno()) is None:
                    out.covered_files += 1
                    out.covered_bytes += st.st_size
                    continue
        except OSError:
            continue
        out.pending.append(str(f.path))
        out.pending_bytes += f.size
    for name in names:
        if not name.startswith("."):
            with contextlib.suppress(OSError):
                out.copy_bytes += os.stat(os.path.join(folder, name)).st_size
    return out


@contextlib.contextmanager
def _build_lock(folder: str) -> Iterator[bool]:
    """One builder per folder at a time, across processes (every worker of a server runs the service)."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, ".build.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def build_pending(log_dir: str | os.PathLike[str], *, max_files: int | None = None, max_seconds: float | None = None,
                  memory_limit: str = _BUILD_MEMORY) -> list[BuildResult]:
    """Build the missing copies one file at a time — settled backups (newest first), then the settled
    part of each live file when it has grown enough — then prune what no longer stands for a file.
    Returns at once when another process is building this folder."""
    started = time.monotonic()
    results: list[BuildResult] = []
    folder = os.path.join(log_dir, FOLDER)
    if not any(True for _ in _plain_files(log_dir)):
        return results
    with _build_lock(folder) as mine:
        if not mine:
            return results
        prune(log_dir)
        con = None
        try:
            work = [(f, False) for f in _plain_files(log_dir) if f.index > 0]
            work += [(f, True) for f in _plain_files(log_dir) if f.index == 0 and not f.gz]
            for source, prefix in work:
                if max_files is not None and sum(1 for r in results if r.built) >= max_files:
                    break
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                if con is None:
                    con = _connect(memory_limit)
                result = build_copy(log_dir, source, memory_limit=memory_limit, con=con, prefix=prefix)
                if result.reason not in ("already built", "not settled yet", "prefix copy up to date"):
                    results.append(result)
        finally:
            if con is not None:
                with contextlib.suppress(Exception):
                    con.close()
        prune(log_dir)
    return results


def _main(argv: list[str] | None = None) -> int:
    # only the scheduled build and the command line need it
    import argparse

    ap = argparse.ArgumentParser(prog="python -m infrastructure.monitoring.query.columnar",
                                 description="Build the missing columnar copies of a log folder.")
    ap.add_argument("log_dir")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--memory", default=_BUILD_MEMORY)
    args = ap.parse_args(argv)
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    for r in build_pending(args.log_dir, max_files=args.max_files, max_seconds=args.max_seconds,
                           memory_limit=args.memory):
        print(orjson.dumps({"file": r.path, "built": r.built, "reason": r.reason, "seconds": round(r.seconds, 3),
                            "source_bytes": r.source_bytes, "copy_bytes": r.copy_bytes}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(_main())

