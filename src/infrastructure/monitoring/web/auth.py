"""Who may read the dashboard: a bearer token, HTTP basic credentials, or the page's cookie.

The secrets come from the environment (``MONITORING_SERVER_TOKEN``, or the variables the
``server`` section names), never from the YAML file, so the file can be committed.
Every comparison goes through ``hmac.compare_digest``: the time an answer takes says
nothing about how much of a guess was right.

A browser cannot add an ``Authorization`` header to a link or to ``EventSource``, so a
token given once (``/?token=…`` or the sign-in form) is exchanged for a cookie that is
``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends
it). The cookie holds an HMAC of the token, not the token: it stops working when the
token changes, and a copy of it does not reveal the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError

__all__ = ["COOKIE_NAME", "Credentials", "is_loopback", "resolve_credentials"]

COOKIE_NAME: Final = "monitoring_session"
COOKIE_MAX_AGE: Final = 7 * 86400
MIN_SECRET: Final = 16
_REALM: Final = "monitoring"
_COOKIE_PURPOSE: Final = b"monitoring dashboard session v1"
_NEW_TOKEN: Final = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - advice


def is_loopback(host: str) -> bool:
    """Only ``localhost`` and literal loopback addresses count: a name could resolve anywhere."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request must present. Both ``None``: the server is open (loopback only)."""

    token: str | None = None
    basic: tuple[str, str] | None = None
    """(user name, password)."""

    @property
    def required(self) -> bool:
        return self.token is not None or self.basic is not None

    def check_authorization(self, header: str | None) -> bool:
        """``Authorization: Bearer <token>`` or ``Basic <base64 user:password>``."""
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token is not None:
            return _same(value, self.token)
        if scheme.lower() == "basic" and self.basic is not None:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user_ok = _same(user, self.basic[0])
            password_ok = _same(password, self.basic[1])
            return bool(sep) and user_ok & password_ok  # both compared, whichever is wrong
        return False

    def check_token(self, given: str) -> bool:
        return self.token is not None and _same(given, self.token)

    def cookie_value(self) -> str:
        secret = self.token if self.token is not None else ":".join(self.basic or ("", ""))
        return hmac.new(secret.encode(), _COOKIE_PURPOSE, hashlib.sha256).hexdigest()

    def check_cookie(self, header: str | None) -> bool:
        if not header or not self.required:
            return False
        expected = self.cookie_value()
        found = False
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE_NAME:
                found |= _same(value, expected)
        return found

    def challenges(self) -> list[str]:
        """``WWW-Authenticate`` values: one per accepted scheme (basic first, so a browser asks)."""
        out = []
        if self.basic is not None:
            out.append(f'Basic realm="{_REALM}", charset="UTF-8"')
        if self.token is not None:
            out.append(f'Bearer realm="{_REALM}"')
        return out


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def resolve_credentials(server: Any, host: str, environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials the ``server`` settings point at, checked for binding to ``host``.

    Raises ``ConfigError`` when ``host`` is not loopback and no credentials are set, or
    when a secret is too short to resist guessing."""
    env = os.environ if environ is None else environ
    token = env.get(server.auth_token_env) or None
    if token is not None:
        token = token.strip()
        _check_secret(token, f"environment variable {server.auth_token_env}")
    basic = None
    if server.basic_auth is not None:
        password = env.get(server.basic_auth.password_env) or None
        if password is None:
            raise ConfigError("server.basic_auth.password_env", server.basic_auth.password_env,
                              "the name of a set environment variable holding the password (it is unset or empty)")
        _check_secret(password, f"environment variable {server.basic_auth.password_env}")
        basic = (server.basic_auth.username, password)
    credentials = Credentials(token, basic)
    if not credentials.required and not is_loopback(host):
        raise ConfigError(
            "server.host", host,
            f"a loopback address (127.0.0.1, ::1, localhost), because nobody has to sign in: serving to a "
            f"network needs credentials. Set {server.auth_token_env} to a random token ({_NEW_TOKEN}) and give "
            "it to the team, or configure server.basic_auth {username: ..., password_env: VARIABLE}; "
            "or put the server behind a reverse proxy on 127.0.0.1")
    return credentials


def _check_secret(secret: str, where: str) -> None:
    if len(secret) < MIN_SECRET:
        raise ConfigError(where, "<hidden>", f"a secret of at least {MIN_SECRET} characters "
                          f"(this one has {len(secret)}); make one with {_NEW_TOKEN}")
