"""A real ``clickhouse-server`` for the tests: a child process on free 127.0.0.1 ports, data in a tmp folder.

The Debian package (``apt-get install clickhouse-server``, done by ``.ci/run``) is an old
release (18.16); it starts in about a tenth of a second. The configuration written here
opens only the HTTP and native TCP ports on 127.0.0.1, keeps data, temporary files and
logs in the given folder, and declares a two-shard cluster ``two_shards`` whose shards
are two databases (``shard1``, ``shard2``) of this one server — the ``Distributed``
table's setup without a second machine. ``users.xml`` has the ``default`` user (no
password) and ``shipper`` (password ``SHIPPER_PASSWORD``).

Import the fixtures into a test module: ``from tests.clickhouse_server import clickhouse``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require

__all__ = ["CLUSTER", "SHIPPER_PASSWORD", "ClickHouseServer", "clickhouse", "clickhouse_binary", "fresh_clickhouse",
           "require_clickhouse"]

CLUSTER = "two_shards"
SHIPPER_PASSWORD = "s3cret-Shipper-pw"
_CANDIDATES = ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")


def require_clickhouse() -> str:
    """The server's path; fails the test when it is missing (``.ci/run`` installs it)."""
    return require("clickhouse-server", *_CANDIDATES)


def clickhouse_binary() -> str | None:
    found = shutil.which("clickhouse-server")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{root}/log/server.log</log>
    <errorlog>{root}/log/error.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <keep_alive_timeout>3</keep_alive_timeout>
  <mlock_executable>false</mlock_executable>
  <remote_servers>
    <{cluster}>
      <shard><replica><host>127.0.0.1</host><port>{tcp}</port><default_database>shard1</default_database></replica></shard>
      <shard><replica><host>127.0.0.1</host><port>{tcp}</port><default_database>shard2</default_database></replica></shard>
    </{cluster}>
  </remote_servers>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <shipper><password>{password}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></shipper>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


class ClickHouseServer:
    """One server process; ``kill()`` it (SIGKILL) and ``start()`` it again on the same data and ports."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root = root
        self.binary = binary
        self.http_port = _free_port()
        self.tcp_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "config.xml").write_text(_CONFIG.format(root=root, http=self.http_port, tcp=self.tcp_port,
                                                        cluster=CLUSTER))
        (root / "users.xml").write_text(_USERS.format(password=SHIPPER_PASSWORD))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 20.0) -> float:
        """Start the process and wait until ``/ping`` answers; returns the seconds it took."""
        started = time.monotonic()
        with (self.root / "log" / "stderr.txt").open("ab") as errors:
            self.proc = subprocess.Popen([self.binary, f"--config-file={self.root / 'config.xml'}"],
                                         stdout=subprocess.DEVNULL, stderr=errors, cwd=self.root,
                                         start_new_session=True)
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited with {self.proc.returncode}: "
                                   + (self.root / "log" / "stderr.txt").read_text()[-2000:])
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/ping", timeout=1) as answer:
                if answer.read().startswith(b"Ok"):
                    return time.monotonic() - started
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"clickhouse-server did not answer /ping within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, then wait for the process to be gone (its ports free again)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def query(self, sql: str, *, database: str | None = None) -> str:
        params = {"database": database} if database else {}
        url = f"{self.url}/?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return str(answer.read().decode())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(exc.read().decode()) from None

    def scalar(self, sql: str) -> str:
        return self.query(sql).strip()


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """One server for the session (tests use databases of their own)."""
    binary = require_clickhouse()
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"), binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def fresh_clickhouse(tmp_path: Path) -> Iterator[ClickHouseServer]:
    """A server of this test's own, to kill and restart."""
    binary = require_clickhouse()
    server = ClickHouseServer(tmp_path / "clickhouse", binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()
