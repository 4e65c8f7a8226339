"""The dashboard in a real headless Chromium, the live server, its API and /metrics."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import load_settings
from infrastructure.monitoring.exporters.grafana import grafana_dashboard
from infrastructure.monitoring.web.server import DashboardServer

from .conftest import append_records, require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert(1)</script>"


def _chromium(url: str, user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    chromium = CHROMIUM or require("chromium", "chromium-browser")
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={user_dir}", "--window-size=1400,2000", *args, url],
        capture_output=True, text=True, timeout=120, check=False)


class _Dom(html.parser.HTMLParser):
    """Elements of the rendered page: (tag, attributes) plus the text of legend items."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.legend: list[str] = []
        self._in_legend = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "li" and dict(attrs).get("data-series") is not None:
            self._in_legend += 1
            self.legend.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._in_legend:
            self._in_legend -= 1

    def handle_data(self, data: str) -> None:
        if self._in_legend:
            self.legend[-1] += data

    def series(self, chart: str) -> dict[str, int]:
        """Series name -> points drawn, of the chart ``chart``."""
        out, inside = {}, None
        for tag, attrs in self.elements:
            if tag == "svg":
                inside = attrs.get("data-chart")
            elif tag == "path" and inside == chart and attrs.get("data-series") is not None:
                out[str(attrs["data-series"])] = int(attrs.get("data-points") or 0)
        return out


