"""Shared fixtures: every test gets its own log folder, container and factory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's environment or another test's singleton."""
    for name in ("MONITORING_CONFIG", "MONITORING_LOG_DIR", "MONITORING_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    PerformanceMonitorFactory.reset_instance()
    yield
    PerformanceMonitorFactory.reset_instance()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def make_factory(log_dir: Path) -> Iterator[Callable[..., PerformanceMonitorFactory]]:
    """Build a factory whose container points at ``log_dir`` (plus any config overrides)."""
    made: list[PerformanceMonitorFactory] = []

    def build(**logging_overrides: Any) -> PerformanceMonitorFactory:
        overrides: dict[str, Any] = {"logging": {"log_dir": str(log_dir), **logging_overrides}}
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


def check_dir(directory: Path, files: set[str]) -> None:
    """The folder holds exactly ``files`` (hidden control files aside)."""
    assert {p.name for p in directory.iterdir() if not p.name.startswith(".")} == files


def run_python(code: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``code`` in a fresh interpreter (imports, fork and RSS need a clean process)."""
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
