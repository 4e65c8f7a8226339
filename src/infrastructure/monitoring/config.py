"""Load ``configs/monitoring_logging.yaml``, apply the environment, validate, freeze.

Configuration is the one place where the package fails loudly: an unknown key, a
value of the wrong type or out of range raises ``ConfigError`` naming the key, the
value and what would be valid, at load time, before any record is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from . import env
from ._validate import (
    Validator,
    _bool,
    _number,
    _optional,
    _positive_int,
    _seconds,
    _section,
    _share,
    _size,
    _str_list,
    _text,
)
from .errors import ConfigError
from .fleet.settings import ClickHouseSettings, clickhouse_section
from .ops_config import (
    AlertSettings,
    AnomalySettings,
    OtlpSettings,
    ServerSettings,
    SloTarget,
    alerts_section,
    anomalies_section,
    otlp_section,
    resolve_references,
    server_section,
    slos_section,
)
from .schema import FIELD_ENVIRONMENT, FIELD_SERVICE, MODULE_NAME_RE, default_file_name

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BUILTIN_MODULES",
    "CleanupSettings",
    "FreeSpaceFloor",
    "INSTRUMENTABLE",
    "InstrumentationSettings",
    "LoggingSettings",
    "ModelPrice",
    "ModuleSettings",
    "MonitoringSettings",
    "PricingSettings",
    "QuerySettings",
    "RotationSettings",
    "SessionSettings",
    "SystemMetricsSettings",
    "TracingSettings",
    "load_settings",
    "resolve_log_patterns",
    "settings_from_mapping",
]

DEFAULT_CONFIG_PATH = Path("configs") / "monitoring_logging.yaml"
BUILTIN_MODULES = ("llm", "checkpoint", "tool", "task", "system")
ROTATION_WHEN = ("S", "M", "H", "D", "midnight")
DEFAULT_REDACT_KEYS = (
    "api_key", "apikey", "authorization", "password", "passwd", "token", "secret",
    "access_token", "refresh_token", "client_secret", "private_key", "cookie", "set_cookie",
)


@dataclass(frozen=True, slots=True)
class RotationSettings:
    """Size rotation when ``max_bytes > 0``; time rotation when ``when`` is set; both may be on."""

    max_bytes: int = 52_428_800
    backup_count: int = 10
    when: str | None = None
    interval: int = 1
    utc: bool = False


@dataclass(frozen=True, slots=True)
class ModuleSettings:
    file: str
    enabled: bool = True
    sample_rate: float = 1.0
    """Share of the family's records kept (deterministically; failures always kept): ``logger_writer.Sampler``."""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    log_dir: Path = Path("logs")
    rotation: RotationSettings = field(default_factory=RotationSettings)
    modules: Mapping[str, ModuleSettings] = field(
        default_factory=lambda: MappingProxyType({m: ModuleSettings(default_file_name(m)) for m in BUILTIN_MODULES})
    )
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    redact_values: bool = True
    strict: bool = False
    max_line_bytes: int = 16_384
    include_pid: bool = True
    include_host: bool = True
    file_mode: int = 0o640
    fsync: bool = False
    reopen_check_interval: float = 1.0
    fault_report_interval: float = 60.0
    console: bool = False
    """Also print every record, and each trace as a tree, to stderr (for development; ``MONITORING_CONSOLE``)."""

    def module(self, name: str) -> ModuleSettings:
        """The settings of ``name``; a module nobody configured gets ``<name>_metrics.log``."""
        found = self.modules.get(name)
        if found is not None:
            return found
        if not MODULE_NAME_RE.match(name):
            raise ConfigError("module", name, "letters, digits, '_', '.', '-' (it becomes part of a file name)")
        return ModuleSettings(default_file_name(name))


@dataclass(frozen=True, slots=True)
class FreeSpaceFloor:
    """``min_free_space``: either a number of bytes or a share of the filesystem."""

    bytes: int | None = None
    percent: float | None = None

    def required(self, total: int) -> int:
        """Bytes that must stay free on a filesystem of ``total`` bytes."""
        if self.percent is not None:
            return int(total * self.percent / 100)
        return self.bytes or 0

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else f"{self.bytes} bytes"


