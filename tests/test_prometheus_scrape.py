"""A real Prometheus server scrapes `monitoring serve` and answers PromQL with the logged values."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import append_records, require


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def _promql(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _until(base: str, query: str, want: float, deadline: float) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = _promql(base, query)
        if result and float(result[0]["value"][1]) == pytest.approx(want):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{query} never reached {want}: {result}")


@pytest.fixture
def served(log_dir: Path, tmp_path: Path) -> Any:
    log_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    exe = Path(sys.executable).with_name("monitoring")
    config = tmp_path / "monitoring.yaml"
    config.write_text(json.dumps({"logging": {"log_dir": str(log_dir)}, "server": {"cache_seconds": 0}}))
    with open(tmp_path / "serve.err", "wb") as err:
        proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.fixture
def prometheus(served: int, tmp_path: Path) -> Any:
    prometheus = require("prometheus")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: llm-app
    static_configs:
      - targets: ["127.0.0.1:{served}"]
""")
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "HOME": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/-/ready", time.monotonic() + 60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_promql_returns_the_logged_values(prometheus: str, log_dir: Path) -> None:
    now = time.time()
    records = [{"timestamp": now - 100 + i, "module": "llm", "operation": "llm_call",
                "model": "gpt-4o" if i % 4 else "claude-3-5-haiku", "provider": "openai" if i % 4 else "anthropic",
                "response_time": 0.3 if i % 2 else 3.0, "success": i % 10 != 0, "prompt_tokens": 100,
                "completion_tokens": 20, "cost": 0.002, "host": "web-1"} for i in range(80)]
    append_records(log_dir / "llm_metrics.log", records)
    deadline = time.monotonic() + 90
    _until(prometheus, "sum(llm_requests_total)", 80, deadline)
    by_model = {r["metric"]["model"]: float(r["value"][1])
                for r in _promql(prometheus, "sum by (model) (llm_requests_total)")}
    assert by_model == {"gpt-4o": 60, "claude-3-5-haiku": 20}
    failed = _promql(prometheus, 'sum(llm_requests_total{success="false"})')
    assert float(failed[0]["value"][1]) == 8
    tokens = _promql(prometheus, 'sum(llm_tokens_total{type="prompt",host="web-1"})')
    assert float(tokens[0]["value"][1]) == 8000
    slow = _promql(prometheus, 'sum(llm_request_duration_seconds_bucket{le="2.5"})')
    assert float(slow[0]["value"][1]) == 40  # the 0.3 s half
    # more lines arrive: the counters follow on the next scrapes
    append_records(log_dir / "llm_metrics.log", records[:10])
    _until(prometheus, "sum(llm_requests_total)", 90, deadline)
    scraped = _promql(prometheus, 'up{job="llm-app"}')
    assert float(scraped[0]["value"][1]) == 1


def test_serve_with_jobs_evaluates_alerts(log_dir: Path, tmp_path: Path) -> None:
    """`monitoring serve --jobs` is the one process a small deployment runs: it evaluates the rules too."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = tmp_path / "monitoring.yaml"
    config.write_text(json.dumps({"logging": {"log_dir": str(log_dir)}, "alerts": {"interval_seconds": 1, "rules": [
        {"name": "silence", "module": "llm", "expr": "count < 1", "window": "1m", "severity": "warning"}]}}))
    exe = Path(sys.executable).with_name("monitoring")
    with open(tmp_path / "serve.err", "wb") as err:
        proc = subprocess.Popen([str(exe), "serve", "--jobs", "--config", str(config), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30)
        deadline = time.monotonic() + 30
        current: list[Any] = []
        while time.monotonic() < deadline and not current:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/alerts", timeout=10) as response:
                current = json.loads(response.read())["current"]
            time.sleep(0.3)
        assert [(a["rule"], a["state"]) for a in current] == [("silence", "firing")]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert "alert_evaluation every 1s" in (tmp_path / "serve.err").read_text()
