"""Every environment variable the package reads, in one place.

Precedence, highest first: an explicit argument > the environment > the YAML file >
the built-in default. Bad values in the environment are reported with a warning and
ignored at run time (telemetry must not stop an application from starting);
``monitoring validate-config`` turns the same warnings into a failing exit status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from ._parsers import parse_bool

__all__ = ["MONITORING_CLICKHOUSE_PASSWORD", "MONITORING_CLICKHOUSE_USER", "MONITORING_CONFIG", "MONITORING_CONSOLE",
           "MONITORING_ENABLED", "MONITORING_ENVIRONMENT", "MONITORING_LOG_DIR", "MONITORING_SERVER_TOKEN",
           "MONITORING_SERVICE", "env_bool", "env_str"]

_logger = logging.getLogger(__name__)

MONITORING_CONFIG = "MONITORING_CONFIG"
"""Path of the YAML configuration. Default: ``configs/monitoring_logging.yaml`` in the
working directory when that file exists, else the built-in defaults. A path that does
not exist is a configuration error."""

MONITORING_LOG_DIR = "MONITORING_LOG_DIR"
"""Folder of the log files, overriding ``logging.log_dir``. Default: ``logs``."""

MONITORING_ENABLED = "MONITORING_ENABLED"
"""``0``/``false``/``no``/``off`` turns every recording call into a no-op, overriding
``enabled`` in the YAML. Default: enabled."""

MONITORING_CONSOLE = "MONITORING_CONSOLE"
"""``1``/``true``/``yes``/``on``: also print every record, and each trace as an indented tree when
its root span ends, to stderr, overriding ``logging.console``. For development: the files get
the same records either way. Default: off (and then it costs nothing)."""

MONITORING_SERVICE = "MONITORING_SERVICE"
"""The application's name, overriding ``service_name``: written as ``service_name`` on every
record (from the writer's fixed tail, so it costs nothing per record), exported as a Prometheus
label and as the OTLP resource attribute ``service.name``, and shown by alerts. Default: unset
(no ``service_name`` field; OTLP falls back to ``otlp.service_name``)."""

MONITORING_ENVIRONMENT = "MONITORING_ENVIRONMENT"
"""The deployment's name (``production``, ``staging``), overriding ``environment``: written as
``environment`` on every record, exported as a Prometheus label and as the OTLP resource
attribute ``deployment.environment.name``, and shown by alerts. Default: unset."""

MONITORING_SERVER_TOKEN = "MONITORING_SERVER_TOKEN"  # noqa: S105 - the name of the variable
"""Bearer token of ``monitoring serve`` (at least 16 characters). When set, every request
except ``/healthz`` must carry it (``Authorization: Bearer …``, or the cookie the page sets
after ``/?token=…``); ``server.auth_token_env`` names another variable instead. Without a
token or ``server.basic_auth``, the server refuses to bind to anything but loopback.
Default: unset."""

MONITORING_CLICKHOUSE_USER = "MONITORING_CLICKHOUSE_USER"
"""User of the ClickHouse shipper (``monitoring ship``, ``clickhouse.ship``), overriding
``clickhouse.user``. Default: ClickHouse's ``default`` user."""

MONITORING_CLICKHOUSE_PASSWORD = "MONITORING_CLICKHOUSE_PASSWORD"  # noqa: S105 - the name of the variable
"""Password of that user; ``clickhouse.password_env`` names another variable instead. It is
sent in a request header, never in a URL, and never printed or logged. Default: none."""


def env_str(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or ``None`` when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(name)
    return value if value else None


def env_bool(name: str, environ: Mapping[str, str] | None = None, problems: list[str] | None = None) -> bool | None:
    """The variable as a boolean; ``None`` when unset or unparsable (with a warning)."""
    value = env_str(name, environ)
    if value is None:
        return None
    try:
        return parse_bool(value)
    except ValueError as exc:
        message = f"ignoring environment variable {name}={value!r}: {exc}"
        if problems is not None:
            problems.append(message)
        else:
            _logger.warning(message)
        return None
