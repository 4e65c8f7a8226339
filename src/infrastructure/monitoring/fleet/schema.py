"""The ClickHouse table the shipper fills: its columns, its two dialects, its cluster form.

One row per record line. The fields every record has, or that the built-in monitors
write, get typed columns; every other field goes, unchanged, into ``extra`` (one JSON
object per row). A typed column holds a field only when its JSON value has the
column's type (a string for text, an integer for counts, a number for durations, a
boolean for ``success``); otherwise the column is NULL and the field stays in ``extra``
under its own name, so nothing is lost or altered. ``module`` is the family the line
came from (a record's own ``module`` field is kept in ``extra`` when it differs), and an
empty ``operation`` means the record had none.

``source_host``, ``source_file`` (the fingerprint of the file's first line, unchanged
by rotation and compression) and ``source_offset`` (where the line starts in the
file's uncompressed content) identify each row: the shipper uses them to resume
exactly where the table stopped.

Two dialects: **current** servers (21.8 and later) get ``LowCardinality`` strings,
compression codecs, a ``DateTime64`` view of the time and an optional ``TTL``; the
**legacy** layout (18.16, Debian's package) uses plain types and no TTL. Both have the
same column names and the same values, so a query reads either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COLUMNS",
    "CURRENT",
    "LEGACY",
    "Column",
    "TableNames",
    "dialect_for",
    "distributed_ddl",
    "parse_version",
    "quote_identifier",
    "table_ddl",
]

CURRENT: Final = "current"
LEGACY: Final = "legacy"
_CURRENT_FROM: Final = (21, 8)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    legacy: str
    current: str
    kind: str
    """How the shipper fills it: ``str``, ``int``, ``float``, ``bool`` from the record's field
    of the same name, or ``fixed`` (written by the shipper itself)."""


def _nullable_text(name: str) -> Column:
    return Column(name, "Nullable(String)", "LowCardinality(Nullable(String))", "str")


def _id_text(name: str) -> Column:
    return Column(name, "Nullable(String)", "Nullable(String) CODEC(ZSTD(1))", "str")


def _count(name: str) -> Column:
    return Column(name, "Nullable(Int64)", "Nullable(Int64) CODEC(ZSTD(1))", "int")


def _seconds(name: str) -> Column:
    return Column(name, "Nullable(Float64)", "Nullable(Float64) CODEC(ZSTD(1))", "float")


COLUMNS: Final[tuple[Column, ...]] = (
    Column("timestamp", "Float64", "Float64 CODEC(Delta(8), ZSTD(1))", "fixed"),
    Column("day", "Date", "Date", "fixed"),
    Column("module", "String", "LowCardinality(String)", "fixed"),
    Column("operation", "String", "LowCardinality(String)", "fixed"),
    _nullable_text("metric_type"),
    _nullable_text("host"),
    Column("pid", "Nullable(Int64)", "Nullable(Int64) CODEC(ZSTD(1))", "int"),
    _nullable_text("model"),
    _nullable_text("provider"),
    Column("success", "Nullable(UInt8)", "Nullable(UInt8)", "bool"),
    _seconds("duration"),
    _seconds("response_time"),
    _count("prompt_tokens"),
    _count("completion_tokens"),
    _count("total_tokens"),
    _count("cached_tokens"),
    _seconds("cost"),
    _nullable_text("error_type"),
    _id_text("trace_id"),
    _id_text("span_id"),
    _id_text("session_id"),
    Column("extra", "String", "String CODEC(ZSTD(3))", "fixed"),
    Column("source_host", "String", "LowCardinality(String)", "fixed"),
    Column("source_file", "String", "LowCardinality(String)", "fixed"),
    Column("source_offset", "UInt64", "UInt64 CODEC(Delta(8), ZSTD(1))", "fixed"),
)
"""Every stored column, in table order."""

_ALIAS: Final = {
    LEGACY: "`time` DateTime ALIAS toDateTime(toUInt32(timestamp))",
    CURRENT: "`time` DateTime64(6, 'UTC') ALIAS toDateTime64(timestamp, 6, 'UTC')",
}
"""A readable time (``WHERE time > now() - INTERVAL 1 HOUR``); ``timestamp`` is the exact value."""
_ORDER: Final = "(module, operation, timestamp)"


@dataclass(frozen=True, slots=True)
class TableNames:
    """Where the rows go: ``database.table``; with a cluster, ``local`` on each shard too."""

    database: str
    table: str
    cluster: str | None = None
    shard_database: str | None = None
    """The database of the local tables when it differs from ``database``; ``""`` means each
    shard's ``default_database`` from ``remote_servers``."""

    @property
    def local(self) -> str:
        return f"{self.table}_local" if self.cluster else self.table

    @property
    def qualified(self) -> str:
        return f"{quote_identifier(self.database)}.{quote_identifier(self.table)}"


