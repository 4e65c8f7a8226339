"""``monitoring serve``: the dashboard, a JSON API and ``/metrics``, from one log folder.

=====================  ===========================================================
``GET /``              the dashboard (``?hours=N``, default 6), refreshing itself
``GET /api/status``    the folder: families, files, bytes, records, free disk, faults
``GET /api/metrics``   the dashboard's data (``?hours=N``)
``GET /api/alerts``    pending and firing alerts, and recent transitions
``GET /metrics``       Prometheus text exposition (see ``exporters/prometheus.py``)
``GET /healthz``       ``ok``
=====================  ===========================================================

It binds to 127.0.0.1 unless told otherwise: the figures describe an application and
should not be public by accident. Query strings are checked strictly — an unknown
parameter, a malformed or out-of-range value, or a query string over 256 bytes is a
400 with a JSON error — and every answer carries ``nosniff`` and a restrictive CSP.
Each request runs in its own thread (stdlib ``ThreadingHTTPServer``); ``/metrics``
answers from a copy at most ``cache_seconds`` old, so several Prometheus servers
scraping at once cost one refresh.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import orjson

from ..exporters.prometheus import CONTENT_TYPE, LiveMetrics
from .dashboard import render_dashboard
from .data import dashboard_data

__all__ = ["DashboardServer"]

_log = logging.getLogger("infrastructure.monitoring.web")

_MAX_QUERY: Final = 256
_MAX_HOURS: Final = 24 * 366


class BadRequestError(ValueError):
    pass


def _hours(params: dict[str, list[str]], default: float, allowed: tuple[str, ...] = ("hours",)) -> float:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown parameter {unknown[0]!r}; accepted: {', '.join(allowed) or 'none'}")
    values = params.get("hours")
    if not values:
        return default
    if len(values) > 1:
        raise BadRequestError("'hours' given more than once")
    try:
        hours = float(values[0])
    except ValueError:
        raise BadRequestError(f"'hours' must be a number, not {values[0][:32]!r}") from None
    if not (math.isfinite(hours) and 0 < hours <= _MAX_HOURS):
        raise BadRequestError(f"'hours' must be more than 0 and at most {_MAX_HOURS}")
    return hours


class DashboardServer:
    """One HTTP server over one log folder.

        server = DashboardServer(settings)            # port 0: any free port
        server.start()                                 # background thread; server.url
        server.stop()
    """

    def __init__(self, settings: Any, *, host: str | None = None, port: int | None = None,
                 hours: float = 6.0) -> None:
        self.settings = settings
        self.log_dir = Path(settings.logging.log_dir)
        self.hours = hours
        server_settings = settings.server
        self.metrics = LiveMetrics(self.log_dir, buckets=server_settings.buckets)
        self._cache_seconds = server_settings.cache_seconds
        self._metrics_text: tuple[float, str] | None = None
        self._metrics_lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host or server_settings.host, server_settings.port if port is None
                                          else port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self.metrics.warm_up()
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="monitoring-serve",
                                        daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.metrics.warm_up()
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------------ answers

    def metrics_text(self) -> str:
        with self._metrics_lock:
            cached = self._metrics_text
            now = time.monotonic()
            if cached is None or now - cached[0] >= self._cache_seconds:
                cached = self._metrics_text = (now, self.metrics.render())
            return cached[1]

    def status(self) -> dict[str, Any]:
        from dataclasses import asdict

        from ..query.storage import folder_status

        return {**asdict(folder_status(self.log_dir)), "pid": os.getpid(), "time": time.time()}

    def alerts(self) -> dict[str, Any]:
        from ..alerts.engine import AlertEvaluator

        evaluator = AlertEvaluator(self.settings.alerts, self.log_dir)
        return {"current": evaluator.current(), "recent": evaluator.recent(hours=24)}

    def data(self, hours: float) -> dict[str, Any]:
        return dashboard_data(self.log_dir, hours=hours, settings=self.settings)

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
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "only GET and HEAD"}', "application/json",
                           head=False, extra={"Allow": "GET, HEAD"})

            do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

            def _answer(self, *, head: bool) -> None:
                path, _, query = self.path.partition("?")
                routes: dict[str, Callable[[dict[str, list[str]]], tuple[bytes, str]]] = {
                    "/": self._page, "/api/status": self._status, "/api/metrics": self._data,
                    "/api/alerts": self._alerts, "/metrics": self._metrics, "/healthz": self._health,
                }
                route = routes.get(path)
                if route is None:
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
                    body, ctype = route(params)
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

            def _page(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                hours = _hours(params, app.hours)
                html = render_dashboard(app.data(hours), live_url=f"/api/metrics?hours={hours:g}")
                return html.encode(), "text/html; charset=utf-8"

            def _data(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                return orjson.dumps(app.data(_hours(params, app.hours))), "application/json"

            def _status(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _hours(params, 0, allowed=())
                return orjson.dumps(app.status()), "application/json"

            def _alerts(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _hours(params, 0, allowed=())
                return orjson.dumps(app.alerts()), "application/json"

            def _metrics(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _hours(params, 0, allowed=())
                return app.metrics_text().encode(), CONTENT_TYPE

            def _health(self, params: dict[str, list[str]]) -> tuple[bytes, str]:
                _hours(params, 0, allowed=())
                return b"ok\n", "text/plain; charset=utf-8"

            def _send(self, status: HTTPStatus, body: bytes, ctype: str, *, head: bool,
                      extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                if not ctype.startswith("text/html"):
                    self.send_header("Content-Security-Policy", "default-src 'none'")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                _log.debug("%s " + format, self.address_string(), *args)

        return Handler
