"""The ClickHouse shipper against a real clickhouse-server: every record line lands once, whatever happens."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring.config import CleanupSettings, load_settings
from infrastructure.monitoring.errors import ConfigError
from infrastructure.monitoring.fleet import SHIP_STATE_FILE
from infrastructure.monitoring.fleet.clickhouse import ClickHouseClient, ClickHouseUnavailable
from infrastructure.monitoring.fleet.progress import shipped_index, shipping_status
from infrastructure.monitoring.fleet.settings import ClickHouseSettings
from infrastructure.monitoring.fleet.shipper import ClickHouseShipper
from infrastructure.monitoring.log_cleaner import LogCleaner

from .clickhouse_server import CLUSTER, SHIPPER_PASSWORD, ClickHouseServer, clickhouse, fresh_clickhouse
from .conftest import REPO_ROOT
from .fleet_data import assert_table_holds_folder, table_rows, write_llm_family, write_tool_family

__all__ = ["clickhouse", "fresh_clickhouse"]  # fixtures used by name below

EXE = str(Path(sys.executable).with_name("monitoring"))
_databases = iter(range(1, 10_000))


@pytest.fixture
def database(clickhouse: ClickHouseServer) -> str:
    """A database of this test's own on the session's server."""
    name = f"t{os.getpid()}_{next(_databases)}"
    clickhouse.query(f"DROP DATABASE IF EXISTS {name}")
    return name


def settings_for(server: ClickHouseServer, database: str, **changes: Any) -> ClickHouseSettings:
    return replace(ClickHouseSettings(url=server.url, database=database, batch_rows=500, batch_seconds=0.2,
                                      max_backoff=0.5, timeout=10.0), **changes)


def ship(settings: ClickHouseSettings, folder: Path, **kwargs: Any) -> Any:
    with ClickHouseShipper(settings, folder, **kwargs) as shipper:
        return shipper.ship_once()


def compress_rotated(folder: Path) -> int:
    """Gzip every rotated file with the real cleaner (its clock a minute ahead: nothing is too fresh)."""
    settings = CleanupSettings(retention_days=30, compress_after_days=0, log_patterns=("*.log", "*.log.*"))
    result = LogCleaner(settings, folder, clock=lambda: time.time() + 60).cleanup_logs()
    assert result.errors == 0, result.failures
    return result.files_compressed


# --------------------------------------------------------------------------- the harness


def test_the_test_server_starts_in_about_a_second(tmp_path: Path) -> None:
    """The Debian server starts on free ports with its data in a tmp folder, answers, and stops on SIGKILL."""
    from .clickhouse_server import require_clickhouse

    binary = require_clickhouse()
    server = ClickHouseServer(tmp_path / "ch", binary)
    took = server.start()
    try:
        assert took < 5.0
        assert server.scalar("SELECT version()").split(".")[0].isdigit()
        assert (tmp_path / "ch" / "data").is_dir()
    finally:
        server.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.http_port), timeout=1).close()


# --------------------------------------------------------------------------- shipping


def test_a_multi_family_folder_with_rotations_and_gz_backups_lands_exactly(clickhouse: ClickHouseServer,
                                                                           database: str, tmp_path: Path) -> None:
    """Every record of every file — live, rotated, compressed — is one row, with the files' values."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 1000)
    assert compress_rotated(folder) > 3
    write_llm_family(folder, 500, seed=7)  # more rotations: plain backups after the compressed ones
    write_tool_family(folder, 800)
    assert any(folder.glob("llm_metrics.log.*.gz"))
    assert any(folder.glob("llm_metrics.log.[0-9]"))
    result = ship(settings_for(clickhouse, database), folder)
    assert result.failed is None
    assert result.caught_up
    assert result.rows == 2300
    assert result.batches >= 5
    assert assert_table_holds_folder(clickhouse, f"{database}.monitoring_records", folder) == 2300
    again = ship(settings_for(clickhouse, database), folder)
    assert again.rows == 0


