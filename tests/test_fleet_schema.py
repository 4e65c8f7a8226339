"""The table's two dialects: the current one on an embedded current ClickHouse (chdb), the legacy one on the
Debian server (18.16). The shipper runs unchanged against both."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring.fleet.clickhouse import ClickHouseClient, ClickHouseError
from infrastructure.monitoring.fleet.schema import (
    COLUMNS,
    CURRENT,
    LEGACY,
    TableNames,
    dialect_for,
    distributed_ddl,
    parse_version,
    table_ddl,
)
from infrastructure.monitoring.fleet.settings import ClickHouseSettings
from infrastructure.monitoring.fleet.shipper import ClickHouseShipper

from .clickhouse_server import ClickHouseServer, clickhouse
from .fleet_data import assert_table_holds_folder, write_llm_family, write_tool_family

__all__ = ["clickhouse"]


class ChdbClient(ClickHouseClient):
    """The shipper's client, answered by an embedded current ClickHouse instead of HTTP."""

    def __init__(self, session: Any) -> None:
        super().__init__("http://chdb.invalid:8123")
        self.session = session

    def _run(self, sql: str, settings: Mapping[str, Any] | None = None) -> bytes:
        if settings:
            sql += " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items())
        try:
            return bytes(self.session.query(sql, "TabSeparated").bytes())
        except RuntimeError as exc:
            found = re.search(r"Code: (\d+)", str(exc))
            raise ClickHouseError(str(exc), int(found.group(1)) if found else 0) from None

    def query(self, sql: str, *, settings: Mapping[str, Any] | None = None, query_id: str | None = None) -> bytes:
        return self._run(sql.replace("\nFORMAT TabSeparated", ""), settings)

    def insert(self, statement: str, body: bytes, *, settings: Mapping[str, Any] | None = None,
               query_id: str | None = None) -> None:
        head, _, fmt = statement.partition(" FORMAT ")
        given = ", ".join(f"{k} = {v}" for k, v in (settings or {}).items())
        self._run(f"{head} SETTINGS {given} FORMAT {fmt}\n{body.decode()}")

    def version(self) -> str:
        return self.query("SELECT version()").decode().strip()


