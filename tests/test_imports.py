"""Both import spellings give one package; importing it has no side effects."""

from __future__ import annotations

from pathlib import Path

from .conftest import REPO_ROOT, run_python

BOTH_SPELLINGS = """
import threading, os
before_threads = threading.active_count()
before_fds = set(os.listdir('/proc/self/fd'))
from src.infrastructure.monitoring import PerformanceMonitorFactory as A
from src.infrastructure.monitoring.lightweight_monitor import LightweightPerformanceMonitor as L1
import infrastructure.monitoring as real
import src.infrastructure.monitoring as alias
import src.infrastructure.monitoring.factory as f1, infrastructure.monitoring.factory as f2
from infrastructure.monitoring.lightweight_monitor import LightweightPerformanceMonitor as L2
assert alias is real and f1 is f2 and L1 is L2
assert A is real.PerformanceMonitorFactory
assert real.__spec__.name == "infrastructure.monitoring", real.__spec__.name
assert not hasattr(f1, "__path__")
assert threading.active_count() == before_threads, "import started a thread"
assert set(os.listdir('/proc/self/fd')) <= before_fds | {str(max(map(int, before_fds)) + 1)}, "import opened files"
assert A.get_instance() is real.PerformanceMonitorFactory.get_instance()
llm = A.get_instance().create_monitor("llm")
llm.record_llm_call(model="gpt-4", provider="openai", response_time=2.1,
                    prompt_tokens=100, completion_tokens=200, total_tokens=300, success=True)
assert llm is real.PerformanceMonitorFactory.get_instance().create_monitor("llm")
from src.infrastructure.monitoring import PerformanceMonitorFactory, LogCleanupService
factory = PerformanceMonitorFactory.get_instance()
result = factory.force_log_cleanup()
assert result.errors == 0 and result.skipped is None and result.files_deleted == 0, result
cleanup_service = factory.get_scheduled_cleaner()
assert isinstance(cleanup_service, LogCleanupService) and cleanup_service.running
log_cleaner = factory.setup_log_cleaner({"retention_days": 30, "log_patterns": ["logs/*.log", "logs/*.log.*"],
                                         "enabled": True, "dry_run": False})
assert log_cleaner.cleanup_logs().errors == 0 and cleanup_service.cleaner is log_cleaner
PerformanceMonitorFactory.reset_instance()
assert not cleanup_service.running
print("ok")
"""


def test_both_spellings_share_modules_and_singleton(tmp_path: Path) -> None:
    """``src.infrastructure.monitoring`` and ``infrastructure.monitoring`` are the same objects."""
    result = run_python(BOTH_SPELLINGS, cwd=REPO_ROOT, env={"MONITORING_LOG_DIR": str(tmp_path)})
    assert result.stdout.strip() == "ok", result.stderr
    assert (tmp_path / "llm_metrics.log").read_text().count("\n") == 1


def test_design_snippet_from_a_checkout_without_install(tmp_path: Path) -> None:
    """From a bare copy of ``src/`` (nothing installed), the design's import still works."""
    import shutil

    shutil.copytree(REPO_ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if 'site-packages' in p or 'lib/python' in p]\n"
        "sys.path.insert(0, '.')\n"
        "import importlib.util\n"
        + BOTH_SPELLINGS.replace("import infrastructure.monitoring as real",
                                 "import infrastructure.monitoring as real\n"
                                 f"assert real.__file__.startswith({str(tmp_path)!r}), real.__file__")
    )
    result = run_python(code, cwd=tmp_path, env={"MONITORING_LOG_DIR": str(tmp_path / "logs"),
                                                 "PYTHONPATH": ""})
    assert result.stdout.strip() == "ok", result.stderr


def test_public_names_stay_functions_whatever_was_imported_first(tmp_path: Path) -> None:
    """A submodule never shadows the public name of the same package (``instrument`` is the function,
    even after the factory has loaded the SDK instrumentation)."""
    code = """
from infrastructure.monitoring import PerformanceMonitorFactory
PerformanceMonitorFactory.get_instance()
from infrastructure.monitoring import instrumentation
from infrastructure.monitoring.instrumentation import instrument, uninstrument
import inspect
names = [n for n in instrumentation.__all__ if inspect.ismodule(getattr(instrumentation, n))]
assert not names, names
assert inspect.isfunction(instrument) and inspect.isfunction(uninstrument)
print("ok")
"""
    result = run_python(code, cwd=tmp_path, env={"MONITORING_LOG_DIR": str(tmp_path / "logs")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