def test_a_gz_of_a_partly_shipped_file_continues_where_the_table_stopped(clickhouse: ClickHouseServer,
                                                                        database: str, tmp_path: Path) -> None:
    """Lines shipped from the live file are not sent again when that file is rotated and gzipped."""
    folder = tmp_path / "logs"
    writer = MetricsLogger("llm", FileSink(folder / "llm_metrics.log", max_bytes=10**9))
    for i in range(300):
        writer.log_event("llm_call", seq=i, prompt_tokens=i)
    settings = settings_for(clickhouse, database)
    assert ship(settings, folder).rows == 300
    for i in range(300, 450):
        writer.log_event("llm_call", seq=i, prompt_tokens=i)
    writer.close()
    (folder / "llm_metrics.log").rename(folder / "llm_metrics.log.1")  # as a rotation does
    assert compress_rotated(folder) == 1
    assert [p.name for p in folder.glob("llm*")] == ["llm_metrics.log.1.gz"]
    result = ship(settings, folder)
    assert result.rows == 150
    assert assert_table_holds_folder(clickhouse, f"{database}.monitoring_records", folder) == 450
    seqs = clickhouse.query(f"SELECT extra FROM {database}.monitoring_records ORDER BY source_offset").split("\n")
    assert [orjson.loads(s.replace("\\", ""))["seq"] for s in seqs if s] == list(range(450))


def test_odd_lines_are_skipped_or_kept_whole(clickhouse: ClickHouseServer, database: str, tmp_path: Path) -> None:
    """Lines that are not records are skipped (as the query engine skips them); a field whose value does not
    fit its column, a repeated key or a field named like a shipper column is kept in ``extra``."""
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = [
        b'{"timestamp": 1704110400.5, "operation": "llm_call", "model": "gpt-4o", "prompt_tokens": 12, '
        b'"success": true, "module": "llm", "usage": {"cached": [1, 2]}}',
        b"not json at all",
        b'{"operation": "no timestamp"}',
        b'["a", "list"]',
        b'{"timestamp": "1704110401.25", "operation": "string time", "model": 42, "prompt_tokens": 3.5}',
        b'{"timestamp": 1704110402, "operation": "named", "model": "a", "day": "x", "extra": 1}',
        b'{"timestamp": 1704110403.0, "module": "other", "success": "yes", "pid": 12}',
        b'{"timestamp": 1704110404.0, "operation": null, "model": null, "total_tokens": 9223372036854775807}',
        b'{"timestamp": 1704110405.0, "operation": "twice", "model": "a", "model": "b"}',
        b'{"timestamp": 1704110406.0, "pid": 99999999999999999999}',  # read as a float (1e20)
        b"",
    ]
    (folder / "llm_metrics.log").write_bytes(b"\n".join(lines) + b"\n")
    result = ship(settings_for(clickhouse, database), folder)
    assert result.failed is None
    assert (result.rows, result.skipped_lines) == (7, 3)
    rows = sorted(table_rows(clickhouse, f"{database}.monitoring_records").values(), key=lambda r: r["timestamp"])
    first, string_time, named, other, nulls, twice, huge = rows
    assert (first["model"], first["prompt_tokens"], first["success"], first["module"]) == ("gpt-4o", "12", 1, "llm")
    assert orjson.loads(first["extra"]) == {"usage": {"cached": [1, 2]}}
    assert string_time["timestamp"] == 1704110401.25
    assert string_time["model"] is None
    assert orjson.loads(string_time["extra"]) == {"model": 42, "prompt_tokens": 3.5}
    assert named["model"] == "a"
    assert orjson.loads(named["extra"]) == {"day": "x", "extra": 1}
    assert named["day"] == "2024-01-01"
    assert named["operation"] == "named"
    assert other["module"] == "llm"
    assert other["pid"] == "12"
    assert other["success"] is None
    assert orjson.loads(other["extra"]) == {"module": "other", "success": "yes"}
    assert nulls["operation"] == ""
    assert nulls["model"] is None
    assert nulls["total_tokens"] == str(2**63 - 1)
    assert twice["model"] == "b"
    assert twice["extra"] == "{}"
    assert huge["pid"] is None
    assert orjson.loads(huge["extra"]) == {"pid": 1e20}
    state = orjson.loads((folder / SHIP_STATE_FILE).read_bytes())
    assert state.get("careful") is None
    assert state["inflight"] is None