class ChdbServer:
    """Enough of ``ClickHouseServer`` for ``assert_table_holds_folder``."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def query(self, sql: str) -> str:
        return str(self.session.query(sql, "TabSeparated" if "FORMAT" not in sql else "CSV"))

    def scalar(self, sql: str) -> str:
        return self.query(sql).strip()


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[Any]:
    from chdb import session as chdb_session  # chdb-core, in the test extra

    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        yield session
    finally:
        session.close()


def test_versions_choose_the_dialect() -> None:
    """Servers from 21.8 on get the current layout; older ones (Debian's 18.16) the legacy one."""
    assert parse_version("18.16.1") == (18, 16, 1)
    assert parse_version("26.9.2.1\n") == (26, 9, 2, 1)
    assert dialect_for((18, 16, 1)) == LEGACY
    assert dialect_for((21, 3, 20)) == LEGACY
    assert dialect_for((21, 8, 1)) == CURRENT
    assert dialect_for((26, 9, 2, 1)) == CURRENT
    with pytest.raises(ValueError, match="not a ClickHouse version"):
        parse_version("unknown")


def test_the_current_dialect_is_what_a_current_server_creates(chdb: Any) -> None:
    """The current DDL runs on a current ClickHouse: LowCardinality, codecs, a DateTime64 view, a TTL."""
    names = TableNames("fleet", "monitoring_records")
    chdb.query("CREATE DATABASE fleet")
    chdb.query(table_ddl(names, CURRENT, ttl_days=6.5))
    shown = str(chdb.query("SHOW CREATE TABLE fleet.monitoring_records", "TabSeparated"))
    assert "LowCardinality(Nullable(String))" in shown
    assert "CODEC(Delta(8), ZSTD(1))" in shown
    assert "TTL day + toIntervalDay(7)" in shown
    assert "PARTITION BY day" in shown
    assert "ORDER BY (module, operation, timestamp)" in shown
    columns = str(chdb.query("SELECT name FROM system.columns WHERE database = 'fleet' AND table = "
                             "'monitoring_records' ORDER BY position", "TabSeparated")).split()
    assert columns == [c.name for c in COLUMNS] + ["time"]


def test_the_cluster_form_is_a_local_table_and_a_distributed_one_sharded_by_host() -> None:
    """Each shard holds ``<table>_local``; the Distributed table routes a host's rows to one shard."""
    names = TableNames("fleet", "monitoring_records", "prod")
    local = table_ddl(names, CURRENT, on_cluster=True)
    assert local.startswith("CREATE TABLE IF NOT EXISTS `fleet`.`monitoring_records_local` ON CLUSTER `prod`")
    dist = distributed_ddl(names, CURRENT, on_cluster=True)
    assert "ENGINE = Distributed(`prod`, 'fleet', `monitoring_records_local`, cityHash64(source_host))" in dist
    assert "CODEC" not in dist


def test_the_shipper_fills_a_current_server_as_the_files_say(chdb: Any, tmp_path: Path) -> None:
    """Rows sent as written and rows re-encoded both read back with the files' values on a current server."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 700)
    write_tool_family(folder, 300)
    odd = MetricsLogger("odd", FileSink(folder / "odd_metrics.log"))
    odd.log_event("odd", model=7, day="monday", nested={"a": [1, None]}, success="maybe")
    odd.close()
    settings = ClickHouseSettings(database="fleet", batch_rows=250)
    with ClickHouseShipper(settings, folder, client=ChdbClient(chdb)) as shipper:
        result = shipper.ship_once()
    assert result.failed is None
    assert result.rows == 1001
    assert shipper.dialect == CURRENT
    assert assert_table_holds_folder(ChdbServer(chdb), "fleet.monitoring_records", folder) == 1001
    row = orjson.loads(str(chdb.query("SELECT extra, model, success, toString(time) AS t, timestamp "
                                      "FROM fleet.monitoring_records WHERE module = 'odd'", "JSONEachRow")))
    assert orjson.loads(row["extra"]) == {"model": 7, "day": "monday", "nested": {"a": [1, None]}, "success": "maybe"}
    assert row["model"] is None
    assert row["success"] is None
    assert row["t"].startswith(time.strftime("%Y-%m-%d", time.gmtime(row["timestamp"])))


def test_a_ttl_deletes_back_filled_days_at_once(chdb: Any, tmp_path: Path) -> None:
    """The pitfall, shown: with ``ttl`` on, days older than the retention are dropped by the server as soon
    as it merges — also days shipped today from old backups. Recent days stay."""
    folder = tmp_path / "logs"
    folder.mkdir()
    now = time.time()
    lines = [orjson.dumps({"timestamp": ts, "metric_type": "timer", "operation": "llm_call", "duration": 1.0})
             for ts in (now - 40 * 86400, now - 39 * 86400, now - 60, now)]
    (folder / "llm_metrics.log").write_bytes(b"\n".join(lines) + b"\n")
    settings = ClickHouseSettings(database="fleet", ttl=True)
    with ClickHouseShipper(settings, folder, client=ChdbClient(chdb), retention_days=30) as shipper:
        assert shipper.ship_once().rows == 4
    chdb.query("OPTIMIZE TABLE fleet.monitoring_records FINAL")
    left = str(chdb.query("SELECT count() FROM fleet.monitoring_records", "TabSeparated")).strip()
    assert left == "2"


def test_the_legacy_dialect_is_what_the_old_server_creates(clickhouse: ClickHouseServer, tmp_path: Path) -> None:
    """On 18.16 the shipper picks the legacy layout: plain types, no TTL even when asked (and says so)."""
    settings = ClickHouseSettings(url=clickhouse.url, database="legacy_ddl", ttl=True)
    with ClickHouseShipper(settings, tmp_path, retention_days=7) as shipper:
        assert shipper.ensure_table() == LEGACY
    shown = clickhouse.scalar("SHOW CREATE TABLE legacy_ddl.monitoring_records")
    assert "LowCardinality" not in shown
    assert "TTL" not in shown
    assert "PARTITION BY day ORDER BY (module, operation, timestamp)" in shown
