"""Settings of the operations side: alert rules, notifiers, SLOs, anomaly detection, the
HTTP server and the OTLP shipper.

They are plain frozen data, validated with the same rules as the rest of the config: a
bad value raises ``ConfigError`` naming the key (``alerts.rules[2].expr``), the value
and what would be valid, when the file is loaded — not at 3 a.m. when the rule first
runs. Query pieces (filters, aggregates) are checked with the query engine's own
parsers, imported only when such a section exists, so the write path never pays for them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ._validate import (
    Validator,
    _bool,
    _number,
    _optional,
    _positive_int,
    _seconds,
    _section,
    _share,
    _str_list,
    _text,
)
from .errors import ConfigError

__all__ = [
    "SEVERITIES",
    "AlertRule",
    "AlertSettings",
    "AnomalySettings",
    "EmailNotifier",
    "OtlpSettings",
    "ServerSettings",
    "SloTarget",
    "WebhookNotifier",
]

SEVERITIES: Final = ("critical", "error", "warning", "info")
"""Most to least urgent."""
DEFAULT_COOLDOWNS: Final = MappingProxyType({"critical": 300.0, "error": 900.0, "warning": 3600.0, "info": 14400.0})
DEFAULT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_EXPR_RE: Final = re.compile(
    r"^\s*(?P<agg>[A-Za-z_][\w.]*)\s*(?:\(\s*(?P<field>[A-Za-z_][\w.-]*)\s*\)|:\s*(?P<field2>[A-Za-z_][\w.-]*))?"
    r"\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_COMPARE: Final = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
                   "!=": operator.ne}


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One condition over one aggregate of a query, in a sliding window.

    ``expr`` is ``AGG OP NUMBER`` where AGG is ``count``, ``errors``, ``error_rate``,
    ``rate`` or ``FUNC(field)`` with FUNC one of ``sum avg min max pNN`` (``p95(response_time)``).
    """

    name: str
    expr: str
    agg: str
    """The aggregate in the query engine's spelling (``p95:response_time``)."""
    op: str
    threshold: float
    module: str
    operation: str | None = None
    where: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    window: float = 300.0
    hold: float = 0.0
    """``for`` in the YAML: how long the condition must hold before the alert fires."""
    severity: str = "warning"
    cooldown: float | None = None
    """Seconds between two notifications of this alert; ``None``: the severity's default."""
    min_count: int = 0
    """Records the window needs before a ratio or a percentile means anything."""
    description: str = ""

    def holds(self, value: float) -> bool:
        return bool(_COMPARE[self.op](value, self.threshold))

    @property
    def zero_when_empty(self) -> bool:
        """A window with no record has a value for counts and sums (0), none for the rest."""
        return self.agg in ("count", "errors", "rate") or self.agg.startswith("sum:")