def test_a_lost_state_file_resumes_from_what_the_table_holds(clickhouse: ClickHouseServer, database: str,
                                                             tmp_path: Path) -> None:
    """Without its state file the shipper asks the table where each file stopped: nothing is sent twice."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 600)
    settings = settings_for(clickhouse, database)
    assert ship(settings, folder).rows == 600
    (folder / SHIP_STATE_FILE).unlink()
    write_llm_family(folder, 100, seed=9)  # appends to the live file, rotates some more
    result = ship(settings, folder)
    assert result.rows == 100
    assert assert_table_holds_folder(clickhouse, f"{database}.monitoring_records", folder) == 700


def test_a_cut_insert_that_stored_a_prefix_is_completed_without_duplicates(clickhouse: ClickHouseServer,
                                                                          database: str, tmp_path: Path) -> None:
    """An insert whose connection is cut after part of its rows (the server stores that prefix) is settled
    by asking the table how far each file got: the rest is sent, the prefix never again."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 900)
    write_tool_family(folder, 300)
    settings = settings_for(clickhouse, database, batch_rows=1200)

    class CutClient(ClickHouseClient):
        def insert(self, statement: str, body: bytes, **kwargs: Any) -> None:
            cut = body.index(b"\n", len(body) // 3) + 1  # a whole number of rows: the server sees a clean end
            with socket.create_connection(("127.0.0.1", clickhouse.http_port)) as raw:
                query = f"INSERT INTO {database}.monitoring_records FORMAT JSONEachRow"
                params = "&".join(f"{k}={v}" for k, v in {**kwargs.get("settings", {}),
                                                          "query_id": kwargs["query_id"]}.items())
                raw.sendall(f"POST /?query={query.replace(' ', '%20')}&{params} HTTP/1.1\r\nHost: x\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
            raise ClickHouseUnavailable("connection cut by the test")

    with ClickHouseShipper(settings, folder, client=CutClient(clickhouse.url)) as cutting:
        first = cutting.ship_once()
    assert first.failed is not None
    assert first.rows == 0
    deadline = time.monotonic() + 10
    while int(clickhouse.scalar(f"SELECT count() FROM {database}.monitoring_records")) == 0:
        assert time.monotonic() < deadline, "the server never stored the prefix"
        time.sleep(0.05)
    stored_prefix = int(clickhouse.scalar(f"SELECT count() FROM {database}.monitoring_records"))
    assert 0 < stored_prefix < 1200
    second = ship(settings, folder)
    assert second.resolved == 1
    assert second.rows == 1200 - stored_prefix
    assert assert_table_holds_folder(clickhouse, f"{database}.monitoring_records", folder) == 1200


def test_the_server_down_backs_off_reports_lag_and_catches_up(fresh_clickhouse: ClickHouseServer,
                                                              tmp_path: Path) -> None:
    """While the server is down the shipper backs off (bounded) and the lag is in ``monitoring status``;
    once it is back, everything lands once."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 400)
    settings = settings_for(fresh_clickhouse, "down", max_backoff=1.0)
    with ClickHouseShipper(settings, folder) as shipper:
        assert shipper.ship_once().rows == 400
        write_llm_family(folder, 250, seed=5)
        fresh_clickhouse.kill()
        delays = []
        for _ in range(4):
            result = shipper.ship_once()
            assert result.failed is not None
            assert result.failed != "backing off"
            assert result.rows == 0
            delays.append(result.retry_in)
            backing_off = shipper.ship_once()  # before the delay: not even tried
            assert backing_off.failed == "backing off"
            assert 0 < backing_off.retry_in <= result.retry_in
            time.sleep(result.retry_in)
        assert delays[1] > delays[0] * 1.3  # exponential ...
        assert max(delays) <= 1.0 * 1.2 + 1e-9  # ... and bounded
        status = shipping_status(folder)
        assert status is not None
        assert status.last_error
        assert status.lag_bytes > 10_000
        assert status.lag_seconds is not None
        assert status.lag_seconds >= 0
        shown = subprocess.run([EXE, "status", "--log-dir", str(folder)], capture_output=True, text=True,
                               check=False)
        assert shown.returncode == 0
        assert "behind" in shown.stdout
        assert "last error" in shown.stdout
        fresh_clickhouse.start()
        result = shipper.ship_once()
        while result.failed == "backing off":
            time.sleep(result.retry_in)
            result = shipper.ship_once()
        assert result.failed is None
        assert result.rows == 250
    status = shipping_status(folder)
    assert status is not None
    assert status.lag_bytes == 0
    assert status.lag_seconds == 0
    assert not status.last_error
    assert assert_table_holds_folder(fresh_clickhouse, "down.monitoring_records", folder) == 650


def test_a_two_shard_cluster_spreads_hosts_and_holds_every_row(clickhouse: ClickHouseServer, database: str,
                                                              tmp_path: Path) -> None:
    """With ``cluster`` the rows go through a Distributed table sharded by host: each host's rows on one
    shard, every row once, the same answers as the files."""
    folders = []
    for i in range(4):
        folder = tmp_path / f"host{i}"
        write_llm_family(folder, 200 + 50 * i, seed=i)
        folders.append(folder)
        result = ship(settings_for(clickhouse, database, cluster=CLUSTER, source_host=f"worker-{i}"), folder)
        assert result.failed is None
        assert result.rows == 200 + 50 * i
    assert assert_table_holds_folder(clickhouse, f"{database}.monitoring_records", *folders) == 1100
    per_shard = {db: dict(line.split("\t") for line in clickhouse.query(
        f"SELECT source_host, count() FROM {db}.monitoring_records_local GROUP BY source_host").split("\n") if line)
                 for db in ("shard1", "shard2")}
    assert all(per_shard.values()), per_shard  # both shards hold rows
    assert not set(per_shard["shard1"]) & set(per_shard["shard2"])  # a host's rows live on one shard
    engine = clickhouse.scalar(f"SELECT engine FROM system.tables WHERE database = '{database}' "
                               "AND name = 'monitoring_records'")
    assert engine == "Distributed"


def test_credentials_never_appear_in_output_state_or_logs(clickhouse: ClickHouseServer, database: str,
                                                          tmp_path: Path) -> None:
    """The password reaches the server in a header only: not in printed text, the state file or any log."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 50)
    config = tmp_path / "config.yaml"
    config.write_text(f"clickhouse:\n  url: {clickhouse.url}\n  database: {database}\n  user: shipper\n"
                      "  password_env: SHIP_PW\n")
    env = {**os.environ, "SHIP_PW": SHIPPER_PASSWORD}
    done = subprocess.run([EXE, "ship", "--once", "--config", str(config), "--log-dir", str(folder)],
                          capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shipped 50 rows" in done.stdout
    wrong = subprocess.run([EXE, "ship", "--once", "--config", str(config), "--log-dir", str(folder)],
                           capture_output=True, text=True, env={**env, "SHIP_PW": "not-the-password"}, check=False,
                           timeout=60)
    assert wrong.returncode == 1
    assert "193" in wrong.stderr
    status = subprocess.run([EXE, "status", "--log-dir", str(folder)], capture_output=True, text=True, check=False)
    seen = done.stdout + done.stderr + wrong.stdout + wrong.stderr + status.stdout + status.stderr
    for path in folder.rglob("*"):
        if path.is_file():
            seen += path.read_bytes().decode("utf-8", "replace")
    assert SHIPPER_PASSWORD not in seen
    assert "not-the-password" not in seen
    assert "Wrong password" in seen  # the failure was recorded, without the secret


def test_two_shippers_never_ship_one_folder_at_once(clickhouse: ClickHouseServer, database: str,
                                                    tmp_path: Path) -> None:
    """A second ``monitoring ship`` on a folder being shipped exits 1 and says why."""
    from infrastructure.monitoring._statefile import exclusive
    from infrastructure.monitoring.fleet import SHIP_LOCK_FILE

    folder = tmp_path / "logs"
    write_llm_family(folder, 10)
    with exclusive(folder / SHIP_LOCK_FILE) as held:
        assert held
        done = subprocess.run([EXE, "ship", "--once", "--clickhouse", clickhouse.url, "--database", database,
                               "--log-dir", str(folder)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert "another shipper is shipping" in done.stderr


# --------------------------------------------------------------------------- the cleaner


def test_the_cleaner_keeps_unshipped_files_and_counts_what_a_budget_forces_out(clickhouse: ClickHouseServer,
                                                                               database: str, tmp_path: Path) -> None:
    """Old files with lines not yet shipped survive the age rule; a size budget deletes them, loudly."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 300, max_bytes=4096)
    assert ship(settings_for(clickhouse, database), folder).rows == 300
    write_llm_family(folder, 300, seed=3, max_bytes=4096)  # rotates: new backups, not shipped
    old = time.time() - 40 * 86400
    for path in folder.iterdir():
        if not path.name.startswith("."):
            os.utime(path, (old, old))
    index = shipped_index(folder)
    assert index is not None
    unshipped = {p.stat().st_ino for p in folder.iterdir() if index.pending_bytes(p)}
    assert unshipped
    assert len(unshipped) < len(list(folder.glob("llm_metrics.log.*")))
    settings = CleanupSettings(retention_days=30, log_patterns=("*.log", "*.log.*"))
    audit = MetricsLogger("cleaner", FileSink(tmp_path / "audit" / "cleaner_metrics.log"))
    later = lambda: time.time() + 60  # noqa: E731 - the rotations a moment ago are settled by then
    result = LogCleaner(settings, folder, audit=audit, clock=later, backup_count=200).cleanup_logs()
    left = {p.stat().st_ino for p in folder.iterdir() if not p.name.startswith(".")}
    assert unshipped <= left  # the idle live file was retired to .1, not deleted
    assert result.files_kept_unshipped == len(unshipped) - 1
    assert result.files_deleted > 0
    assert result.unshipped_bytes_lost == 0
    budget = replace(settings, max_total_size=1)
    forced = LogCleaner(budget, folder, audit=audit, clock=later, backup_count=200).cleanup_logs()
    audit.close()
    assert forced.unshipped_bytes_lost > 0
    assert "LOST" in str(forced)
    events = Counter(orjson.loads(line)["operation"]
                     for line in (tmp_path / "audit" / "cleaner_metrics.log").read_bytes().splitlines())
    assert events["cleanup_keep_unshipped"] == result.files_kept_unshipped + forced.files_kept_unshipped
    assert events["cleanup_unshipped_loss"] >= 1


# --------------------------------------------------------------------------- configuration and commands


@pytest.mark.parametrize(("section", "key", "fragment"), [
    ({"url": "ftp://x"}, "clickhouse.url", "http://"),
    ({"url": "http://bob:hunter2@db:8123"}, "clickhouse.url", "without user or password"),
    ({"password": "hunter2"}, "clickhouse.password", "password_env"),
    ({"database": "my-db"}, "clickhouse.database", "letters, digits and '_'"),
    ({"batch_rows": 0}, "clickhouse.batch_rows", "integer >= 1"),
    ({"batch_bytes": "lots"}, "clickhouse.batch_bytes", "size"),
    ({"cluster": "a b"}, "clickhouse.cluster", "letters"),
    ({"shipp": True}, "clickhouse.shipp", "ship"),
])
def test_the_clickhouse_section_is_validated(section: dict[str, Any], key: str, fragment: str) -> None:
    """A bad value names its key and what would be valid; a secret is never repeated in the message."""
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides={"clickhouse": section}, environ={})
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_print_schema_prints_both_dialects_and_the_cluster_form(tmp_path: Path) -> None:
    """``--print-schema`` gives the statements operators run themselves: TTL only where the server has it."""
    config = tmp_path / "c.yaml"
    config.write_text("log_cleanup:\n  retention_days: 7\nclickhouse:\n  ttl: true\n  cluster: fleet\n"
                      "  url: http://127.0.0.1:9\n")
    current = subprocess.run([EXE, "ship", "--print-schema", "--dialect", "current", "--config", str(config)],
                             capture_output=True, text=True, check=True)
    assert "LowCardinality(String)" in current.stdout
    assert "TTL day + toIntervalDay(7)" in current.stdout
    assert "ON CLUSTER `fleet`" in current.stdout
    assert "Distributed(`fleet`, 'default'" in current.stdout
    legacy = subprocess.run([EXE, "ship", "--print-schema", "--dialect", "legacy", "--config", str(config)],
                            capture_output=True, text=True, check=True)
    assert "LowCardinality" not in legacy.stdout
    assert "TTL day" not in legacy.stdout
    assert "no TTL" in legacy.stdout
    guessed = subprocess.run([EXE, "ship", "--print-schema", "--config", str(config)], capture_output=True,
                             text=True, check=True, timeout=30)
    assert "did not answer" in guessed.stdout
    assert "CREATE TABLE" in guessed.stdout


def test_monitoring_run_ships_as_a_scheduled_job(clickhouse: ClickHouseServer, database: str,
                                                 tmp_path: Path) -> None:
    """``clickhouse.ship: true`` makes ``monitoring run`` ship every ``batch_seconds``."""
    folder = tmp_path / "logs"
    write_llm_family(folder, 120)
    config = tmp_path / "config.yaml"
    config.write_text(f"logging:\n  log_dir: {folder}\nclickhouse:\n  ship: true\n  url: {clickhouse.url}\n"
                      f"  database: {database}\n  batch_seconds: 0.5\n")
    proc = subprocess.Popen([EXE, "run", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline and count < 120:
            time.sleep(0.3)
            try:
                count = int(clickhouse.scalar(f"SELECT count() FROM {database}.monitoring_records "
                                              "WHERE module = 'llm'"))  # the cleaner's own audit lines too
            except RuntimeError:
                count = 0
        assert count == 120
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "clickhouse_ship every 0.5s" in out
    shutil.rmtree(folder)
