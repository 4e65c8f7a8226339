"""Shared fixtures: every test gets its own log folder, container and factory."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's environment or another test's singleton."""
    for name in ("MONITORING_CONFIG", "MONITORING_LOG_DIR", "MONITORING_ENABLED", "MONITORING_SERVICE",
                 "MONITORING_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    PerformanceMonitorFactory.reset_instance()
    yield
    PerformanceMonitorFactory.reset_instance()
    PerformanceMonitorFactory.enable()  # a test that switched recording off must not leave it off


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def make_factory(log_dir: Path) -> Iterator[Callable[..., PerformanceMonitorFactory]]:
    """Build a factory whose container points at ``log_dir`` (plus any config overrides)."""
    made: list[PerformanceMonitorFactory] = []

    def build(
        *, cleanup: dict[str, Any] | None = None, system: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None, **logging_overrides: Any
    ) -> PerformanceMonitorFactory:
        overrides: dict[str, Any] = {"logging": {"log_dir": str(log_dir), **logging_overrides}, **(extra or {})}
        if cleanup:
            overrides["log_cleanup"] = cleanup
        if system:
            overrides["system_metrics"] = system
        container = MonitoringContainer()
        container.settings.override(providers.Object(load_settings(overrides=overrides, environ={})))
        factory = PerformanceMonitorFactory(container)
        made.append(factory)
        return factory

    yield build
    for factory in made:
        factory.shutdown()


@pytest.fixture
def factory(make_factory: Callable[..., PerformanceMonitorFactory]) -> PerformanceMonitorFactory:
    return make_factory()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line of one file, parsed (a corrupt line fails the test)."""
    with open(path, "rb") as handle:
        return [json.loads(line) for line in handle]


def family(log_dir: Path, base: str) -> list[Path]:
    """The live file and its numbered backups, oldest first."""
    files = [p for p in log_dir.glob(base + "*") if p.name == base or p.name[len(base) + 1 :].isdigit()]
    return sorted(files, key=lambda p: -int(p.name[len(base) + 1 :] or 0))


def age(path: Path, days: float) -> None:
    """Set ``path``'s modification time ``days`` into the past (what the cleaner judges by)."""
    when = time.time() - days * 86400
    os.utime(path, (when, when), follow_symlinks=False)


def check_dir(directory: Path, files: set[str]) -> None:
    """The folder holds exactly ``files`` (hidden control files aside)."""
    assert {p.name for p in directory.iterdir() if not p.name.startswith(".")} == files


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Nobody may create or delete files in ``folder``: chmod for users, the immutable flag for root."""
    import subprocess

    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
            pytest.skip("running as root and chattr +i is not available here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


DEBIAN_PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus", "alertmanager": "prometheus-alertmanager",
                   "prometheus-alertmanager": "prometheus-alertmanager", "chromium": "chromium",
                   "clickhouse-server": "clickhouse-server", "logrotate": "logrotate"}
"""The Debian package that ``.ci/run`` installs for each external tool the tests drive."""


def require(tool_name: str, *candidate_paths: str) -> str:
    """The path of ``tool_name`` (on PATH, else the first executable of ``candidate_paths``: other names to look
    up on PATH or absolute paths); fails the test when there is none, since ``.ci/run`` installs every one."""
    import shutil

    for candidate in (tool_name, *candidate_paths):
        found = (candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None) \
            if os.sep in candidate else shutil.which(candidate)
        if found:
            return found
    package = DEBIAN_PACKAGES.get(tool_name, tool_name)
    pytest.fail(f"{tool_name} is not installed (looked for {', '.join((tool_name, *candidate_paths))}): "
                f".ci/run installs it with Debian's {package} package (apt-get install {package})", pytrace=False)


def run_python(code: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``code`` in a fresh interpreter (imports, fork and RSS need a clean process)."""
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines, timestamps as given (for tests that control time)."""
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(b"".join(orjson.dumps(r) + b"\n" for r in records))


class CaptureServer:
    """A real HTTP server on loopback that keeps every request it gets.

    ``statuses`` is the answer to each request in turn (the last one repeats); ``by_path``
    answers some paths with their own status instead; ``body`` is every answer's body;
    ``delay`` makes every answer that late (to test client timeouts).
    """

    def __init__(self, statuses: Sequence[int] = (200,), delay: float = 0.0, *, body: bytes = b"",
                 by_path: dict[str, int] | None = None) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        self.delay = delay
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, dict(self.headers), received))
                if outer.delay:
                    time.sleep(outer.delay)
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response((by_path or {}).get(self.path, status))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture_server() -> Iterator[Callable[..., CaptureServer]]:
    servers: list[CaptureServer] = []

    def start(statuses: Sequence[int] = (200,), delay: float = 0.0) -> CaptureServer:
        server = CaptureServer(statuses, delay)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-scale", type=int, default=1,
                     help="Multiply the sizes of the reliability scenarios (events, kill rounds); default 1.")


def pytest_configure(config: pytest.Config) -> None:
    from . import chaos

    if chaos.TALLIES is None:
        chaos.TALLIES = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from . import chaos

    tallies = config.stash.get(chaos.TALLIES, None) if chaos.TALLIES is not None else None
    if tallies:
        terminalreporter.section("reliability figures")
        terminalreporter.write_line(chaos.table(tallies))