@dataclass(frozen=True, slots=True)
class CleanupSettings:
    """Retention. The defaults are age-only, as the original design: files older than
    ``retention_days`` go; size budget, disk floor and compression are opt-in."""

    enabled: bool = True
    retention_days: float = 30
    log_patterns: tuple[str, ...] = ("logs/*.log", "logs/*.log.*")
    dry_run: bool = False
    check_interval_hours: float = 24
    max_total_size: int | None = None
    """Budget for everything the patterns match: oldest rotated files go first until under it."""
    compress_after_days: float | None = None
    """Rotated files older than this are gzipped in place (``.N`` -> ``.N.gz``)."""
    min_free_space: FreeSpaceFloor | None = None
    """Below this much free disk, the oldest rotated files go first."""
    run_on_start: bool = True
    """The scheduled service runs a first cleanup shortly after it starts."""


@dataclass(frozen=True, slots=True)
class QuerySettings:
    """Columnar copies of settled log files (``query/columnar.py``)."""

    columnar_cache: bool = True
    """Build Parquet copies of rotated backups and answer long-window queries from them."""
    build_interval_seconds: float = 60.0
    """How often the scheduled service looks for backups without a copy."""
    build_memory: int = 64 * 1024 * 1024
    """DuckDB's memory limit while a copy is built (one file at a time, one thread)."""
    build_max_seconds: float = 300.0
    """A build run stops starting new files after this long (the rest waits for the next run)."""
    build_in_applications: bool = False
    """Also build in the scheduled service an application starts (``monitoring run`` always builds)."""


@dataclass(frozen=True, slots=True)
class SystemMetricsSettings:
    """The scheduled psutil snapshot into ``system_metrics.log`` (off by default)."""

    enabled: bool = False
    interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class TracingSettings:
    sample_rate: float = 1.0
    """Share of traces written, decided once at each trace's root."""


INSTRUMENTABLE = ("anthropic", "openai")
"""The SDKs whose clients ``instrument()`` and ``instrumentation.auto`` can patch."""


@dataclass(frozen=True, slots=True)
class InstrumentationSettings:
    auto: tuple[str, ...] = ()
    """SDKs patched when the process-wide factory starts, as ``instrument(*auto)`` does (none by default)."""


DEFAULT_SESSION_VARIABLES = ("CI", "VIRTUAL_ENV", "CONDA_DEFAULT_ENV", "LANG", "TZ")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    environment_variables: tuple[str, ...] = DEFAULT_SESSION_VARIABLES
    """The environment variables a ``session_start`` record copies (names, or prefixes such as
    ``GITHUB_*``), through the redactor; never the whole environment."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices per million tokens, in the table's currency."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class PricingSettings:
    """The price table that fills ``cost`` on LLM records when the caller gives none.

    A model matches its own entry, else the longest entry its name starts with
    (``gpt-4o-2024-08-06`` -> ``gpt-4o``), ignoring case.
    """

    version: str | None = None
    currency: str = "USD"
    models: Mapping[str, ModelPrice] = field(default_factory=lambda: MappingProxyType({}))

    def price_of(self, model: str) -> ModelPrice | None:
        name = model.lower()
        found = self.models.get(name)
        if found is not None:
            return found
        best = ""
        for key in self.models:
            if name.startswith(key) and len(key) > len(best):
                best = key
        return self.models[best] if best else None


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    """Everything the package needs, validated and immutable."""

    enabled: bool = True
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    log_cleanup: CleanupSettings = field(default_factory=CleanupSettings)
    system_metrics: SystemMetricsSettings = field(default_factory=SystemMetricsSettings)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    instrumentation: InstrumentationSettings = field(default_factory=InstrumentationSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    slos: tuple[SloTarget, ...] = ()
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    service_name: str | None = None
    """Global label: the application's name on every record, export and alert (``MONITORING_SERVICE``)."""
    environment: str | None = None
    """Global label: the deployment's name on every record, export and alert (``MONITORING_ENVIRONMENT``)."""
    source: str = "<defaults>"
    """Where these settings came from (a path or ``<defaults>``), for messages."""
    log_dir_origin: str = "the default (logs)"
    """What chose ``logging.log_dir`` (the environment, a config file, the default), for messages."""

    @property
    def global_labels(self) -> dict[str, str]:
        """``service_name`` and ``environment`` when set: the writer appends them to every record."""
        labels = {FIELD_SERVICE: self.service_name, FIELD_ENVIRONMENT: self.environment}
        return {k: v for k, v in labels.items() if v}


