"""Log folders for the shipper's tests, and what a table must hold for them, read independently.

``expected_rows`` reads every file of every family (plain or ``.gz``) with its own code —
not the shipper's — and returns, per record line, the identity the row must carry
(``source_file``: the first line's fingerprint, ``source_offset``: where the line starts in
the uncompressed content) and the parsed record.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from infrastructure.monitoring import FileSink, MetricsLogger

if TYPE_CHECKING:
    from .clickhouse_server import ClickHouseServer

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-1.5-pro")
_NAME = re.compile(r"^(?P<base>[A-Za-z0-9_.-]+?\.log)(?:\.(?P<index>[1-9][0-9]*))?(?P<gz>\.gz)?$")


def identity(first_line: bytes) -> str:
    return hashlib.blake2b(first_line[:256], digest_size=12).hexdigest()


def expected_rows(folder: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """``(source_file, source_offset)`` -> record, for every record line of every family file."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match is None or path.name.startswith("."):
            continue
        data = gzip.decompress(path.read_bytes()) if match["gz"] else path.read_bytes()
        if b"\n" not in data:
            continue
        key = identity(data[: data.index(b"\n") + 1])
        offset = 0
        for line in data.split(b"\n")[:-1]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            ts = record.get("timestamp") if isinstance(record, dict) else None
            if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
                out[(key, offset)] = record
            offset += len(line) + 1
    return out


def write_llm_family(folder: Path, records: int, *, seed: int = 1, max_bytes: int = 8192, module: str = "llm",
                     backup_count: int = 200) -> None:
    """``records`` LLM-call records through the real writer, rotating every ``max_bytes``."""
    rng = random.Random(seed)
    writer = MetricsLogger(module, FileSink(folder / f"{module}_metrics.log", max_bytes=max_bytes,
                                            backup_count=backup_count))
    try:
        for i in range(records):
            ok = rng.random() > 0.1
            fields: dict[str, Any] = {"model": rng.choice(MODELS), "provider": "openai",
                                      "prompt_tokens": rng.randint(1, 4000), "completion_tokens": rng.randint(0, 900),
                                      "success": ok, "seq": i, "cost": round(rng.random() / 100, 6)}
            if not ok:
                fields["error_type"] = rng.choice(("timeout", "rate_limit"))
            writer.log_timer("llm_call", round(rng.lognormvariate(0, 0.6), 6), **fields)
    finally:
        writer.close()


def write_tool_family(folder: Path, records: int, *, seed: int = 2, max_bytes: int = 8192) -> None:
    rng = random.Random(seed)
    writer = MetricsLogger("tool", FileSink(folder / "tool_metrics.log", max_bytes=max_bytes, backup_count=200))
    try:
        for i in range(records):
            writer.log_timer("tool_call", round(rng.random(), 6), tool_name=rng.choice(("search", "shell")),
                             success=rng.random() > 0.05, seq=i, args={"q": "x" * rng.randint(0, 40)})
    finally:
        writer.close()


def sums(rows: dict[tuple[str, int], dict[str, Any]], field: str) -> float:
    return sum(r[field] for r in rows.values() if isinstance(r.get(field), (int, float))
               and not isinstance(r.get(field), bool))


def table_rows(server: ClickHouseServer, table: str) -> dict[tuple[str, int], dict[str, Any]]:
    """``(source_file, source_offset)`` -> row, failing on a duplicate identity."""
    text = server.query(f"SELECT * FROM {table} FORMAT JSONEachRow")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for line in text.splitlines():
        row = orjson.loads(line)
        key = (row["source_file"], int(row["source_offset"]))
        assert key not in rows, f"row {key} stored twice"
        rows[key] = row
    return rows


def assert_table_holds_folder(server: ClickHouseServer, table: str, *folders: Path) -> int:
    """Same identities, same count per module, same sums and timestamps as the files hold."""
    expected: dict[tuple[str, int], dict[str, Any]] = {}
    for folder in folders:
        expected.update(expected_rows(folder))
    stored = table_rows(server, table)
    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    assert (len(missing), len(extra)) == (0, 0), "(lines missing from the table, rows not in the files)"
    assert Counter(r["module"] for r in stored.values()) == Counter(r["module"] for r in expected.values())
    for field in ("prompt_tokens", "completion_tokens"):
        assert sum(int(r[field] or 0) for r in stored.values()) == sums(expected, field)
    for field in ("duration", "cost"):
        assert sum(float(r[field] or 0) for r in stored.values()) == pytest.approx(sums(expected, field), rel=1e-9)
    for key, record in expected.items():
        assert stored[key]["timestamp"] == record["timestamp"]
    return len(stored)
