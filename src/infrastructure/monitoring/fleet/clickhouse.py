"""A small client of ClickHouse's HTTP interface: one kept-alive connection, queries and inserts.

Credentials travel in the ``X-ClickHouse-User`` / ``X-ClickHouse-Key`` headers, never in
a URL, and the client's ``repr`` and error messages never contain the password. Errors
come in two kinds: ``ClickHouseUnavailable`` (no answer: refused, reset, timed out, or the
server shutting down) and ``ClickHouseError`` (the server answered with an error and its
code). Standard library only (``http.client``).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from ..errors import MonitoringError

__all__ = ["ClickHouseClient", "ClickHouseError", "ClickHouseUnavailable"]

_CODE_RE: Final = re.compile(rb"Code:\s*(\d+)")
_SHUTTING_DOWN: Final = frozenset({210, 209, 394})
"""NETWORK_ERROR, SOCKET_TIMEOUT, QUERY_WAS_CANCELLED: the server went away mid-query."""
_MAX_MESSAGE: Final = 600
_IDLE_REUSE: Final = 1.0
"""A kept-alive connection idle longer than this is replaced before a request: the server may
have closed it (ClickHouse's ``keep_alive_timeout`` is 3 s by default), and an insert is
never sent twice on its own."""


class ClickHouseError(MonitoringError):
    """The server refused a query; ``code`` is ClickHouse's error code (0 when unknown)."""

    def __init__(self, message: str, code: int = 0, status: int = 0) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class ClickHouseUnavailable(ClickHouseError):  # noqa: N818 - named for what the caller learns
    """No answer from the server (refused, reset, timed out): whether a write landed is unknown,
    unless ``sent`` is false (no connection could be made: nothing reached the server)."""

    def __init__(self, message: str, code: int = 0, status: int = 0, *, sent: bool = True) -> None:
        super().__init__(message, code, status)
        self.sent = sent


class ClickHouseClient:
    """``client.query("SELECT 1")`` -> ``b"1\\n"``; ``client.insert(sql, body)`` sends rows.

    ``url`` is the HTTP interface (``http://host:8123``, optionally with a path prefix for
    a proxy); it must not carry credentials (``settings.py`` refuses them at load time).
    """

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the ClickHouse URL must not carry credentials; pass user= and password=")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (8443 if self._https else 8123)
        self._path = parts.path.rstrip("/") + "/"
        self.user = user
        self._password = password
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0

    def __repr__(self) -> str:
        return f"ClickHouseClient({self.url!r}, user={self.user!r})"

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._used > _IDLE_REUSE:
            self.close()
        if self._conn is None:
            self._conn = self._new_connection()
        return self._conn

    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _error(self, status: int, data: bytes) -> ClickHouseError:
        """The error an answer other than 200 means: ``ClickHouseUnavailable`` when the server (or
        the proxy before it) is going away or cannot reach it, so callers retry rather than give up."""
        found = _CODE_RE.search(data)
        code = int(found.group(1)) if found else 0
        message = data.decode("utf-8", "replace").strip()
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        error = ClickHouseUnavailable if code in _SHUTTING_DOWN or status in (502, 503, 504) else ClickHouseError
        return error(f"{self.url} answered {status}: {message}", code, status)

    def _headers(self) -> dict[str, str]:
        headers = {"Connection": "keep-alive"}
        if self.user is not None:
            headers["X-ClickHouse-User"] = self.user
        if self._password is not None:
            headers["X-ClickHouse-Key"] = self._password
        return headers

    def request(self, body: bytes, *, params: Mapping[str, Any] | None = None, retry: bool = False) -> bytes:
        """POST ``body`` with URL ``params``; the answer's body, or an error raised. ``retry``
        (for reads only) sends it once more on a fresh connection when the kept-alive one was closed."""
        target = self._path + ("?" + urlencode(dict(params)) if params else "")
        for attempt in (1, 2):
            conn = self._connection()
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as exc:
                    self.close()
                    raise ClickHouseUnavailable(f"{self.url} unreachable: {_reason(exc)}", sent=False) from None
            try:
                conn.request("POST", target, body=body, headers=self._headers())
                response = conn.getresponse()
                data = response.read()
                self._used = time.monotonic()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 1 and retry:
                    continue  # a kept-alive connection the server had closed: one fresh try
                raise ClickHouseUnavailable(f"{self.url} closed the connection: {_reason(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ClickHouseUnavailable(f"{self.url} unreachable: {_reason(exc)}") from None
            if response.status == 200:
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return data
            self.close()
            raise self._error(response.status, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def query(self, sql: str, *, settings: Mapping[str, Any] | None = None, query_id: str | None = None) -> bytes:
        """Run ``sql`` (the body of the request); ``settings`` go in the URL."""
        params = dict(settings or {})
        if query_id is not None:
            params["query_id"] = query_id
        return self.request(sql.encode(), params=params, retry=True)

    def rows(self, sql: str, *, settings: Mapping[str, Any] | None = None) -> list[list[str]]:
        """The answer of ``sql`` as rows of TabSeparated text fields (``FORMAT`` is added)."""
        text = self.query(f"{sql}\nFORMAT TabSeparated", settings=settings).decode()
        return [line.split("\t") for line in text.splitlines()]

    def insert(self, statement: str, body: bytes, *, settings: Mapping[str, Any] | None = None,
               query_id: str | None = None) -> None:
        """``statement`` (``INSERT INTO t FORMAT JSONEachRow``) in the URL, the rows as the body."""
        params = {"query": statement, **dict(settings or {})}
        if query_id is not None:
            params["query_id"] = query_id
        self.request(body, params=params)

    def lines(self, sql: str, *, settings: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """The answer of ``sql`` line by line as it arrives (listings too large to hold), on a
        connection of its own, closed when the iteration ends or is abandoned."""
        params = dict(settings or {})
        target = self._path + ("?" + urlencode(params) if params else "")
        conn = self._new_connection()
        try:
            try:
                conn.request("POST", target, body=sql.encode(), headers=self._headers())
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise ClickHouseUnavailable(f"{self.url} unreachable: {_reason(exc)}") from None
            if response.status != 200:
                raise self._error(response.status, response.read())
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise ClickHouseUnavailable(f"{self.url} closed the connection: {_reason(exc)}") from None
                if not line:
                    return
                if line.startswith(b"Code: ") and b"DB::Exception" in line:  # failed after the answer began
                    raise ClickHouseError(f"{self.url}: {line.decode('utf-8', 'replace').strip()[:_MAX_MESSAGE]}",
                                          int(m.group(1)) if (m := _CODE_RE.search(line)) else 0, 200)
                yield line.rstrip(b"\n")
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def version(self) -> str:
        return self.query("SELECT version()").decode().strip()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