def quote_identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f"`{name}`"


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` -> ``(18, 16, 1)`` (what ``SELECT version()`` answers)."""
    parts = re.findall(r"\d+", text.strip())
    if not parts:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(int(p) for p in parts[:4])


def dialect_for(version: tuple[int, ...]) -> str:
    """``current`` from 21.8 on, ``legacy`` before (no ``Map``, ``TTL``, codecs or ``LowCardinality`` there)."""
    return CURRENT if version[:2] >= _CURRENT_FROM else LEGACY


def _column_lines(dialect: str, *, codecs: bool = True) -> list[str]:
    lines = []
    for c in COLUMNS:
        kind = c.current if dialect == CURRENT else c.legacy
        if not codecs:
            kind = re.sub(r"\s+CODEC\(.*\)$", "", kind)
        lines.append(f"`{c.name}` {kind}")
    lines.append(_ALIAS[dialect])
    return lines


def table_ddl(names: TableNames, dialect: str, *, ttl_days: float | None = None, database: str | None = None,
              on_cluster: bool = False) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of the table that holds the rows (the local table of a shard).

    ``ttl_days`` adds a ``TTL`` on ``day`` (current dialect only; whole days, rounded up):
    ClickHouse then drops each day's partition once it is that old, by the wall clock —
    also a day inserted today from old logs (see docs/fleet.md).
    """
    db = database if database is not None else (names.shard_database or names.database)
    columns = ",\n    ".join(_column_lines(dialect))
    ddl = (f"CREATE TABLE IF NOT EXISTS {quote_identifier(db)}.{quote_identifier(names.local)}{_on(names, on_cluster)}"
           f"\n(\n    {columns}\n)\n"
           f"ENGINE = MergeTree\nPARTITION BY day\nORDER BY {_ORDER}\n")
    settings = ["index_granularity = 8192"]
    if ttl_days is not None and dialect == CURRENT:
        ddl += f"TTL day + toIntervalDay({max(1, math.ceil(ttl_days))})\n"
        settings.append("ttl_only_drop_parts = 1")
    return ddl + "SETTINGS " + ", ".join(settings)


def distributed_ddl(names: TableNames, dialect: str, *, on_cluster: bool = False) -> str:
    """The ``Distributed`` table over the shards' local tables, sharded by ``source_host``:
    all the rows of one host (hence of one insert) go to one shard."""
    if names.cluster is None:
        raise ValueError("a Distributed table needs a cluster name")
    columns = ",\n    ".join(_column_lines(dialect, codecs=False))
    shard_db = names.database if names.shard_database is None else names.shard_database
    return (f"CREATE TABLE IF NOT EXISTS {names.qualified}{_on(names, on_cluster)}\n(\n    {columns}\n)\n"
            f"ENGINE = Distributed({quote_identifier(names.cluster)}, '{shard_db}', "
            f"{quote_identifier(names.local)}, cityHash64(source_host))")


def _on(names: TableNames, on_cluster: bool) -> str:
    return f" ON CLUSTER {quote_identifier(names.cluster)}" if on_cluster and names.cluster else ""
