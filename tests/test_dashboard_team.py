"""The dashboard served to a team: access control, drill-down, time range, live updates, phones.

The browser tests drive a real headless Chromium through the DevTools protocol (``cdp.py``)
against a real server on a free loopback port, over real log files.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrastructure.monitoring import ConfigError, load_settings
from infrastructure.monitoring.cli import main
from infrastructure.monitoring.web.data import bucket_for, dashboard_data
from infrastructure.monitoring.web.server import DashboardServer

from .cdp import Browser, Page
from .conftest import append_records, require

TOKEN = "team-token-0123456789abcdef"
NOW = time.time()
GPT, CLAUDE = "gpt-4o", "claude-3-5-sonnet-20241022"


def _llm(i: int, t: float) -> dict[str, Any]:
    failed = i % 7 == 0
    return {"timestamp": t, "module": "llm", "operation": "llm_call", "model": GPT if i % 2 == 0 else CLAUDE,
            "provider": "openai", "response_time": round(0.2 + i * 0.01, 3), "success": not failed,
            "error_type": ("timeout" if i % 28 == 0 else "rate_limit") if failed else None,
            "error_message": f"call {i} failed" if failed else None, "total_tokens": 100, "cost": 0.01}


LLM = [_llm(i, NOW - 5400 + i * 45) for i in range(120)]
TOOLS = [{"timestamp": NOW - 3000 + i * 30, "module": "tool", "operation": "tool_call",
          "tool_name": "read_file" if i % 2 else "search", "duration": round(0.01 * i, 3), "success": i % 9 != 0,
          "error_type": None if i % 9 else "FileNotFoundError"} for i in range(60)]


def _write(log_dir: Path) -> None:
    append_records(log_dir / "llm_metrics.log", LLM)
    append_records(log_dir / "tool_metrics.log", TOOLS)


@pytest.fixture(autouse=True)
def _no_token_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITORING_SERVER_TOKEN", raising=False)


@pytest.fixture
def make_server(log_dir: Path) -> Iterator[Callable[..., DashboardServer]]:
    started: list[DashboardServer] = []

    def build(environ: dict[str, str] | None = None, **server: Any) -> DashboardServer:
        settings = load_settings(overrides={"logging": {"log_dir": str(log_dir)},
                                            "server": {"port": 0, "events_check_seconds": 0.2, **server}},
                                 environ={})
        srv = DashboardServer(settings, hours=2, environ={"MONITORING_SERVER_TOKEN": TOKEN} if environ is None
                              else environ)
        srv.start()
        started.append(srv)
        return srv

    yield build
    for srv in started:
        srv.stop()


def _request(url: str, *, headers: dict[str, str] | None = None, method: str = "GET",
             body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, redirects not followed (the test looks at them)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- access control


def test_serve_refuses_a_network_address_without_credentials(log_dir: Path) -> None:
    """`monitoring serve --host 0.0.0.0` with no token exits non-zero, naming the host and how to set one."""
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0",  # noqa: S104
                                       "--log-dir", str(log_dir)])
    assert result.exit_code == 2  # a configuration that cannot serve safely: the command could not run
    assert "'0.0.0.0'" in result.output
    assert "MONITORING_SERVER_TOKEN" in result.output
    assert "server.basic_auth" in result.output


def test_serve_on_all_interfaces_with_a_token(log_dir: Path) -> None:
    """The installed `monitoring serve --host 0.0.0.0` starts when MONITORING_SERVER_TOKEN is set and asks for it."""
    _write(log_dir)
    exe = Path(sys.executable).with_name("monitoring")
    env = {**os.environ, "MONITORING_SERVER_TOKEN": TOKEN}
    env.pop("MONITORING_CONFIG", None)
    process = subprocess.Popen([str(exe), "serve", "--host", "0.0.0.0", "--port", "0",  # noqa: S104
                                "--log-dir", str(log_dir)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]
        port = int(lines[0].split(" on http://0.0.0.0:")[1].split()[0])
        assert lines[1].strip() == "access: a bearer token required (/healthz open)"
        url = f"http://127.0.0.1:{port}"
        assert _request(url + "/api/status")[0] == 401
        status, _, body = _request(url + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert {f["module"] for f in json.loads(body)["families"]} == {"llm", "tool"}
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "dashboard.internal"])  # noqa: S104
def test_every_non_loopback_host_needs_credentials(log_dir: Path, host: str) -> None:
    """Only literal loopback addresses and localhost may serve without credentials (a name could resolve anywhere)."""
    settings = load_settings(overrides={"logging": {"log_dir": str(log_dir)}, "server": {"port": 0}}, environ={})
    with pytest.raises(ConfigError, match=r"expected a loopback address .*MONITORING_SERVER_TOKEN"):
        DashboardServer(settings, host=host, environ={})


def test_a_short_token_is_refused(log_dir: Path) -> None:
    """A token anyone could guess stops the server at start, with the way to make a good one."""
    settings = load_settings(overrides={"logging": {"log_dir": str(log_dir)}, "server": {"port": 0}}, environ={})
    with pytest.raises(ConfigError, match=r"at least 16 characters \(this one has 6\).*secrets.token_urlsafe"):
        DashboardServer(settings, environ={"MONITORING_SERVER_TOKEN": "secret"})


def test_basic_auth_needs_its_password_variable(log_dir: Path) -> None:
    settings = load_settings(overrides={"logging": {"log_dir": str(log_dir)}, "server": {
        "port": 0, "basic_auth": {"username": "team", "password_env": "DASH_PASSWORD"}}}, environ={})
    with pytest.raises(ConfigError, match=r"server.basic_auth.password_env.*'DASH_PASSWORD'.*unset or empty"):
        DashboardServer(settings, environ={})


def test_api_answers_only_with_the_token(make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """Without the token: 401 and a Bearer challenge; a wrong one: 401; the right one: the data. /healthz is open."""
    _write(log_dir)
    srv = make_server()
    for path in ("/api/metrics", "/api/status", "/api/alerts", "/metrics", "/api/events", "/"):
        status, headers, _ = _request(srv.url + path)
        assert status == 401, path
        assert headers.get_all("WWW-Authenticate") == ['Bearer realm="monitoring"']
    status, _, body = _request(srv.url + "/api/metrics", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert status == 401
    assert json.loads(body) == {"error": "authentication required: send 'Authorization: Bearer <token>'"}
    status, _, body = _request(srv.url + "/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert json.loads(body)["totals"]["llm_calls"] == 120
    status, _, body = _request(srv.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert b"llm_requests_total" in body
    assert _request(srv.url + "/healthz")[:3:2] == (200, b"ok\n")


def test_basic_auth(make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """With server.basic_auth the browser's own prompt works: a Basic challenge, the right pair gets in."""
    srv = make_server(environ={"DASH_PASSWORD": "correct horse battery staple"},
                      basic_auth={"username": "team", "password_env": "DASH_PASSWORD"})

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    status, headers, _ = _request(srv.url + "/api/status")
    assert status == 401
    assert headers.get_all("WWW-Authenticate") == ['Basic realm="monitoring", charset="UTF-8"']
    assert _request(srv.url + "/api/status", headers=basic("team", "wrong horse battery staple"))[0] == 401
    assert _request(srv.url + "/api/status", headers=basic("other", "correct horse battery staple"))[0] == 401
    assert _request(srv.url + "/api/status", headers={"Authorization": "Basic %%%"})[0] == 401
    assert _request(srv.url + "/api/status", headers=basic("team", "correct horse battery staple"))[0] == 200


