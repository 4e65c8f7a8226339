"""The ``clickhouse:`` section of the configuration: where the shipper sends the logs and how.

Validated like every other section when the file is loaded: a bad value raises
``ConfigError`` naming the key, the value and what would be valid. The password is
never in the file: ``password_env`` names the environment variable that holds it
(``MONITORING_CLICKHOUSE_PASSWORD`` unless set), and a URL with credentials in it is
refused, so no password can reach a log line or a printed URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .._validate import Validator, _bool, _number, _optional, _positive_int, _refuse, _section, _size, _str_list
from ..errors import ConfigError

__all__ = ["ClickHouseSettings", "clickhouse_section"]

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True, slots=True)
class ClickHouseSettings:
    """Shipping the log folder to a ClickHouse table (``monitoring ship``, or a job of ``monitoring run``)."""

    ship: bool = False
    """``monitoring run`` ships continuously as one of its scheduled jobs."""
    url: str = "http://127.0.0.1:8123"
    """ClickHouse's HTTP interface (one node; with ``cluster``, a node of that cluster)."""
    database: str = "default"
    table_prefix: str = "monitoring_"
    """The table is ``<prefix>records`` (and ``<prefix>records_local`` on each shard with ``cluster``)."""
    cluster: str | None = None
    """A ``remote_servers`` name: rows go through a ``Distributed`` table, sharded by host."""
    user: str | None = None
    password_env: str | None = None
    """The environment variable holding the password (default ``MONITORING_CLICKHOUSE_PASSWORD``)."""
    batch_rows: int = 10_000
    batch_bytes: int = 4 << 20
    batch_seconds: float = 5.0
    """What accumulates is sent at least this often; also the interval of the scheduled job."""
    ttl: bool = False
    """Let the table delete rows older than ``log_cleanup.retention_days`` (current servers only)."""
    modules: tuple[str, ...] = ()
    """Families to ship; empty: every family of the folder."""
    source_host: str | None = None
    """The name this folder's rows carry in ``source_host`` (default: the host name at the first run)."""
    timeout: float = 30.0
    max_backoff: float = 60.0
    """Longest wait between two attempts while the server cannot be reached."""

    @property
    def table(self) -> str:
        return f"{self.table_prefix}records"


def _identifier(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and _IDENTIFIER.match(value):
        return value
    raise ConfigError(key, value, "a name of letters, digits and '_' that does not start with a digit", source=src)


def _prefix(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and (value == "" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,80}", value)):
        return value
    raise ConfigError(key, value, "letters, digits and '_' (may be empty), not starting with a digit", source=src)


def _url(value: Any, key: str, src: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(key, value, "ClickHouse's HTTP interface as an http:// or https:// URL", source=src)
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        # the offending value is not repeated: it holds a secret
        raise ConfigError(key, "<a URL with credentials>", "a URL without user or password (set clickhouse.user and "
                          "the password in MONITORING_CLICKHOUSE_PASSWORD or clickhouse.password_env)", source=src)
    if parts.query or parts.fragment:
        raise ConfigError(key, value, "a URL without '?' or '#' (settings are chosen by the shipper)", source=src)
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ConfigError(key, value, "a URL with a port between 1 and 65535", source=src) from None
    return value.rstrip("/")


def _env_name(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        return value
    raise ConfigError(key, value, "the name of an environment variable (letters, digits, '_')", source=src)


def _text(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value
    raise ConfigError(key, value, "a non-empty one-line string", source=src)


_SCHEMA: Final[Mapping[str, Validator]] = {
    "ship": _bool, "url": _url, "database": _identifier, "table_prefix": _prefix,
    "cluster": _optional(_identifier), "user": _optional(_text), "password_env": _optional(_env_name),
    "batch_rows": _positive_int(1), "batch_bytes": _size(1024), "batch_seconds": _number(0.05),
    "ttl": _bool, "modules": _str_list, "source_host": _optional(_text), "timeout": _number(0.1),
    "max_backoff": _number(0.1),
}


def clickhouse_section(value: Any, key: str, src: str) -> ClickHouseSettings:
    if isinstance(value, Mapping) and "password" in value:  # refused before the generic check would quote it
        _refuse(ConfigError(f"{key}.password", "<hidden>", "no password in the file: set password_env to the name "
                            "of the environment variable that holds it (default MONITORING_CLICKHOUSE_PASSWORD)",
                            source=src))
        value = {k: v for k, v in value.items() if k != "password"}
    return ClickHouseSettings(**_section(value, key, src, _SCHEMA))
