"""Nothing lost, nothing counted twice: the shipper and the server are SIGKILLed again and again while an
application writes, rotates and its backups are gzipped; once both are back and caught up, the table holds
exactly the records the files hold."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from infrastructure.monitoring.fleet import SHIP_STATE_FILE

from .clickhouse_server import ClickHouseServer, fresh_clickhouse
from .fleet_data import assert_table_holds_folder

__all__ = ["fresh_clickhouse"]

EXE = str(Path(sys.executable).with_name("monitoring"))

_APPLICATION = r"""
import random, sys, time
from pathlib import Path
from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring.config import CleanupSettings
from infrastructure.monitoring.log_cleaner import LogCleaner

folder, stop = Path(sys.argv[1]), Path(sys.argv[2])  # writes until the test creates ``stop``
rng = random.Random(11)
llm = MetricsLogger("llm", FileSink(folder / "llm_metrics.log", max_bytes=48_000, backup_count=10_000))
tool = MetricsLogger("tool", FileSink(folder / "tool_metrics.log", max_bytes=32_000, backup_count=10_000))
cleaner = LogCleaner(CleanupSettings(retention_days=30, compress_after_days=0, log_patterns=("*.log", "*.log.*")),
                     folder, clock=lambda: time.time() + 30, backup_count=10_000)
written, next_clean = 0, 0.0
while not stop.exists():
    for _ in range(20):
        llm.log_timer("llm_call", round(rng.random() * 3, 6), model=rng.choice(("gpt-4o", "claude")),
                      prompt_tokens=rng.randint(1, 3000), completion_tokens=rng.randint(0, 800),
                      cost=round(rng.random() / 50, 6), success=rng.random() > 0.05, seq=written)
        tool.log_timer("tool_call", round(rng.random(), 6), tool_name="search", seq=written)
        written += 2
    if time.monotonic() > next_clean:
        result = cleaner.cleanup_logs()  # gzips backups a moment after their rotation
        assert result.errors == 0, result.failures
        next_clean = time.monotonic() + 0.7
    time.sleep(0.004)
llm.close()
tool.close()
print(written)
"""


def _start_shipper(config: Path, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, "ship", "--config", str(config), "--log-dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def _in_flight(folder: Path) -> int:
    """1 when the shipper was killed with a batch in flight (its fate unknown), else 0."""
    try:
        return int(bool(orjson.loads((folder / SHIP_STATE_FILE).read_bytes()).get("inflight")))
    except (OSError, orjson.JSONDecodeError):
        return 0


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.mark.slow
def test_sigkilled_shipper_and_server_end_with_exactly_the_files_records(fresh_clickhouse: ClickHouseServer,
                                                                         tmp_path: Path) -> None:
    """Repeated SIGKILLs of the shipper (at any moment: mid-batch, mid-save) and of ClickHouse (mid-insert,
    down for a while) while records are written, rotated and gzipped: the table ends with every record once."""
    folder = tmp_path / "logs"
    folder.mkdir()
    config = tmp_path / "ship.yaml"
    config.write_text(f"clickhouse:\n  url: {fresh_clickhouse.url}\n  database: chaos\n  batch_rows: 300\n"
                      "  batch_seconds: 0.1\n  max_backoff: 0.5\n  timeout: 5\n")
    rng = random.Random(5)
    stop = tmp_path / "stop"
    app = subprocess.Popen([sys.executable, "-c", _APPLICATION, str(folder), str(stop)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    shipper = _start_shipper(config, folder)
    shipper_kills = server_kills = mid_batch = 0
    next_server_kill = time.monotonic() + rng.uniform(1.0, 2.0)
    chaos_deadline = time.monotonic() + 120

    def enough() -> bool:
        """The application writes (and the kills go on) until every margin below is met."""
        return (shipper_kills >= 8 and server_kills >= 3 and mid_batch >= 1
                and len(list(folder.glob("*.gz"))) >= 3)

    try:
        while not enough() and app.poll() is None:
            assert time.monotonic() < chaos_deadline, (
                f"after 120 s only {shipper_kills} shipper SIGKILLs ({mid_batch} with a batch in flight), "
                f"{server_kills} server SIGKILLs, {len(list(folder.glob('*.gz')))} gzipped backups")
            if shipper_kills % 2:  # every other kill lands while a batch is in flight
                deadline = time.monotonic() + 1.5
                while not _in_flight(folder) and time.monotonic() < deadline:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.03))
            else:
                time.sleep(rng.uniform(0.3, 0.9))
            _kill(shipper)
            shipper_kills += 1
            mid_batch += _in_flight(folder)
            if time.monotonic() > next_server_kill:
                fresh_clickhouse.kill()
                server_kills += 1
                shipper = _start_shipper(config, folder)  # starts while the server is down
                time.sleep(rng.uniform(0.2, 0.8))
                fresh_clickhouse.start()
                next_server_kill = time.monotonic() + rng.uniform(1.0, 2.0)
            else:
                shipper = _start_shipper(config, folder)
        _kill(shipper)
    finally:
        stop.touch()  # the application ends its round, closes its files and prints how many it wrote
        try:
            written_text, app_errors = app.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            written_text, app_errors = app.communicate(timeout=30)
        if shipper.poll() is None:
            shipper.kill()
            shipper.communicate()
    assert app.returncode == 0, app_errors  # the application never noticed
    written = int(written_text)
    assert shipper_kills >= 8
    assert server_kills >= 3
    assert len(list(folder.glob("*.gz"))) >= 3
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run([EXE, "ship", "--once", "--config", str(config), "--log-dir", str(folder)],
                              capture_output=True, text=True, check=False, timeout=120)
        if done.returncode == 0 and done.stdout.startswith("shipped 0 rows"):
            break
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.3)
    stored = assert_table_holds_folder(fresh_clickhouse, "chaos.monitoring_records", folder)
    from_app = int(fresh_clickhouse.scalar(
        "SELECT count() FROM chaos.monitoring_records WHERE module IN ('llm', 'tool')"))
    assert from_app == written  # and the shipper's own outage reports (exporter_metrics.log), if any, made it too
    assert stored - written == int(fresh_clickhouse.scalar(
        "SELECT count() FROM chaos.monitoring_records WHERE module = 'exporter'"))
    assert mid_batch >= 1  # some kills did land with a batch in flight
    print(f"\n{written} records; {shipper_kills} shipper SIGKILLs ({mid_batch} with a batch in flight), "
          f"{server_kills} server SIGKILLs; table == files")