def test_token_link_becomes_a_strict_httponly_cookie(make_server: Callable[..., DashboardServer]) -> None:
    """`/?token=…` answers with a cookie and a redirect to the same view without the token in the address."""
    srv = make_server()
    status, headers, _ = _request(srv.url + f"/?hours=24&model={GPT}&token={TOKEN}")
    assert status == 303
    assert headers["Location"] == f"/?hours=24&model={GPT}"
    cookie = headers["Set-Cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert TOKEN not in cookie  # the cookie holds a MAC of the token, not the token
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
    assert "Secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    assert _request(srv.url + "/api/status", headers={"Cookie": f"other=1; {name_value}"})[0] == 200
    assert _request(srv.url + "/api/status", headers={"Cookie": name_value[:-1] + "0"})[0] == 401
    behind_tls = _request(srv.url + f"/?token={TOKEN}", headers={"X-Forwarded-Proto": "https"})[1]
    assert "Secure" in behind_tls["Set-Cookie"]
    assert _request(srv.url + "/?token=wrong-token-0123456789")[0] == 401


def test_sign_in_form(make_server: Callable[..., DashboardServer]) -> None:
    """The 401 page is a form; posting the token sets the cookie and returns to the view asked for."""
    srv = make_server()
    status, headers, body = _request(srv.url + "/?hours=6", headers={"Accept": "text/html"})
    assert status == 401
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<form method="post" action="/login">' in body
    assert b'name="next" value="hours=6"' in body
    assert "form-action 'self'" in headers["Content-Security-Policy"]
    form = urllib.parse.urlencode({"token": TOKEN, "next": "hours=6"}).encode()
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = _request(srv.url + "/login", method="POST", body=form, headers=ctype)
    assert (status, headers["Location"]) == (303, "/?hours=6")
    assert headers["Set-Cookie"].startswith("monitoring_session=")
    wrong = urllib.parse.urlencode({"token": "nope", "next": "hours=6"}).encode()
    status, headers, body = _request(srv.url + "/login", method="POST", body=wrong, headers=ctype)
    assert status == 401
    assert b"That token is not valid." in body
    assert "Set-Cookie" not in headers


def test_the_token_never_reaches_the_log(make_server: Callable[..., DashboardServer],
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Request lines are logged with the token hidden (a debug log is often shared when asking for help)."""
    srv = make_server()
    with caplog.at_level(logging.DEBUG, logger="infrastructure.monitoring.web"):
        _request(srv.url + f"/?token={TOKEN}")
        _request(srv.url + "/?token=guess-0123456789abcdef")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "token=<hidden>" in text
    assert TOKEN not in text
    assert "guess-0123456789abcdef" not in text


def test_a_loopback_server_with_a_token_still_asks_for_it(make_server: Callable[..., DashboardServer]) -> None:
    """Configured credentials apply on 127.0.0.1 too: other users of the machine are a team as well."""
    srv = make_server()
    assert srv.httpd.server_address[0] == "127.0.0.1"
    assert _request(srv.url + "/api/status")[0] == 401


# ----------------------------------------------------------------------------- view parameters


@pytest.mark.parametrize(("query", "message"), [
    ("hours=2&since=2024-01-01T00:00:00Z", "give either 'hours'"),
    ("since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z", "the window is empty"),
    ("since=yesterday", "'since' must be epoch seconds or ISO 8601"),
    ("since=2020-01-01T00:00:00Z&until=2024-01-01T00:00:00Z", "longer than 8784 hours"),
    ("until=1e300", "'until' is not a time"),
    (f"model={GPT}&tool=search", "give 'model' or 'tool', not both"),
    ("model=" + "m" * 201, "1 to 200 printable characters"),
    ("model=a%0Ab", "1 to 200 printable characters"),
    ("model=", "1 to 200 printable characters"),
    ("range=6h", "unknown parameter 'range'"),
    (f"token={TOKEN}", "unknown parameter 'token'"),
])
def test_bad_view_parameters_are_400(make_server: Callable[..., DashboardServer], query: str, message: str) -> None:
    srv = make_server()
    status, _, body = _request(srv.url + "/api/metrics?" + query, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 400
    assert message in json.loads(body)["error"]


def test_custom_window(make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """`since`/`until` pick a past stretch: exactly the records inside it are counted."""
    _write(log_dir)
    srv = make_server()
    since, until = NOW - 5400 + 10 * 45, NOW - 5400 + 30 * 45  # calls 10..29 (until is exclusive)
    status, _, body = _request(srv.url + f"/api/metrics?since={since}&until={until}",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    data = json.loads(body)
    assert data["totals"]["llm_calls"] == sum(1 for r in LLM if since <= r["timestamp"] < until)
    assert data["view"]["rolling"] is False


# ----------------------------------------------------------------------------- data: bucket and drill-down


@pytest.mark.parametrize(("hours", "span", "width"), [
    (6, None, 300), (2, None, 60), (24, None, 900), (168, None, 3600),
    (6, 180, 5),        # three minutes of data in six hours: 5 s buckets, 36 points
    (6, 600, 15),       # ten minutes: 15 s
    (2, 5340, 60),      # data over most of the window: the window decides
    (6, 20, 1), (6, 0, 300),
])
def test_bucket_follows_the_span_of_data(hours: float, span: float | None, width: int) -> None:
    assert bucket_for(hours, span) == width


def test_a_short_history_draws_lines(log_dir: Path) -> None:
    """Three minutes of records in a 6 h window: several points per series, charts zoomed onto the data."""
    append_records(log_dir / "llm_metrics.log", [
        {"timestamp": NOW - 180 + i, "module": "llm", "operation": "llm_call", "model": GPT if i % 2 else CLAUDE,
         "response_time": 0.5, "success": True, "total_tokens": 10, "cost": 0.001} for i in range(180)])
    data = dashboard_data(log_dir, hours=6, now=NOW)
    window = data["window"]
    assert 5 <= window["bucket"] <= 10
    calls = {s["name"]: s["points"] for s in data["charts"][0]["series"]}
    assert set(calls) == {GPT, CLAUDE}
    assert all(len(points) >= 10 for points in calls.values())
    assert sum(p[1] for p in calls[GPT]) * window["bucket"] / 60 == pytest.approx(90)  # calls/min back to calls
    assert window["view_since"] >= NOW - 180 - window["bucket"]
    assert window["view_until"] <= NOW
    assert data["totals"]["llm_calls"] == 180


def test_drill_down_data(log_dir: Path) -> None:
    """A model's drill-down: its own charts, its errors by type with exact counts, its ten slowest calls."""
    _write(log_dir)
    data = dashboard_data(log_dir, hours=2, now=NOW, model=GPT)
    assert data["filter"] == {"model": GPT}
    mine = [r for r in LLM if r["model"] == GPT]
    expected = Counter(r["error_type"] for r in mine if not r["success"])
    assert {r["error_type"]: r["count"] for r in data["tables"]["errors"]} == dict(expected)
    assert {r["what"] for r in data["tables"]["errors"]} == {GPT}
    slowest = data["tables"]["slowest"]
    want = sorted(mine, key=lambda r: -r["response_time"])[:10]
    assert [(r["time"], r["duration"]) for r in slowest] == [(r["timestamp"], r["response_time"]) for r in want]
    assert {c["id"] for c in data["charts"]} == {"calls", "errors", "latency", "tokens", "cost"}
    assert data["totals"] == {"llm_calls": len(mine), "tokens": 100 * len(mine),
                              "cost": pytest.approx(0.01 * len(mine))}

    tool = dashboard_data(log_dir, hours=2, now=NOW, tool="search")
    searches = [r for r in TOOLS if r["tool_name"] == "search"]
    assert [r["duration"] for r in tool["tables"]["slowest"]] == sorted((r["duration"] for r in searches),
                                                                       reverse=True)[:10]
    assert [(r["error_type"], r["count"]) for r in tool["tables"]["errors"]] == [
        ("FileNotFoundError", sum(1 for r in searches if not r["success"]))]
    assert tool["totals"] == {"tool_calls": len(searches)}


# ----------------------------------------------------------------------------- server-sent events


class _Stream:
    """A raw SSE client: the events and comments as they arrive."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        lines = [f"GET {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
                 *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while (line := self.file.readline().strip()):
            name, _, value = line.decode().partition(":")
            self.headers[name.lower()] = value.strip()

    def next(self) -> tuple[str, str]:
        """('event name', data) or ('comment', text), skipping the retry line."""
        fields: dict[str, str] = {}
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                return "comment", text[1:].strip()
            if not text:
                if "data" in fields:
                    return fields.get("event", "message"), fields["data"]
                fields.clear()
                continue
            name, _, value = text.partition(":")
            fields[name] = value.lstrip(" ")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_events_push_new_data_and_heartbeats(make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """The stream sends the data at once, again when records are added, and a heartbeat comment when quiet."""
    _write(log_dir)
    srv = make_server(events_heartbeat_seconds=1)
    stream = _Stream(srv.url + "/api/events?hours=2", {"Authorization": f"Bearer {TOKEN}"})
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        kind, payload = stream.next()
        assert kind == "metrics"
        assert json.loads(payload)["totals"]["llm_calls"] == 120
        assert stream.next() == ("comment", "heartbeat")  # nothing changed for a second
        append_records(log_dir / "llm_metrics.log", [_llm(1, time.time())] * 5)
        while (event := stream.next())[0] == "comment":
            pass
        assert json.loads(event[1])["totals"]["llm_calls"] == 125
    finally:
        stream.close()


def test_event_streams_are_bounded_and_end_with_their_client(make_server: Callable[..., DashboardServer],
                                                             log_dir: Path) -> None:
    """Past events_max_clients a page gets 503 (and retries later); a closed tab frees its thread at once."""
    _write(log_dir)
    srv = make_server(events_max_clients=2)
    threads_before = threading.active_count()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first, second = (_Stream(srv.url + "/api/events?hours=1", auth) for _ in range(2))
    try:
        assert (first.status, second.status) == (200, 200)
        first.next()
        second.next()
        assert srv.live_streams == 2
        third = _Stream(srv.url + "/api/events?hours=1", auth)
        assert third.status == 503
        assert third.headers["retry-after"] == "30"
        third.close()
        first.close()
        deadline = time.monotonic() + 3
        while srv.live_streams > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.live_streams == 1
        again = _Stream(srv.url + "/api/events?hours=1", auth)
        assert again.status == 200
        again.close()
    finally:
        second.close()
    deadline = time.monotonic() + 3
    while (srv.live_streams or threading.active_count() > threads_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.live_streams == 0
    assert threading.active_count() <= threads_before  # no thread left behind by a closed stream


# ----------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require("chromium", "chromium-browser")
    chrome = Browser(tmp_path_factory.mktemp("chrome"))
    yield chrome
    chrome.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.page()  # its own browser context: no cookie from another test
    yield tab
    tab.close()


def _signed_in(page: Page, srv: DashboardServer, query: str = "hours=2") -> None:
    page.goto(f"{srv.url}/?{query}&token={TOKEN}")
    page.wait_for("document.body.dataset.rendered")


def test_browser_is_refused_then_signs_in(page: Page, make_server: Callable[..., DashboardServer],
                                          log_dir: Path) -> None:
    """Chromium without the token gets the sign-in form; after the token, the dashboard, and no script can read
    the session cookie."""
    _write(log_dir)
    srv = make_server()
    page.goto(srv.url + "/?hours=2")
    assert page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 401
    assert page.evaluate("document.querySelector('form[action=\"/login\"]') !== null")
    assert page.evaluate("document.getElementById('charts')") is None
    page.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)}; "
                  "document.querySelector('form').submit()")
    page.wait_for("document.body && document.body.dataset.rendered")
    assert page.evaluate("location.search") == "?hours=2"
    assert page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 200
    assert page.evaluate("document.querySelectorAll('[data-chart=calls] path[data-series]').length") == 2
    assert page.evaluate("document.cookie") == ""  # HttpOnly
    cookies = page.send("Network.getCookies", {"urls": [srv.url]})["cookies"]
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("monitoring_session", True, "Strict")]


def test_browser_link_from_another_site(page: Page, make_server: Callable[..., DashboardServer],
                                        log_dir: Path) -> None:
    """A link in a chat opens the dashboard: the Strict cookie skips the cross-site hop, the page retries same-site."""
    _write(log_dir)
    srv = make_server()
    _signed_in(page, srv)
    chat = f'<a id="link" href="{srv.url}/?hours=2&amp;model={GPT}">dashboard</a>'
    page.goto("data:text/html," + urllib.parse.quote(chat))
    page.evaluate("document.getElementById('link').click()")
    page.wait_for("location.href.startsWith('http') && document.body && document.body.dataset.rendered")
    assert page.evaluate("document.getElementById('filter').textContent").startswith(f"model {GPT}")


def test_browser_drill_down(page: Page, make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """Clicking a model's series opens the page filtered to it, with its top errors and slowest calls."""
    _write(log_dir)
    srv = make_server()
    _signed_in(page, srv)
    href = page.evaluate(f"document.querySelector('[data-chart-box=calls] a[data-drill=model]"
                         f"[href$=\"model={GPT}\"]').getAttribute('href')")
    assert href == f"?hours=2&model={GPT}"
    page.evaluate(f"document.querySelector('[data-chart=calls] path[data-series=\"{GPT}\"]')"
                  ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    page.wait_for("location.search.includes('model=') && document.body.dataset.rendered")
    assert page.evaluate("location.search") == f"?hours=2&model={GPT}"
    slowest = page.evaluate("[...document.querySelectorAll('[data-table=slowest] tbody tr')]"
                            ".map(tr => [...tr.cells].map(td => td.textContent))")
    mine = [r for r in LLM if r["model"] == GPT]
    want = sorted(mine, key=lambda r: -r["response_time"])[:10]
    assert [row[1] for row in slowest] == [f"{r['response_time']:.3f} s" for r in want]
    assert {row[2] for row in slowest} == {GPT}
    errors = page.evaluate("[...document.querySelectorAll('[data-table=errors] tbody tr')]"
                           ".map(tr => [tr.cells[3].textContent, tr.cells[4].textContent])")
    expected = Counter(r["error_type"] for r in mine if not r["success"])
    assert {e: int(n) for e, n in errors} == dict(expected)
    assert page.evaluate("document.querySelectorAll('[data-chart=calls] path[data-series]').length") == 1
    page.evaluate("document.getElementById('unfilter').click()")
    page.wait_for("!location.search.includes('model=') && document.body.dataset.rendered")
    assert page.evaluate("location.search") == "?hours=2"


def test_browser_time_range_picker(page: Page, make_server: Callable[..., DashboardServer], log_dir: Path) -> None:
    """Presets are links that keep the filter; the custom form turns local times into a UTC since/until."""
    _write(log_dir)
    srv = make_server()
    _signed_in(page, srv, "hours=2&tool=search")
    presets = page.evaluate("[...document.querySelectorAll('#range a')].map(a => a.getAttribute('href'))")
    assert presets == [f"?hours={h}&tool=search" for h in (1, 6, 24, 168)]
    page.evaluate("document.querySelector('#range a[data-hours=\"24\"]').click()")
    page.wait_for("location.search.startsWith('?hours=24') && document.body.dataset.rendered")
    assert page.evaluate("document.querySelector('#range a[aria-current]').textContent") == "24 h"
    page.send("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})  # UTC+5:30, no summer time
    page.evaluate("var f = document.getElementById('custom'); f.since.value = '2030-01-01T05:30'; "
                  "f.until.value = '2030-01-01T11:30'; f.requestSubmit()")
    page.wait_for("location.search.includes('since=') && document.body.dataset.rendered")
    assert page.evaluate("location.search") == "?since=2030-01-01T00:00:00Z&until=2030-01-01T06:00:00Z&tool=search"
    assert page.evaluate("document.getElementById('window').textContent").startswith(
        "2030-01-01 00:00:00 UTC to 2030-01-01 06:00:00 UTC")


def test_browser_live_update_through_sse(page: Page, make_server: Callable[..., DashboardServer],
                                         log_dir: Path) -> None:
    """New records appear on an open page without a reload, pushed over /api/events."""
    _write(log_dir)
    srv = make_server()
    _signed_in(page, srv)
    page.wait_for("document.getElementById('live').dataset.state === 'live'")
    page.evaluate("window.notReloaded = true")
    assert page.evaluate("document.querySelector('[data-total=llm_calls] b').textContent") == "120"
    append_records(log_dir / "llm_metrics.log", [
        {**_llm(1, time.time() - 1), "model": "late-model", "success": True} for _ in range(3)])
    page.wait_for("document.querySelector('[data-chart-box=calls] li[data-series=\"late-model\"]') !== null",
                  timeout=10)
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("document.querySelector('[data-total=llm_calls] b').textContent") == "123"
    csp = page.evaluate("document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "connect-src 'self'" in csp


@pytest.mark.parametrize("query", ["hours=2", f"hours=2&model={GPT}"])
def test_browser_phone_width(page: Page, make_server: Callable[..., DashboardServer], log_dir: Path,
                             tmp_path: Path, query: str) -> None:
    """At 375 px (a phone) nothing scrolls sideways and the charts stack in one column; a screenshot is kept."""
    _write(log_dir)
    srv = make_server()
    page.send("Emulation.setDeviceMetricsOverride", {"width": 375, "height": 812, "deviceScaleFactor": 2,
                                                     "mobile": True})
    _signed_in(page, srv, query)
    assert page.evaluate("innerWidth") == 375
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    widest = page.evaluate("Math.max(...[...document.querySelectorAll('body *')]"
                           ".map(e => e.getBoundingClientRect().right))")
    assert widest <= 375
    boxes = page.evaluate("[...document.querySelectorAll('[data-chart-box]')].map(b => {"
                          "const r = b.getBoundingClientRect(); return [r.left, r.top, r.width]; })")
    assert len(boxes) >= 5
    assert len({round(left) for left, _, _ in boxes}) == 1  # one column
    assert all(b[1] > a[1] for a, b in itertools.pairwise(boxes))  # each below the last
    assert all(width >= 330 for _, _, width in boxes)  # as wide as the phone allows
    shot = tmp_path / "phone.png"
    assert page.screenshot(shot) > 50_000
