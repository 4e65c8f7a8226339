"""``monitoring serve``: the dashboard, a JSON API, live updates and ``/metrics``, from one log folder.

=====================  ===========================================================
``GET /``              the dashboard, kept current through ``/api/events``
``GET /api/metrics``   the dashboard's data as JSON
``GET /api/events``    the same data as server-sent events, each time the logs change
``GET /api/status``    the folder: families, files, bytes, records, free disk, faults
``GET /api/alerts``    pending and firing alerts, and recent transitions
``GET /metrics``       Prometheus text exposition (see ``exporters/prometheus.py``)
``GET /healthz``       ``ok`` (open to all: probes carry no credentials, and it tells nothing)
``POST /login``        the sign-in form: a token for a cookie
=====================  ===========================================================

The dashboard's window and filter are query parameters, the same on ``/``,
``/api/metrics`` and ``/api/events``: ``hours=N`` (the last N hours, default 6), or
``since=T`` with an optional ``until=T`` (epoch seconds or ISO 8601, UTC when no zone is
given), and ``model=NAME`` or ``tool=NAME`` for one model's or one tool's drill-down.

It binds to 127.0.0.1 unless told otherwise, and refuses any other address unless
requests must authenticate (``web/auth.py``): the figures describe an application and
should not be public by accident. Query strings are checked strictly — an unknown
parameter, a malformed or out-of-range value, or a query string over 1 KiB is a
400 with a JSON error — and every answer carries ``nosniff`` and a restrictive CSP.
Each request runs in its own daemon thread (stdlib ``ThreadingHTTPServer``); a live
page holds one for as long as it is open, so their number is bounded
(``server.events_max_clients``) and each notices within ``events_check_seconds`` that
its browser went away. ``/metrics`` answers from a copy at most ``cache_seconds`` old,
so several Prometheus servers scraping at once cost one refresh.
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import orjson

from ..errors import BadRequestError
from ..exporters.prometheus import CONTENT_TYPE, LiveMetrics
from ..query.source import LogSource
from ..schema import ALERTS_STATE_FILE
from .auth import COOKIE_MAX_AGE, COOKIE_NAME, Credentials, resolve_credentials
from .dashboard import render_dashboard, render_sign_in
from .data import dashboard_data

__all__ = ["BadRequestError", "DashboardServer", "View", "folder_signature", "parse_view"]

_log = logging.getLogger("infrastructure.monitoring.web")

_MAX_QUERY: Final = 1024
_MAX_HOURS: Final = 24 * 366
_MAX_NAME: Final = 200
_MAX_FORM: Final = 2048
_ROLLING_REFRESH: Final = 60.0
"""A rolling window is redrawn at least this often (its oldest points age out) even when no file changed."""
_COST_FACTOR: Final = 5.0
"""Live pushes are at least this many times the data's own computing time apart."""
_VIEW_PARAMS: Final = ("hours", "since", "until", "model", "tool")
_SECRET_RE: Final = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class View:
    """One window and filter of the dashboard, as the query string gave it."""

    hours: float
    since: float | None = None
    until: float | None = None
    model: str | None = None
    tool: str | None = None
    hours_given: bool = True

    @property
    def rolling(self) -> bool:
        """The window ends now (and moves with time)."""
        return self.until is None

    def window(self, now: float | None = None) -> tuple[float, float]:
        end = self.until if self.until is not None else (time.time() if now is None else now)
        return (self.since if self.since is not None else end - self.hours * 3600), end

    def query(self, *, with_filter: bool = True) -> str:
        """The canonical query string (no token, fixed order): what links and the live stream use."""
        pairs: list[tuple[str, str]] = []
        if self.since is not None:
            pairs.append(("since", _iso(self.since)))
        elif self.hours_given or self.until is None:
            pairs.append(("hours", f"{self.hours:g}"))
        if self.until is not None:
            pairs.append(("until", _iso(self.until)))
        if with_filter and self.model is not None:
            pairs.append(("model", self.model))
        if with_filter and self.tool is not None:
            pairs.append(("tool", self.tool))
        return urllib.parse.urlencode(pairs, safe=":", quote_via=urllib.parse.quote)

    def describe(self) -> dict[str, Any]:
        """What the page's time-range picker and drill-down links need."""
        return {"query": self.query(with_filter=False), "rolling": self.rolling,
                "hours": None if self.since is not None else self.hours, "since": self.since, "until": self.until}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_params(params: dict[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown parameter {unknown[0]!r}; accepted: {', '.join(allowed) or 'none'}")
    out = {}
    for name, values in params.items():
        if len(values) > 1:
            raise BadRequestError(f"{name!r} given more than once")
        out[name] = values[0]
    return out


def _time(name: str, text: str) -> float:
    from ..query.spec import QueryError, parse_time  # the query parser, only for a request with times

    try:
        value = parse_time(text)
    except QueryError:
        raise BadRequestError(f"{name!r} must be epoch seconds or ISO 8601 such as 2024-01-31T12:00:00Z, "
                              f"not {text[:40]!r}") from None
    if value is None or not math.isfinite(value) or not 0 <= value < 1e11:
        raise BadRequestError(f"{name!r} is not a time: {text[:40]!r}")
    return value


def _name(name: str, text: str) -> str:
    if not text or len(text) > _MAX_NAME or not text.isprintable():
        raise BadRequestError(f"{name!r} must be 1 to {_MAX_NAME} printable characters")
    return text


def parse_view(params: dict[str, list[str]], default_hours: float, *, allowed: tuple[str, ...] = _VIEW_PARAMS,
               now: float | None = None) -> View:
    """The window and filter of a query string; ``BadRequestError`` saying what is wrong and what is valid."""
    given = _check_params(params, allowed)
    hours, hours_given = default_hours, "hours" in given
    if hours_given:
        try:
            hours = float(given["hours"])
        except ValueError:
            raise BadRequestError(f"'hours' must be a number, not {given['hours'][:32]!r}") from None
        if not (math.isfinite(hours) and 0 < hours <= _MAX_HOURS):
            raise BadRequestError(f"'hours' must be more than 0 and at most {_MAX_HOURS}")
    since = _time("since", given["since"]) if "since" in given else None
    until = _time("until", given["until"]) if "until" in given else None
    if since is not None and hours_given:
        raise BadRequestError("give either 'hours' (the last N hours) or 'since' (with an optional 'until'), "
                              "not both")
    moment = time.time() if now is None else now
    if since is not None:
        end = until if until is not None else moment
        if not since < end:
            raise BadRequestError(f"the window is empty: 'since' ({_iso(since)}) is not before "
                                  f"{'until' if until is not None else 'now'} ({_iso(end)})")
        if end - since > _MAX_HOURS * 3600:
            raise BadRequestError(f"the window is longer than {_MAX_HOURS} hours")
    model = _name("model", given["model"]) if "model" in given else None
    tool = _name("tool", given["tool"]) if "tool" in given else None
    if model is not None and tool is not None:
        raise BadRequestError("give 'model' or 'tool', not both")
    return View(hours=hours, since=since, until=until, model=model, tool=tool, hours_given=hours_given)


def folder_signature(log_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the folder's files: a change means new records.

    Hidden files (locks, state and cache files beside the logs) are left out, or reading
    the logs would look like a change; the alert state is the one the page shows."""
    found = []
    try:
        with os.scandir(log_dir) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name != ALERTS_STATE_FILE:
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue  # rotated or removed between the listing and the stat
                found.append((entry.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(found))


class DashboardServer:
    """One HTTP server over one log folder.

        server = DashboardServer(settings)            # port 0: any free port
        server.start()                                 # background thread; server.url
        server.stop()

    Raises ``ConfigError`` when asked to bind to a non-loopback address with no
    credentials configured (or a secret too short); ``environ`` is where the secrets are
    read (default ``os.environ``).

    ``parser`` answers the dashboard and ``/api/status`` from elsewhere than the folder (a
    ClickHouse table of the whole fleet, ``fleet.reader.ClickHouseParser``): the live page
    then refreshes every ``events_check_seconds`` instead of when a file changes. ``/metrics``
    and the alerts stay this host's (its folder's live metrics, its evaluator's state).
    """

    def __init__(self, settings: Any, *, host: str | None = None, port: int | None = None,
                 hours: float = 6.0, environ: Mapping[str, str] | None = None,
                 parser: LogSource | None = None) -> None:
        self.settings = settings
        self.log_dir = Path(settings.logging.log_dir)
        self.parser = parser
        self.hours = hours
        server_settings = settings.server
        bind_host = host or server_settings.host
        self._bind_host = bind_host
        self._environ = environ
        self.credentials: Credentials = resolve_credentials(server_settings, bind_host, environ)
        self.metrics = LiveMetrics(self.log_dir, buckets=server_settings.buckets)
        self._cache_seconds = server_settings.cache_seconds
        self._metrics_text: tuple[float, str] | None = None
        self._metrics_lock = threading.Lock()
        self.events_check = server_settings.events_check_seconds
        self.events_heartbeat = server_settings.events_heartbeat_seconds
        self.events_max = server_settings.events_max_clients
        self._event_slots = threading.BoundedSemaphore(self.events_max)
        self._streams = 0
        self._streams_cond = threading.Condition()
        self._stopping = threading.Event()
        self._last_cost = 0.0
        self._data_cache: dict[tuple[str, Any], tuple[float, dict[str, Any]]] = {}
        self._data_lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((bind_host, server_settings.port if port is None else port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    @property
    def live_streams(self) -> int:
        """Browsers following ``/api/events`` right now."""
        with self._streams_cond:
            return self._streams

    def reload(self, settings: Any) -> None:
        """Take new settings (``monitoring serve`` on SIGHUP): credentials, caches, live-update pacing
        and what the dashboard reads them for; the address and the log folder stay. A new file that
        cannot serve safely (a public address left without credentials) raises ``ConfigError`` and
        the running settings stay in force."""
        server_settings = settings.server
        credentials = resolve_credentials(server_settings, self._bind_host, self._environ)
        self.settings = settings
        self.credentials = credentials
        self._cache_seconds = server_settings.cache_seconds
        self.events_check = server_settings.events_check_seconds
        self.events_heartbeat = server_settings.events_heartbeat_seconds
        with self._data_lock:
            self._data_cache.clear()
        self._metrics_text = None

    def start(self) -> None:
        self.metrics.warm_up()
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="monitoring-serve",
                                        daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.metrics.warm_up()
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop accepting, end the live streams (within ``events_check_seconds``), close."""
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._streams_cond:
            self._streams_cond.wait_for(lambda: self._streams == 0, timeout=self.events_check + 5)

    # ------------------------------------------------------------------ answers

    def metrics_text(self) -> str:
        with self._metrics_lock:
            cached = self._metrics_text
            now = time.monotonic()
            if cached is None or now - cached[0] >= self._cache_seconds:
                cached = self._metrics_text = (now, self.metrics.render())
            return cached[1]

    def status(self) -> dict[str, Any]:
        from dataclasses import asdict  # only for /api/status

        from ..query.storage import folder_status  # only for /api/status

        status = getattr(self.parser, "status", None)  # a table's own status, when it has one
        state = status() if callable(status) else folder_status(self.log_dir)
        return {**asdict(state), "pid": os.getpid(), "time": time.time()}

    def alerts(self) -> dict[str, Any]:
        from ..alerts.engine import AlertEvaluator  # the rules: only for /api/alerts

        evaluator = AlertEvaluator(self.settings.alerts, self.log_dir)
        return {"current": evaluator.current(), "recent": evaluator.recent(hours=24)}

    def data(self, view: View | float) -> dict[str, Any]:
        """The dashboard's data of ``view`` (or of the last ``view`` hours)."""
        if not isinstance(view, View):
            view = View(hours=float(view))
        since, until = view.window()
        data = dashboard_data(self.log_dir, hours=view.hours, since=since, now=until, settings=self.settings,
                              model=view.model, tool=view.tool, parser=self.parser)
        data["view"] = view.describe()
        return data

    def shared_data(self, view: View, signature: Any) -> dict[str, Any]:
        """``data(view)``, computed once for every live page showing the same view of the same files."""
        key = (view.query(), signature)
        with self._data_lock:
            hit = self._data_cache.get(key)
            if hit is not None and (not view.rolling or time.monotonic() - hit[0] < self.events_check):
                return hit[1]
            data = self.data(view)
            if len(self._data_cache) >= 32:
                self._data_cache.clear()
            self._data_cache[key] = (time.monotonic(), data)
            return data

    def stream(self, write: Callable[[bytes], Any], connection: socket.socket, view: View) -> None:
        """Send ``view``'s data now and whenever the folder changes, a heartbeat comment when
        nothing happens, until the client goes away or the server stops."""
        with self._streams_cond:
            self._streams += 1
        try:
            write(b"retry: 5000\n\n")
            sent_signature: Any = None
            sent_at = last_write = -math.inf
            event_id = 0
            while not self._stopping.is_set():
                signature = self._signature()
                now = time.monotonic()
                changed = signature != sent_signature
                pause = max(self.events_check, _COST_FACTOR * self._last_cost)
                if (changed and now - sent_at >= pause) or (view.rolling and now - sent_at >= _ROLLING_REFRESH):
                    started = time.perf_counter()
                    data = self.shared_data(view, signature)
                    self._last_cost = time.perf_counter() - started
                    event_id += 1
                    write(b"id: %d\nevent: metrics\ndata: %s\n\n" % (event_id, orjson.dumps(data)))
                    sent_signature, sent_at, last_write = signature, time.monotonic(), time.monotonic()
                elif now - last_write >= self.events_heartbeat:
                    write(b": heartbeat\n\n")
                    last_write = now
                if _gone(connection, self.events_check):
                    return
        except OSError:
            return  # the client went away mid-write (or stopped reading for 30 s)
        finally:
            with self._streams_cond:
                self._streams -= 1
                self._streams_cond.notify_all()

    def _signature(self) -> Any:
        """What changes when there are new records: the folder's files, or for another source the
        clock, every ``events_check_seconds`` (asking a cluster what changed costs a query)."""
        if self.parser is None:
            return folder_signature(self.log_dir)
        return int(time.time() // max(self.events_check, 1.0))

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "monitoring"
            sys_version = ""

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_POST(self) -> None:
                if self.path.partition("?")[0] == "/login":
                    self._login()
                    return
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "only GET and HEAD"}', "application/json",
                           head=False, extra={"Allow": "GET, HEAD"})

            def do_PUT(self) -> None:
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "only GET and HEAD"}', "application/json",
                           head=False, extra={"Allow": "GET, HEAD"})

            do_DELETE = do_PATCH = do_PUT  # noqa: N815

            # -------------------------------------------------------------- the gate

            def _authenticated(self) -> bool:
                creds = app.credentials
                if not creds.required:
                    return True
                return creds.check_authorization(self.headers.get("Authorization")) or creds.check_cookie(
                    self.headers.get("Cookie"))

            def _refuse(self, *, head: bool, page: bool, wrong: bool = False, next_query: str = "") -> None:
                challenges = app.credentials.challenges()
                if page:
                    # a page opened from another site arrives without the SameSite=Strict cookie:
                    # reloading once from here sends it (the second arrival is same-origin, so no loop)
                    retry = self.headers.get("Sec-Fetch-Site") == "cross-site" and not wrong
                    html, csp = render_sign_in(token=app.credentials.token is not None, wrong=wrong,
                                               next_query=next_query, reload=retry)
                    self._send(HTTPStatus.UNAUTHORIZED, html.encode(), "text/html; charset=utf-8", head=head,
                               extra={"Content-Security-Policy": csp},
                               challenges=challenges)
                    return
                how = ("send 'Authorization: Bearer <token>'" if app.credentials.token is not None
                       else "send HTTP basic credentials")
                self._send(HTTPStatus.UNAUTHORIZED, orjson.dumps({"error": f"authentication required: {how}"}),
                           "application/json", head=head, challenges=challenges)

            def _session_cookie(self) -> str:
                secure = "; Secure" if self.headers.get("X-Forwarded-Proto", "").lower() == "https" else ""
                return (f"{COOKIE_NAME}={app.credentials.cookie_value()}; Path=/; Max-Age={COOKIE_MAX_AGE}; "
                        f"HttpOnly; SameSite=Strict{secure}")

            def _redirect(self, view_query: str, *, cookie: bool) -> None:
                extra = {"Location": "/" + (f"?{view_query}" if view_query else "")}
                if cookie and app.credentials.required:
                    extra["Set-Cookie"] = self._session_cookie()
                self._send(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", head=False, extra=extra)

            def _login(self) -> None:
                """The sign-in form: ``token`` for the cookie, then back to the page it came from."""
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if not 0 <= length <= _MAX_FORM or ctype != "application/x-www-form-urlencoded":
                    self._send(HTTPStatus.BAD_REQUEST, b'{"error": "expected a small urlencoded form"}',
                               "application/json", head=False)
                    return
                raw = self.rfile.read(length).decode("utf-8", "replace")
                form = urllib.parse.parse_qs(raw, keep_blank_values=True, max_num_fields=4)
                next_query = (form.get("next") or [""])[0]
                try:
                    view = parse_view(urllib.parse.parse_qs(next_query, max_num_fields=8), app.hours)
                except (BadRequestError, ValueError):
                    view = View(hours=app.hours)
                if app.credentials.check_token((form.get("token") or [""])[0]):
                    self._redirect(view.query(), cookie=True)
                else:
                    self._refuse(head=False, page=True, wrong=True, next_query=view.query())

            # -------------------------------------------------------------- routes

            def _answer(self, *, head: bool) -> None:
                path, _, query = self.path.partition("?")
                routes: dict[str, Callable[[dict[str, list[str]]], tuple[bytes, str]]] = {
                    "/": self._page, "/api/status": self._status, "/api/metrics": self._data,
                    "/api/alerts": self._alerts, "/metrics": self._metrics, "/healthz": self._health,
                }
                if path not in routes and path != "/api/events":
                    self._send(HTTPStatus.NOT_FOUND, b'{"error": "not found"}', "application/json", head=head)
                    return
                try:
                    if len(query) > _MAX_QUERY:
                        raise BadRequestError(f"query string longer than {_MAX_QUERY} bytes")
                    try:
                        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                                                       max_num_fields=8)
                    except ValueError as exc:
                        raise BadRequestError(f"malformed query string ({exc})") from None
                    if path != "/healthz" and not self._authenticated():
                        self._unauthenticated(path, params, head=head)
                        return
                    if path == "/api/events":
                        self._events(params, head=head)
                        return
                    if path == "/" and "token" in params:  # the token was for the cookie only
                        view = parse_view({k: v for k, v in params.items() if k != "token"}, app.hours)
                        self._redirect(view.query(), cookie=True)
                        return
                    body, ctype = routes[path](params)
                except BadRequestError as exc:
                    self._send(HTTPStatus.BAD_REQUEST, orjson.dumps({"error": str(exc)}), "application/json",
                               head=head)
                    return
                except Exception:  # noqa: BLE001 - a bad file must not kill the server; the log says why
                    _log.exception("error answering %s", path)
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "internal error, see the server log"}',
                               "application/json", head=head)
                    return
                self._send(HTTPStatus.OK, body, ctype, head=head)

            def _unauthenticated(self, path: str, params: dict[str, list[str]], *, head: bool) -> None:
                if path != "/":
                    self._refuse(head=head, page=False)
                    return
                rest = {k: v for k, v in params.items() if k != "token"}
                try:
                    next_query = parse_view(rest, app.hours).query()
                except BadRequestError:
                    next_query = ""
                token = params.get("token")
                if token and app.credentials.check_token(token[0]):
                    self._redirect(next_query, cookie=True)
                    return
                self._refuse(head=head, page=True, wrong=bool(token), next_query=next_query)

            def _page(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                view = parse_view(params, app.hours)
                query = view.query()
                html = render_dashboard(app.data(view), live_url=f"/api/metrics?{query}",
                                        events_url=f"/api/events?{query}")
                return html.encode(), "text/html; charset=utf-8"

            def _data(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                return orjson.dumps(app.data(parse_view(params, app.hours))), "application/json"

            def _events(self, params: dict[str, list[str]], *, head: bool) -> None:
                view = parse_view(params, app.hours)
                if head:
                    self._send(HTTPStatus.OK, b"", "text/event-stream", head=True)
                    return
                if not app._event_slots.acquire(blocking=False):
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, orjson.dumps(
                        {"error": f"{app.events_max} live pages are open already (server.events_max_clients)"}),
                        "application/json", head=False, extra={"Retry-After": "30"})
                    return
                try:
                    self.send_response(HTTPStatus.OK)
                    self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
                    self.send_header("X-Content-Type-Options", "nosniff")
                    self.send_header("Content-Security-Policy", "default-src 'none'")
                    self.end_headers()
                    self.connection.settimeout(30)  # a client that stops reading frees its thread
                    app.stream(self.wfile.write, self.connection, view)
                finally:
                    app._event_slots.release()
                    self.close_connection = True

            def _status(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _check_params(params, ())
                return orjson.dumps(app.status()), "application/json"

            def _alerts(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _check_params(params, ())
                return orjson.dumps(app.alerts()), "application/json"

            def _metrics(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _check_params(params, ())
                return app.metrics_text().encode(), CONTENT_TYPE

            def _health(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _check_params(params, ())
                return b"ok\n", "text/plain; charset=utf-8"

            def _send(self, status: HTTPStatus, body: bytes, ctype: str, *, head: bool,
                      extra: dict[str, str] | None = None, challenges: list[str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("X-Frame-Options", "DENY")
                extra = dict(extra or {})
                if not ctype.startswith("text/html"):
                    self.send_header("Content-Security-Policy", extra.pop("Content-Security-Policy",
                                                                          "default-src 'none'"))
                for value in challenges or ():
                    self.send_header("WWW-Authenticate", value)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                if _log.isEnabledFor(logging.DEBUG):  # the request line may carry ?token=: never logged
                    _log.debug("%s %s", self.address_string(), _SECRET_RE.sub(r"\1<hidden>", format % args))

        return Handler


def _gone(connection: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout``; true when the client closed its end (a browser tab closed)."""
    try:
        readable, _, _ = select.select([connection], [], [], timeout)
        if not readable:
            return False
        if connection.recv(1, socket.MSG_PEEK) == b"":
            return True
        connection.recv(4096)  # an EventSource sends nothing after its request: drop whatever came
        return False
    except (OSError, ValueError):
        return True