def _dom(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    return dom


NOW = time.time()
HOUR = 3600.0


def _logs(log_dir: Path) -> None:
    llm = []
    for i in range(90):  # 90 calls over the last 90 minutes: gpt-4o every minute, the evil one every 3rd
        model = EVIL if i % 3 == 0 else "gpt-4o"
        llm.append({"timestamp": NOW - 5400 + i * 60, "module": "llm", "operation": "llm_call", "model": model,
                    "provider": "openai", "response_time": 0.5 + (i % 10) / 10, "success": i % 15 != 0,
                    "error_type": None if i % 15 else "timeout", "total_tokens": 100, "prompt_tokens": 60,
                    "completion_tokens": 40, "cost": 0.01, "host": "web-1", "time_to_first_token": 0.2})
    append_records(log_dir / "llm_metrics.log", llm)
    append_records(log_dir / "tool_metrics.log", [
        {"timestamp": NOW - 3000 + i * 30, "module": "tool", "operation": "tool_call", "tool_name": "search",
         "duration": 0.2, "success": True, "host": "web-1"} for i in range(50)])
    append_records(log_dir / "system_metrics.log", [
        {"timestamp": NOW - 5400 + i * 300, "module": "system", "operation": "system_sample",
         "cpu_percent": 20.0 + i, "memory_percent": 40.0, "process_rss_bytes": 1e8, "host": "web-1"}
        for i in range(18)])


def _check_page(dom: _Dom, *, bucket_minutes: int) -> None:
    calls = dom.series("calls")
    assert set(calls) == {"gpt-4o", EVIL}  # the evil name is an attribute value, not markup
    expected_buckets = {int(NOW - 5400 + i * 60) // (bucket_minutes * 60) for i in range(90) if i % 3}
    assert calls["gpt-4o"] == len(expected_buckets)
    assert set(dom.series("latency")) == {"p50", "p95"}
    assert set(dom.series("errors")) == {"llm", "tools"}
    assert set(dom.series("tools")) == {"search"}
    assert set(dom.series("system")) == {"cpu", "memory"}
    assert set(dom.series("tokens")) == {"gpt-4o", EVIL}
    assert EVIL in dom.legend  # shown as text
    scripts = [a for tag, a in dom.elements if tag == "script"]
    assert len(scripts) == 2  # the data and the page's own script: the model name made none
    tables = {a.get("data-table") for tag, a in dom.elements if tag == "table"}
    assert "errors" in tables


def test_static_dashboard_renders_in_chromium(log_dir: Path, tmp_path: Path) -> None:
    _logs(log_dir)
    out = tmp_path / "dashboard.html"
    exe = Path(sys.executable).with_name("monitoring")
    made = subprocess.run([str(exe), "dashboard", "--output", str(out), "--hours", "2", "--log-dir", str(log_dir)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from anywhere
    assert "https://" not in page
    assert EVIL not in page  # escaped inside the JSON too
    dumped = _chromium(out.as_uri(), tmp_path / "chrome", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    _check_page(_dom(dumped.stdout), bucket_minutes=1)
    shot = tmp_path / "dashboard.png"
    _chromium(out.as_uri(), tmp_path / "chrome", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000  # a picture with charts, not a blank page


@pytest.fixture
def server(log_dir: Path) -> Any:
    settings = load_settings(overrides={"logging": {"log_dir": str(log_dir)}, "server": {"port": 0}}, environ={})
    srv = DashboardServer(settings, hours=2)
    srv.start()
    yield srv
    srv.stop()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def test_server_binds_to_loopback_by_default(server: DashboardServer) -> None:
    assert server.httpd.server_address[0] == "127.0.0.1"


def test_live_dashboard_and_api(server: DashboardServer, log_dir: Path, tmp_path: Path) -> None:
    _logs(log_dir)
    status, headers, body = _get(server.url + "/api/metrics?hours=2")
    assert status == 200
    data = json.loads(body)
    calls = {s["name"]: s for s in data["charts"][0]["series"]}
    assert sum(p[1] for p in calls["gpt-4o"]["points"]) == 60  # 1-minute buckets: calls per minute = calls
    assert data["totals"]["llm_calls"] == 90
    assert [(r["what"], r["error_type"], r["count"]) for r in data["tables"]["errors"]] == [(EVIL, "timeout", 6)]
    assert headers["X-Content-Type-Options"] == "nosniff"

    dumped = _chromium(server.url + "/?hours=2", tmp_path / "chrome", "--dump-dom")
    dom = _dom(dumped.stdout)
    _check_page(dom, bucket_minutes=1)
    body_attrs = next(a for tag, a in dom.elements if tag == "body")
    assert body_attrs.get("data-live") == "/api/metrics?hours=2"

    status, _, body = _get(server.url + "/api/status")
    families = {f["module"]: f for f in json.loads(body)["families"]}
    assert families["llm"]["records"] == 90
    status, _, body = _get(server.url + "/api/alerts")
    assert json.loads(body) == {"current": [], "recent": []}


@pytest.mark.parametrize(("path", "code"), [
    ("/api/metrics?hours=abc", 400), ("/api/metrics?hours=-1", 400), ("/api/metrics?hours=1e9", 400),
    ("/api/metrics?hours=nan", 400), ("/api/metrics?days=1", 400), ("/api/metrics?hours=1&hours=2", 400),
    ("/api/metrics?" + "hours=1&" * 60, 400), ("/api/metrics?%zz", 400), ("/metrics?x=1", 400),
    ("/nope", 404), ("/../etc/passwd", 404),
])
def test_bad_requests_get_4xx(server: DashboardServer, path: str, code: int) -> None:
    status, headers, body = _get(server.url + path)
    assert status == code
    assert "error" in json.loads(body)
    assert headers["Content-Type"] == "application/json"


def test_only_get_and_head(server: DashboardServer) -> None:
    request = urllib.request.Request(server.url + "/api/metrics", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "GET, HEAD"
    info.value.close()


def test_metrics_endpoint_counts_what_the_logs_hold(server: DashboardServer, log_dir: Path) -> None:
    _logs(log_dir)
    status, headers, body = _get(server.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'llm_requests_total{module="llm",operation="llm_call",model="gpt-4o",provider="openai",success="true",' \
           'host="web-1"} 60' in text
    escaped = EVIL.replace('"', '\\"')
    assert f'model="{escaped}"' in text
    assert 'tool_calls_total{tool="search",success="true",host="web-1"} 50' in text
    assert 'system_cpu_percent{host="web-1"} 37' in text
    assert 'llm_tokens_total{operation="llm_call",model="gpt-4o",provider="openai",type="prompt",host="web-1"} 3600' \
        in text
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool checks the exposition format (.ci/run installs Debian's prometheus)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_counters_only_grow_across_rotation_and_cleanup(log_dir: Path) -> None:
    from infrastructure.monitoring.exporters.prometheus import LiveMetrics

    path = log_dir / "tool_metrics.log"
    row = {"module": "tool", "operation": "tool_call", "tool_name": "t", "duration": 0.1, "success": True,
           "host": "h"}
    append_records(path, [{**row, "timestamp": NOW}] * 10)
    metrics = LiveMetrics(log_dir, buckets=(0.5, 1.0))
    assert 'tool_calls_total{tool="t",success="true",host="h"} 10' in metrics.render()
    append_records(path, [{**row, "timestamp": NOW}] * 5)
    path.rename(log_dir / "tool_metrics.log.1")  # rotation
    append_records(path, [{**row, "timestamp": NOW}] * 3)
    assert 'tool_calls_total{tool="t",success="true",host="h"} 18' in metrics.render()
    (log_dir / "tool_metrics.log.1").unlink()  # retention
    append_records(path, [{**row, "timestamp": NOW}] * 2)
    text = metrics.render()
    assert 'tool_calls_total{tool="t",success="true",host="h"} 20' in text
    assert 'tool_call_duration_seconds_bucket{tool="t",host="h",le="0.5"} 20' in text


def test_metrics_label_sets_are_bounded(log_dir: Path) -> None:
    from infrastructure.monitoring.exporters.prometheus import LiveMetrics

    append_records(log_dir / "tool_metrics.log", [
        {"timestamp": NOW, "module": "tool", "operation": "tool_call", "tool_name": f"t{i}", "success": True}
        for i in range(50)])
    text = LiveMetrics(log_dir, buckets=(1.0,), max_series=10).render()
    lines = [x for x in text.splitlines() if x.startswith("tool_calls_total{")]
    assert len(lines) == 11
    assert 'tool_calls_total{tool="__other__",success="__other__",host="__other__"} 40' in text
    assert 'monitoring_series_overflow_total{metric="tool_calls_total"} 40' in text


def test_grafana_dashboard_uses_exposed_series(server: DashboardServer, log_dir: Path, tmp_path: Path) -> None:
    _logs(log_dir)
    exposed = {line.split("{")[0].split(" ")[0] for line in _get(server.url + "/metrics")[2].decode().splitlines()
               if line and not line.startswith("#")}
    board = grafana_dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    import re

    used = {m for e in exprs for m in re.findall(r"\b([a-z_]+_(?:total|bucket|percent))\b", e)}
    assert used
    assert used <= exposed  # every series a panel asks for exists
    exe = Path(sys.executable).with_name("monitoring")
    out = tmp_path / "grafana.json"
    done = subprocess.run([str(exe), "dashboard", "--grafana", str(out)], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["uid"] == "llm-telemetry"


def test_the_live_page_follows_the_event_stream(server: DashboardServer, log_dir: Path, tmp_path: Path) -> None:
    """Served live, the page opens /api/events (its CSP allows its own server and nothing else) and redraws
    from the data pushed there."""
    from .cdp import Browser

    require("chromium", "chromium-browser")
    _logs(log_dir)
    browser = Browser(tmp_path / "chrome")
    try:
        page = browser.page()
        page.goto(server.url + "/?hours=2")
        embedded = page.evaluate("JSON.parse(document.getElementById('dashboard-data').textContent).generated_at")
        page.wait_for(f"Number(document.body.dataset.rendered) > {embedded}")  # drawn again from fresher data
        assert page.evaluate("document.body.dataset.events") == "/api/events?hours=2"
        _check_page(_dom(page.evaluate("document.documentElement.outerHTML")), bucket_minutes=1)
    finally:
        browser.close()
