"""The ClickHouse shipper reads a line the way the local query engine does: the same lines become records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from infrastructure.monitoring.fleet import SHIP_STATE_FILE
from infrastructure.monitoring.fleet.clickhouse import ClickHouseClient, ClickHouseError, ClickHouseUnavailable
from infrastructure.monitoring.fleet.progress import shipping_status
from infrastructure.monitoring.fleet.settings import ClickHouseSettings
from infrastructure.monitoring.fleet.shipper import ClickHouseShipper
from infrastructure.monitoring.query import LogParser

from .clickhouse_server import ClickHouseServer, clickhouse
from .conftest import CaptureServer
from .fleet_data import table_rows

__all__ = ["clickhouse"]  # the fixture, used by name below

_databases = iter(range(1, 10_000))


@pytest.fixture
def database(clickhouse: ClickHouseServer) -> str:
    """A database of this test's own on the session's server."""
    name = f"lines{os.getpid()}_{next(_databases)}"
    clickhouse.query(f"DROP DATABASE IF EXISTS {name}")
    return name


def _ship(server: ClickHouseServer, database: str, folder: Path) -> Any:
    settings = ClickHouseSettings(url=server.url, database=database, batch_rows=500, batch_seconds=0.2,
                                  max_backoff=0.5, timeout=10.0)
    with ClickHouseShipper(settings, folder) as shipper:
        return shipper.ship_once()


def test_lines_the_query_engine_reads_leniently_are_shipped(clickhouse: ClickHouseServer, database: str,
                                                            tmp_path: Path) -> None:
    """NaN, Infinity and 1e400 make a line invalid JSON that the engine (as DuckDB) still reads: the
    record is shipped, its unrepresentable numbers as NULL; a timestamp spelled as the engine's
    number rules allow ('+-5') counts, one they refuse (other scripts' digits) does not."""
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = [
        b'{"timestamp": 1704110400.0, "operation": "nan cost", "model": "a", "cost": NaN}',
        b'{"timestamp": 1704110401.0, "operation": "huge", "duration": 1e400, "score": -Infinity}',
        b'{"timestamp": "+-5", "operation": "odd sign"}',
        b'{"timestamp": "\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa4", "operation": "arabic digits"}',
        b'{"timestamp": NaN, "operation": "no time"}',
        b'{"timestamp": 1704110402.0, "operation": "plain", "cost": 0.5}',
        b"NaN garbage",
    ]
    (folder / "llm_metrics.log").write_bytes(b"\n".join(lines) + b"\n")
    result = _ship(clickhouse, database, folder)
    assert result.failed is None
    assert (result.rows, result.skipped_lines) == (4, 3)
    rows = {r["operation"]: r for r in table_rows(clickhouse, f"{database}.monitoring_records").values()}
    local = {r["operation"] for r in LogParser(folder).records("llm")}
    assert set(rows) == local == {"nan cost", "huge", "odd sign", "plain"}
    assert (rows["nan cost"]["model"], rows["nan cost"]["cost"]) == ("a", None)
    assert rows["huge"]["duration"] is None
    assert orjson.loads(rows["huge"]["extra"]) == {"score": None}
    assert rows["odd sign"]["timestamp"] == -5.0
    assert rows["plain"]["cost"] == 0.5


@pytest.mark.parametrize("older", ["llm", "tool"])
def test_the_lag_is_the_age_of_the_oldest_unshipped_record_of_any_family(tmp_path: Path, older: str) -> None:
    """Files are in time order within a family only: the lag is the oldest first unshipped line of them all,
    whichever family the folder lists first."""
    now = 1_704_110_400.0
    for module in ("llm", "tool"):
        age = 500.0 if module == older else 100.0
        records = [{"timestamp": now - age + i, "operation": "call"} for i in range(3)]
        (tmp_path / f"{module}_metrics.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (tmp_path / SHIP_STATE_FILE).write_bytes(orjson.dumps({"target": "t", "positions": {}, "modules": []}))
    status = shipping_status(tmp_path, now=now)
    assert status is not None
    assert status.pending_files == 2
    assert status.lag_seconds == 500.0


@pytest.mark.parametrize(("status", "body", "unavailable"), [
    (503, b"Service Unavailable", True),
    (502, b"Bad Gateway", True),
    (500, b"Code: 210. DB::NetException: Connection reset by peer", True),
    (500, b"Code: 60. DB::Exception: Table t.x does not exist", False),
])
def test_a_streamed_listing_fails_as_a_query_does(status: int, body: bytes, unavailable: bool) -> None:
    """A server going away is ``ClickHouseUnavailable`` (retried) for a listing as for any query."""
    server = CaptureServer((status,), body=body)  # a server or proxy in trouble
    try:
        client = ClickHouseClient(server.url, timeout=5.0)
        errors = []
        for call in (lambda: list(client.lines("SELECT 1")), lambda: client.query("SELECT 1")):
            with pytest.raises(ClickHouseError) as caught:
                call()
            errors.append(caught.value)
        assert [isinstance(e, ClickHouseUnavailable) for e in errors] == [unavailable, unavailable]
        assert [(e.code, e.status) for e in errors] == [(errors[1].code, status)] * 2
        assert str(errors[0]) == str(errors[1])
    finally:
        server.close()
