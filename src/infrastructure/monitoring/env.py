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

__all__ = ["MONITORING_CONFIG", "MONITORING_ENABLED", "MONITORING_LOG_DIR", "env_bool", "env_str"]

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