# --------------------------------------------------------------------------- validation



def _file_mode(value: Any, key: str, src: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise ConfigError(key, value, "an octal mode such as '0640' or 0o640", source=src) from None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777 and value & 0o600 == 0o600:
        return value
    raise ConfigError(key, value, "an octal mode between 0600 and 0777 that lets the owner read and write", source=src)


def _free_space(value: Any, key: str, src: str) -> FreeSpaceFloor:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            percent = -1.0
        if 0 < percent < 100:
            return FreeSpaceFloor(percent=percent)
        raise ConfigError(key, value, "a percentage between 0% and 100% (exclusive), or a size", source=src)
    return FreeSpaceFloor(bytes=_size(1)(value, key, src))


def _when(value: Any, key: str, src: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        for option in ROTATION_WHEN:
            if value.lower() == option.lower():
                return option
    raise ConfigError(key, value, "null or one of " + ", ".join(repr(w) for w in ROTATION_WHEN), source=src)


def _log_dir(value: Any, key: str, src: str) -> Path:
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise ConfigError(key, value, "a folder path", source=src)


def _file_name(value: Any, key: str, src: str) -> str:
    if (isinstance(value, str) and "/" not in value and "\\" not in value and not value.startswith(".")
            and value.endswith(".log") and len(value) > 4):
        return value  # readers find a family by its live file's '.log' ending
    raise ConfigError(key, value, "a plain file name ending in '.log' inside log_dir (no '/', no leading '.')",
                      source=src)


def _line_cap(value: Any, key: str, src: str) -> int:
    size = _size(1024)(value, key, src)
    if size > 1024 * 1024:
        raise ConfigError(key, value, "a size between 1 KiB and 1 MiB", source=src)
    return int(size)


_ROTATION_SCHEMA: Mapping[str, Validator] = {
    "max_bytes": _size(0),
    "backup_count": _positive_int(1),
    "when": _when,
    "interval": _positive_int(1),
    "utc": _bool,
}
def _sample_rate(value: Any, key: str, src: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
        return float(value)
    raise ConfigError(key, value, "a share of records to keep, greater than 0 and at most 1 (0.1 keeps one in ten)",
                      source=src)


_MODULE_SCHEMA: Mapping[str, Validator] = {"file": _file_name, "enabled": _bool, "sample_rate": _sample_rate}
def _patterns(value: Any, key: str, src: str) -> tuple[str, ...]:
    patterns = _str_list(value, key, src)
    for pattern in patterns:
        parts = pattern.replace("\\", "/").split("/")
        if ".." in parts:
            raise ConfigError(key, pattern, _PATTERN_HELP, source=src)
    return patterns


_CLEANUP_SCHEMA: Mapping[str, Validator] = {
    "enabled": _bool,
    "retention_days": _number(0, strict_min=True),
    "log_patterns": _patterns,
    "dry_run": _bool,
    "check_interval_hours": _number(0, strict_min=True),
    "max_total_size": _optional(_size(1)),
    "compress_after_days": _optional(_number(0)),
    "min_free_space": _optional(_free_space),
    "run_on_start": _bool,
}
_SYSTEM_SCHEMA: Mapping[str, Validator] = {
    "enabled": _bool,
    "interval_seconds": _number(0.05),
}


def _rotation(value: Any, key: str, src: str) -> RotationSettings:
    return RotationSettings(**_section(value, key, src, _ROTATION_SCHEMA))


def _modules(value: Any, key: str, src: str) -> Mapping[str, ModuleSettings]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a mapping of module name -> {file, enabled}", source=src)
    modules = {m: ModuleSettings(default_file_name(m)) for m in BUILTIN_MODULES}
    for name, spec in value.items():
        path = f"{key}.{name}"
        if not isinstance(name, str) or not MODULE_NAME_RE.match(name):
            raise ConfigError(path, name, "a module name of letters, digits, '_', '.', '-'", source=src)
        fields = _section(spec, path, src, _MODULE_SCHEMA)
        modules[name] = ModuleSettings(**{"file": default_file_name(name), **fields})
    return MappingProxyType(modules)


_LOGGING_SCHEMA: Mapping[str, Validator] = {
    "log_dir": _log_dir,
    "rotation": _rotation,
    "modules": _modules,
    "redact_keys": lambda v, k, s: tuple(x.lower() for x in _str_list(v, k, s)),
    "redact_values": _bool,
    "strict": _bool,
    "max_line_bytes": _line_cap,
    "include_pid": _bool,
    "include_host": _bool,
    "file_mode": _file_mode,
    "fsync": _bool,
    "reopen_check_interval": _seconds,
    "fault_report_interval": _seconds,
    "console": _bool,
}


def _logging(value: Any, key: str, src: str) -> LoggingSettings:
    return LoggingSettings(**_section(value, key, src, _LOGGING_SCHEMA))


def _cleanup(value: Any, key: str, src: str) -> CleanupSettings:
    return CleanupSettings(**_section(value, key, src, _CLEANUP_SCHEMA))


def _price(value: Any, key: str, src: str) -> ModelPrice:
    fields = _section(value, key, src, {"input": _number(0), "output": _number(0),
                                        "cached_input": _optional(_number(0))})
    for needed in ("input", "output"):
        if needed not in fields:
            raise ConfigError(f"{key}.{needed}", None, "a price per million tokens (a number >= 0)", source=src)
    return ModelPrice(**fields)


def _models(value: Any, key: str, src: str) -> Mapping[str, ModelPrice]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a mapping of model name -> {input, output, cached_input}", source=src)
    out = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(key, name, "model names as non-empty strings", source=src)
        out[name.strip().lower()] = _price(spec, f"{key}.{name}", src)
    return MappingProxyType(out)


def _pricing(value: Any, key: str, src: str) -> PricingSettings:
    return PricingSettings(**_section(value, key, src, {"version": _text, "currency": _text, "models": _models}))


def _tracing(value: Any, key: str, src: str) -> TracingSettings:
    return TracingSettings(**_section(value, key, src, {"sample_rate": _share}))


def _sdk_names(value: Any, key: str, src: str) -> tuple[str, ...]:
    valid = "a list of SDK names among " + ", ".join(repr(name) for name in INSTRUMENTABLE)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, valid, source=src)
    for name in value:
        if name not in INSTRUMENTABLE:
            raise ConfigError(key, name, valid, source=src)
    return tuple(dict.fromkeys(value))


def _instrumentation(value: Any, key: str, src: str) -> InstrumentationSettings:
    return InstrumentationSettings(**_section(value, key, src, {"auto": _sdk_names}))


_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")


def _variable_names(value: Any, key: str, src: str) -> tuple[str, ...]:
    valid = ("a list of environment variable names, or prefixes ending in '*' such as 'GITHUB_*' "
             "(never '*' alone: the environment holds secrets)")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, valid, source=src)
    for name in value:
        if not isinstance(name, str) or not _VARIABLE_RE.match(name):
            raise ConfigError(key, name, valid, source=src)
    return tuple(dict.fromkeys(value))


def _sessions(value: Any, key: str, src: str) -> SessionSettings:
    return SessionSettings(**_section(value, key, src, {"environment_variables": _variable_names}))


_QUERY_SCHEMA: Mapping[str, Validator] = {
    "columnar_cache": _bool,
    "build_interval_seconds": _number(1.0),
    "build_memory": _size(16 * 1024 * 1024),
    "build_max_seconds": _number(1.0),
    "build_in_applications": _bool,
}


def _query(value: Any, key: str, src: str) -> QuerySettings:
    return QuerySettings(**_section(value, key, src, _QUERY_SCHEMA))


def _global_label(value: Any, key: str, src: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value.strip()) <= 128 and value.isprintable():
        return value.strip()
    raise ConfigError(key, value, "a short printable name such as 'checkout-api' or 'production' (at most 128 "
                      "characters), or null", source=src)


def _system(value: Any, key: str, src: str) -> SystemMetricsSettings:
    return SystemMetricsSettings(**_section(value, key, src, _SYSTEM_SCHEMA))


_TOP_SCHEMA: Mapping[str, Validator] = {
    "enabled": _bool,
    "logging": _logging,
    "log_cleanup": _cleanup,
    "system_metrics": _system,
    "pricing": _pricing,
    "tracing": _tracing,
    "instrumentation": _instrumentation,
    "sessions": _sessions,
    "alerts": alerts_section,
    "slos": slos_section,
    "anomalies": anomalies_section,
    "server": server_section,
    "otlp": otlp_section,
    "clickhouse": clickhouse_section,
    "query": _query,
    "service_name": _global_label,
    "environment": _global_label,
}


# --------------------------------------------------------------------------- cleanup patterns

_PATTERN_KEY = "log_cleanup.log_patterns"
_PATTERN_HELP = (
    "a glob inside the log folder, such as 'logs/*.log' or '*.log.*' ('logs/' stands for the log folder "
    "wherever it is; '..' and paths outside it are refused)"
)
_DEFAULT_FOLDER_NAME = "logs"


def resolve_log_patterns(
    patterns: tuple[str, ...], log_dir: Path, *, cwd: str | None = None
) -> tuple[tuple[str, ...], ...]:
    """Each pattern as glob components relative to ``log_dir``; a ``ConfigError`` names any
    pattern that could reach outside it.

    A pattern may be written relative to the working directory (``logs/*.log`` when the
    folder is ``./logs``), as an absolute path inside the folder, or relative to the folder
    itself (``*.log``). A leading ``logs/`` or the folder's own name also means the folder,
    so the design's ``logs/*.log`` keeps working when ``MONITORING_LOG_DIR`` moves it.
    """
    root = Path(os.path.abspath(log_dir)).parts
    here = Path(os.path.abspath(cwd or os.getcwd())).parts
    resolved = []
    for pattern in patterns:
        text = pattern.replace("\\", "/")
        parts = tuple(p for p in text.split("/") if p not in ("", "."))
        if not parts or ".." in parts:
            raise ConfigError(_PATTERN_KEY, pattern, _PATTERN_HELP)
        if text.startswith("/"):
            full = ("/", *parts)
            if full[: len(root)] != root or len(full) == len(root):
                raise ConfigError(_PATTERN_KEY, pattern, _PATTERN_HELP)
            resolved.append(full[len(root):])
            continue
        full = (*here, *parts)
        if full[: len(root)] == root and len(full) > len(root):
            resolved.append(full[len(root):])
        elif len(parts) == 1:
            resolved.append(parts)
        elif parts[0] in (_DEFAULT_FOLDER_NAME, root[-1]):
            resolved.append(parts[1:])
        else:
            raise ConfigError(_PATTERN_KEY, pattern, _PATTERN_HELP)
    return tuple(resolved)


def settings_from_mapping(raw: Mapping[str, Any] | None, *, source: str = "<mapping>",
                          references: bool = True) -> MonitoringSettings:
    """Validate a parsed YAML document (or a dict written in code) into settings.

    ``references=False`` skips the checks across sections (an alert rule naming an SLO),
    for a partial mapping that is merged into other settings before they are checked."""
    values = _section(raw, "", source, _TOP_SCHEMA)
    settings = MonitoringSettings(**values, source=source)
    if references:
        settings = _resolved(settings)
    return settings


def _resolved(settings: MonitoringSettings) -> MonitoringSettings:
    alerts = resolve_references(settings.alerts, settings.slos, settings.anomalies, settings.source)
    return replace(settings, alerts=alerts)


def _read_yaml(path: Path, label: str) -> Mapping[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(label, str(path), "the path of an existing YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config file", str(path), f"a readable UTF-8 YAML file ({exc})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config file", str(path), f"valid YAML ({exc})") from None
    except RecursionError:
        raise ConfigError("config file", str(path), "YAML nested less deeply (a configuration is a few levels)") \
            from None
    if document is not None and not isinstance(document, Mapping):
        raise ConfigError("config file", str(path), "a YAML mapping at the top level")
    return document


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
) -> MonitoringSettings:
    """Settings from ``path``, else ``$MONITORING_CONFIG``, else ``configs/monitoring_logging.yaml``
    when it exists, else the built-in defaults; then the environment; then ``overrides``.

    A relative ``log_dir`` is resolved against the working directory now, so a later
    ``chdir`` does not move the logs. ``problems`` collects environment warnings.
    """
    chosen = Path(path) if path is not None else None
    label = "config"
    if chosen is None and (from_env := env.env_str(env.MONITORING_CONFIG, environ)):
        chosen = Path(from_env)
        label = env.MONITORING_CONFIG
    if chosen is None and DEFAULT_CONFIG_PATH.is_file():
        chosen = DEFAULT_CONFIG_PATH
    origin = "the default (logs)"
    if chosen is not None:
        document = _read_yaml(chosen, label)
        settings = settings_from_mapping(document, source=str(chosen))
        logging_section = (document or {}).get("logging")
        if isinstance(logging_section, Mapping) and logging_section.get("log_dir"):
            origin = f"logging.log_dir in {chosen}"
    else:
        settings = MonitoringSettings()

    if overrides:
        merged = settings_from_mapping(overrides, source="<overrides>", references=False)
        settings = _merge(settings, overrides, merged)
        settings = _resolved(settings)

    log_settings = settings.logging
    explicit_dir = bool(overrides and "log_dir" in (overrides.get("logging") or {}))
    if explicit_dir:
        origin = "the log_dir given"
    elif log_dir := env.env_str(env.MONITORING_LOG_DIR, environ):
        log_settings = replace(log_settings, log_dir=Path(log_dir))
        origin = f"the environment variable {env.MONITORING_LOG_DIR}"
    enabled = settings.enabled
    if (flag := env.env_bool(env.MONITORING_ENABLED, environ, problems)) is not None and not (
        overrides and "enabled" in overrides
    ):
        enabled = flag
    log_settings = _console_from_env(log_settings, environ, overrides, problems)
    if not log_settings.log_dir.is_absolute():
        origin += f", relative to the working directory {os.getcwd()}"
    log_settings = replace(log_settings, log_dir=Path(os.path.abspath(log_settings.log_dir)))
    resolve_log_patterns(settings.log_cleanup.log_patterns, log_settings.log_dir)
    service, environment = settings.service_name, settings.environment
    if (value := env.env_str(env.MONITORING_SERVICE, environ)) and not (overrides and "service_name" in overrides):
        service = value.strip() or None
    if (value := env.env_str(env.MONITORING_ENVIRONMENT, environ)) and not (overrides and "environment" in overrides):
        environment = value.strip() or None
    return replace(settings, enabled=enabled, logging=log_settings, log_dir_origin=origin, service_name=service,
                   environment=environment)


def _console_from_env(log_settings: LoggingSettings, environ: Mapping[str, str] | None,
                      overrides: Mapping[str, Any] | None, problems: list[str] | None) -> LoggingSettings:
    """``MONITORING_CONSOLE`` over ``logging.console`` (an explicit override wins over both)."""
    console = env.env_bool(env.MONITORING_CONSOLE, environ, problems)
    if console is None or (overrides and "console" in (overrides.get("logging") or {})):
        return log_settings
    return replace(log_settings, console=console)


def _merge(base: MonitoringSettings, raw: Mapping[str, Any], parsed: MonitoringSettings) -> MonitoringSettings:
    """Apply only the keys present in ``raw`` (already validated into ``parsed``)."""
    result = base
    if "enabled" in raw:
        result = replace(result, enabled=parsed.enabled)
    if "slos" in raw:
        result = replace(result, slos=parsed.slos)
    for name in ("service_name", "environment"):
        if name in raw:
            result = replace(result, **{name: getattr(parsed, name)})
    for section in ("logging", "log_cleanup", "system_metrics", "pricing", "tracing", "instrumentation", "sessions",
                    "alerts",
                    "anomalies", "server", "otlp", "clickhouse", "query"):
        given = raw.get(section) or {}
        if given:
            updates = {name: getattr(getattr(parsed, section), name) for name in given}
            result = replace(result, **{section: replace(getattr(result, section), **updates)})
    return replace(result, source=f"{base.source} + overrides")
