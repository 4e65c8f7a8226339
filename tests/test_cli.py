"""The real ``monitoring`` console script, run as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def monitoring(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = shutil.which("monitoring", path=str(Path(sys.executable).parent)) or shutil.which("monitoring")
    assert script, "the console script is not installed (pip install -e .)"
    return subprocess.run([script, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def test_demo_writes_every_family(tmp_path: Path) -> None:
    """``monitoring demo`` records a mixed workload into ./logs and says what it wrote where."""
    result = monitoring("demo", "--seconds", "1.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Recorded" in result.stdout
    assert "Next, try:" in result.stdout
    assert f"Files in {tmp_path / 'logs'}" in result.stdout
    for name in ("llm", "tool", "task", "checkpoint", "system"):
        path = tmp_path / "logs" / f"{name}_metrics.log"
        assert path.name in result.stdout
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert records, name
        assert all(r["module"] == name for r in records)
    llm = [json.loads(line) for line in (tmp_path / "logs" / "llm_metrics.log").read_text().splitlines()]
    assert len({r["model"] for r in llm}) >= 3
    assert all(r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"] for r in llm)


def test_validate_config_reports_errors(tmp_path: Path) -> None:
    """Bad YAML exits 2 (a configuration error) with every bad key and value at once; a bad
    environment value also exits 2."""
    (tmp_path / "bad.yaml").write_text("logging: {rotation: {backup_count: zero}, strict: maybe}\n"
                                       "log_cleanup: {retention_dayz: 3}\n")
    bad = monitoring("validate-config", "--config", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2
    assert "invalid value for 'logging.rotation.backup_count' in bad.yaml: 'zero'" in bad.stderr
    assert "invalid value for 'logging.strict' in bad.yaml: 'maybe'" in bad.stderr
    assert "unknown key 'log_cleanup.retention_dayz'" in bad.stderr
    assert "did you mean 'retention_days'?" in bad.stderr
    assert "3 errors, 0 warnings" in bad.stderr
    env = monitoring("validate-config", cwd=tmp_path, env={"MONITORING_ENABLED": "perhaps"})
    assert env.returncode == 2
    assert "MONITORING_ENABLED='perhaps'" in env.stderr
    good = monitoring("validate-config", cwd=tmp_path)
    assert good.returncode == 0
    assert "configuration: <defaults>" in good.stdout
    (tmp_path / "priced.yaml").write_text("pricing: {version: v7, models: {gpt-4o: {input: 1, output: 2}}}\n"
                                          "tracing: {sample_rate: 0.25}\n")
    priced = monitoring("validate-config", "--config", "priced.yaml", cwd=tmp_path)
    assert "pricing: 1 models, version=v7" in priced.stdout
    assert "tracing: sample_rate=0.25" in priced.stdout


@pytest.mark.parametrize("args", [["demo", "--seconds", "0"], ["no-such-command"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    """Invalid usage is exit status 2, as click defines it."""
    assert monitoring(*args, cwd=tmp_path).returncode == 2