@dataclass(frozen=True, slots=True)
class WebhookNotifier:
    """JSON POST (Slack-compatible: a ``text`` plus ``attachments``)."""

    url: str
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time."""
    min_severity: str = "info"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    kind: str = "webhook"


@dataclass(frozen=True, slots=True)
class EmailNotifier:
    """SMTP, with ``starttls`` or implicit TLS (``ssl``) and optional login."""

    host: str
    to: tuple[str, ...]
    sender: str = "monitoring@localhost"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    """The name of an environment variable holding the password (keeps it out of the file)."""
    timeout: float = 10.0
    retries: int = 2
    backoff: float = 1.0
    min_severity: str = "warning"
    kind: str = "email"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    enabled: bool = True
    interval_seconds: float = 60.0
    cooldown: Mapping[str, float] = field(default_factory=lambda: DEFAULT_COOLDOWNS)
    rules: tuple[AlertRule, ...] = ()
    notifiers: tuple[WebhookNotifier | EmailNotifier, ...] = ()

    def cooldown_of(self, rule: AlertRule) -> float:
        return rule.cooldown if rule.cooldown is not None else self.cooldown[rule.severity]


@dataclass(frozen=True, slots=True)
class SloTarget:
    """``availability``: share of successful calls >= ``target``; ``latency``: the share
    of calls at most ``threshold`` seconds >= ``target`` (p95 <= 2 s is target 0.95,
    threshold 2); ``error_rate``: errors / calls <= ``target``."""

    name: str
    module: str
    objective: str
    target: float
    period: float = 30 * 86400.0
    operation: str | None = None
    where: tuple[str, ...] = ()
    field: str = "response_time"
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    """A window is anomalous when it lies more than ``k`` standard deviations from the
    mean of the ``baseline`` windows before it; a shift is sustained when the last
    ``sustain`` windows all lie on the same side, beyond ``k / 2``."""

    window: float = 3600.0
    baseline: int = 24
    k: float = 3.0
    sustain: int = 3
    min_count: int = 10


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 9464
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    """Histogram bucket bounds (seconds) of the ``/metrics`` latency histograms."""
    cache_seconds: float = 10.0
    """``/metrics`` answers from a copy at most this old (scrapes come every 15 s or so)."""


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318"
    modules: tuple[str, ...] = ("llm", "tool", "task", "checkpoint", "trace")
    interval_seconds: float = 30.0
    batch_size: int = 512
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    service_name: str = "llm-app"
    start_at: str = "beginning"
    """Where a family never shipped before starts: ``beginning`` (what the folder holds) or ``end``."""


# --------------------------------------------------------------------------- validators


def _choice(options: tuple[str, ...]) -> Validator:
    def check(value: Any, key: str, src: str) -> str:
        if isinstance(value, str) and value.lower() in options:
            return value.lower()
        raise ConfigError(key, value, "one of " + ", ".join(repr(o) for o in options), source=src)

    return check


def _name(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", value):
        return value
    raise ConfigError(key, value, "a name of letters, digits, '_', '.', ':' or '-' (at most 128)", source=src)


def _str_map(value: Any, key: str, src: str) -> Mapping[str, str]:
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return MappingProxyType(dict(value))
    raise ConfigError(key, value, "a mapping of strings to strings", source=src)


def _one_or_many(value: Any, key: str, src: str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) and value else _str_list(value, key, src)


def _filter_value(value: Any) -> str:
    """A YAML value in the filter syntax: strings quoted (so ``"200"`` stays text), the rest as JSON."""
    if isinstance(value, str):
        return f'"{value}"'
    import orjson

    return orjson.dumps(value).decode()


def _where(value: Any, key: str, src: str) -> tuple[str, ...]:
    """Filters as ``FIELD=VALUE`` strings, or a mapping (``{success: false, model: [a, b]}``),
    checked by the query parser."""
    from .query.spec import QueryError, parse_where

    if isinstance(value, Mapping):
        items = []
        for name, want in value.items():
            if isinstance(want, (list, tuple)):
                items.append(f"{name} in " + ",".join(_filter_value(v) for v in want))
            else:
                items.append(f"{name}={_filter_value(want)}")
        value = items
    if isinstance(value, str):
        value = [value]
    specs = _str_list(value, key, src)
    for spec in specs:
        try:
            parse_where(spec)
        except QueryError as exc:
            raise ConfigError(key, spec, f"a filter such as 'success=false' or 'model in gpt-4o,gpt-4o-mini' ({exc})",
                              source=src) from None
    return specs


def _url(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and re.match(r"^https?://[^\s/]+", value):
        return value
    raise ConfigError(key, value, "an http:// or https:// URL", source=src)


def _port(value: Any, key: str, src: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    raise ConfigError(key, value, "a TCP port between 0 and 65535 (0: any free port)", source=src)


def _buckets(value: Any, key: str, src: str) -> tuple[float, ...]:
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)
    if ok and list(value) == sorted(set(value)):
        return tuple(float(v) for v in value)
    raise ConfigError(key, value, "a non-empty, strictly increasing list of positive numbers", source=src)


def parse_expr(expr: Any, key: str, src: str) -> tuple[str, str, float]:
    """``p95(response_time) > 2.0`` -> (``p95:response_time``, ``>``, 2.0)."""
    from .query.spec import QueryError, parse_agg

    valid = ("'AGG OP NUMBER' such as 'error_rate > 0.05', 'p95(response_time) > 2.0', 'count < 1' "
             "or 'sum(cost) > 10' (AGG: count, errors, error_rate, rate, sum/avg/min/max/pNN(FIELD))")
    match = _EXPR_RE.match(expr) if isinstance(expr, str) else None
    if match is None:
        raise ConfigError(key, expr, valid, source=src)
    agg, fld = match["agg"].lower(), match["field"] or match["field2"]
    spec = f"{agg}:{fld}" if fld else agg
    try:
        parsed = parse_agg(spec)
    except QueryError as exc:
        raise ConfigError(key, expr, f"{valid}; {exc}", source=src) from None
    if parsed.kind in ("latest", "count_if"):
        raise ConfigError(key, expr, valid, source=src)
    return spec, "!=" if match["op"] == "!=" else match["op"], float(match["num"])


_RULE_SCHEMA: Final[Mapping[str, Validator]] = {
    "name": _name, "expr": parse_expr, "module": _name, "operation": _text,
    "where": _where, "group_by": _one_or_many, "window": _seconds, "for": _seconds,
    "severity": _choice(SEVERITIES), "cooldown": _optional(_seconds), "min_count": _positive_int(0),
    "description": _text,
}


def _rule(value: Any, key: str, src: str) -> AlertRule:
    fields = _section(value, key, src, _RULE_SCHEMA)
    for needed in ("name", "expr", "module"):
        if needed not in fields:
            raise ConfigError(f"{key}.{needed}", None, "a value: every rule needs name, expr and module", source=src)
    agg, op, threshold = fields.pop("expr")
    if fields.get("window", 300.0) <= 0:
        raise ConfigError(f"{key}.window", fields["window"], "a window longer than 0 seconds", source=src)
    fields["hold"] = fields.pop("for", 0.0)
    return AlertRule(expr=f"{agg} {op} {threshold:g}", agg=agg, op=op, threshold=threshold, **fields)


def _rules(value: Any, key: str, src: str) -> tuple[AlertRule, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "a list of rules (each with name, module, expr, window, for, severity)",
                          source=src)
    rules = tuple(_rule(item, f"{key}[{i}]", src) for i, item in enumerate(value))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise ConfigError(f"{key}[{i}].name", rule.name, "a name no other rule has", source=src)
        seen.add(rule.name)
    return rules


def _cooldowns(value: Any, key: str, src: str) -> Mapping[str, float]:
    given = _section(value, key, src, dict.fromkeys(SEVERITIES, _seconds))
    return MappingProxyType({**DEFAULT_COOLDOWNS, **given})


_WEBHOOK_SCHEMA: Final[Mapping[str, Validator]] = {
    "type": _text, "url": _url, "timeout": _seconds, "retries": _positive_int(0), "backoff": _seconds,
    "min_severity": _choice(SEVERITIES), "headers": _str_map,
}
_EMAIL_SCHEMA: Final[Mapping[str, Validator]] = {
    "type": _text, "host": _text, "port": _port, "to": _one_or_many, "sender": _text, "from": _text,
    "starttls": _bool, "ssl": _bool, "username": _optional(_text), "password": _optional(_text),
    "password_env": _optional(_text), "timeout": _seconds, "retries": _positive_int(0), "backoff": _seconds,
    "min_severity": _choice(SEVERITIES),
}


def _notifier(value: Any, key: str, src: str) -> WebhookNotifier | EmailNotifier:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "webhook":
        fields = _section(value, key, src, _WEBHOOK_SCHEMA)
        fields.pop("type")
        if "url" not in fields:
            raise ConfigError(f"{key}.url", None, "the URL to POST to", source=src)
        return WebhookNotifier(**fields)
    if kind == "email":
        fields = _section(value, key, src, _EMAIL_SCHEMA)
        fields.pop("type")
        if "from" in fields:
            fields["sender"] = fields.pop("from")
        for needed in ("host", "to"):
            if needed not in fields:
                raise ConfigError(f"{key}.{needed}", None, "a value: email needs host and to", source=src)
        if fields.get("ssl") and fields.get("starttls"):
            raise ConfigError(f"{key}.starttls", True, "false when ssl is true (one or the other)", source=src)
        if fields.get("password") is not None and fields.get("password_env") is not None:
            raise ConfigError(f"{key}.password", "<hidden>", "unset when password_env is given", source=src)
        return EmailNotifier(**fields)
    raise ConfigError(f"{key}.type", kind, "'webhook' or 'email'", source=src)


def _notifiers(value: Any, key: str, src: str) -> tuple[WebhookNotifier | EmailNotifier, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "a list of notifiers ({type: webhook, url: ...} or {type: email, ...})",
                          source=src)
    return tuple(_notifier(item, f"{key}[{i}]", src) for i, item in enumerate(value))


_ALERTS_SCHEMA: Final[Mapping[str, Validator]] = {
    "enabled": _bool, "interval_seconds": _number(1), "cooldown": _cooldowns, "rules": _rules,
    "notifiers": _notifiers,
}


def alerts_section(value: Any, key: str, src: str) -> AlertSettings:
    return AlertSettings(**_section(value, key, src, _ALERTS_SCHEMA))


_SLO_SCHEMA: Final[Mapping[str, Validator]] = {
    "name": _name, "module": _name, "objective": _choice(("availability", "latency", "error_rate")),
    "target": _share, "period": _seconds, "operation": _text, "where": _where, "field": _name,
    "threshold": _number(0, strict_min=True),
}


def _slo(value: Any, key: str, src: str) -> SloTarget:
    fields = _section(value, key, src, _SLO_SCHEMA)
    for needed in ("name", "module", "objective", "target"):
        if needed not in fields:
            raise ConfigError(f"{key}.{needed}", None, "a value: every SLO needs name, module, objective, target",
                              source=src)
    if fields["objective"] == "latency" and "threshold" not in fields:
        raise ConfigError(f"{key}.threshold", None, "the latency bound in seconds (a latency SLO needs it)",
                          source=src)
    if fields["objective"] != "error_rate" and not 0 < fields["target"] < 1:
        raise ConfigError(f"{key}.target", fields["target"], "a share strictly between 0 and 1 (0.995)", source=src)
    if fields.get("period", 1.0) <= 0:
        raise ConfigError(f"{key}.period", fields["period"], "a period longer than 0 seconds", source=src)
    return SloTarget(**fields)


def slos_section(value: Any, key: str, src: str) -> tuple[SloTarget, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "a list of SLO targets", source=src)
    return tuple(_slo(item, f"{key}[{i}]", src) for i, item in enumerate(value))


def anomalies_section(value: Any, key: str, src: str) -> AnomalySettings:
    return AnomalySettings(**_section(value, key, src, {
        "window": _seconds, "baseline": _positive_int(3), "k": _number(0, strict_min=True),
        "sustain": _positive_int(2), "min_count": _positive_int(0),
    }))


def server_section(value: Any, key: str, src: str) -> ServerSettings:
    return ServerSettings(**_section(value, key, src, {
        "host": _text, "port": _port, "buckets": _buckets, "cache_seconds": _number(0),
    }))


def otlp_section(value: Any, key: str, src: str) -> OtlpSettings:
    fields = _section(value, key, src, {
        "enabled": _bool, "endpoint": _url, "modules": _str_list, "interval_seconds": _number(1),
        "batch_size": _positive_int(1), "timeout": _seconds, "headers": _str_map, "service_name": _text,
        "start_at": _choice(("beginning", "end")),
    })
    if "endpoint" in fields:
        fields["endpoint"] = fields["endpoint"].rstrip("/")
    return OtlpSettings(**fields)
