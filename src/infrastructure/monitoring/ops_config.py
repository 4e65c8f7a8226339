"""Settings of the operations side: alert rules, notifiers, SLOs, anomaly detection, the
HTTP server and the OTLP shipper.

They are plain frozen data, validated with the same rules as the rest of the config: a
bad value raises ``ConfigError`` naming the key (``alerts.rules[2].expr``), the value
and what would be valid, when the file is loaded — not at 3 a.m. when the rule first
runs. References across sections (a burn-rate rule naming an SLO, a route naming a
notifier) are checked too, once the whole file is read (``resolve_references``). Query
pieces (filters, aggregates) are checked with the query engine's own
parsers, imported only when such a section exists, so the write path never pays for them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import orjson

from ._validate import (
    Validator,
    _bool,
    _number,
    _optional,
    _positive_int,
    _refuse,
    _seconds,
    _section,
    _share,
    _str_list,
    _text,
)
from .env import MONITORING_SERVER_TOKEN
from .errors import ConfigError

__all__ = [
    "SEVERITIES",
    "AlertRule",
    "AlertSettings",
    "AlertmanagerNotifier",
    "AnomalySettings",
    "BasicAuthSettings",
    "EmailNotifier",
    "Notifier",
    "OtlpSettings",
    "PagerDutyNotifier",
    "Route",
    "ServerSettings",
    "SloTarget",
    "WebhookNotifier",
    "resolve_references",
]

SEVERITIES: Final = ("critical", "error", "warning", "info")
"""Most to least urgent."""
DEFAULT_COOLDOWNS: Final = MappingProxyType({"critical": 300.0, "error": 900.0, "warning": 3600.0, "info": 14400.0})
DEFAULT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PAGERDUTY_EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
_NUM: Final = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BURN_RE: Final = re.compile(
    rf"^\s*burn_rate\s*\(\s*(?P<slo>[A-Za-z0-9_.:-]+)\s*\)\s*(?P<op>>=|>)\s*(?P<num>{_NUM})\s*$")
_ANOMALY_RE: Final = re.compile(
    r"^\s*anomaly\s*\(\s*(?P<agg>[A-Za-z_][\w.]*)\s*(?:\(\s*(?P<field>[A-Za-z_][\w.-]*)\s*\)|:\s*(?P<field2>[A-Za-z_][\w.-]*))?"
    r"\s*\)\s*(?:by\s+(?P<by>[A-Za-z_][\w.-]*(?:\s*,\s*[A-Za-z_][\w.-]*)*))?"
    rf"\s*(?:>\s*(?P<k>{_NUM}))?\s*$")

_EXPR_RE: Final = re.compile(
    r"^\s*(?P<agg>[A-Za-z_][\w.]*)\s*(?:\(\s*(?P<field>[A-Za-z_][\w.-]*)\s*\)|:\s*(?P<field2>[A-Za-z_][\w.-]*))?"
    r"\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_COMPARE: Final = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
                   "!=": operator.ne}


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One condition, of one of three kinds (``kind``):

    * ``threshold``: ``AGG OP NUMBER`` over a sliding ``window``, where AGG is ``count``,
      ``errors``, ``error_rate``, ``rate`` or ``FUNC(field)`` with FUNC one of
      ``sum avg min max pNN`` (``p95(response_time) > 2``);
    * ``burn_rate``: ``burn_rate(SLO) > FACTOR``: the SLO's error budget burns faster than
      FACTOR times the sustainable rate over ``window`` *and* over ``short_window`` (the
      multi-window form of the Google SRE workbook: 1 h and 5 m above 14.4 pages);
    * ``anomaly``: ``anomaly(AGG) [by FIELDS] [> K]``: the latest whole ``window`` of the
      series (or the last ``sustain`` windows) lies more than K deviations from the
      ``baseline`` windows before it; the value is the z-score.
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
    kind: str = "threshold"
    slo: str | None = None
    """``burn_rate``: the name of the SLO (``slos[].name``) whose budget is watched."""
    short_window: float | None = None
    """``burn_rate``: the second, shorter window (default ``window / 12``, as the workbook's 1 h / 5 m)."""
    baseline: int = 0
    """``anomaly``: windows before the judged one that make its baseline (0: ``anomalies.baseline``)."""
    sustain: int = 0
    """``anomaly``: windows that, all beyond ``K / 2`` on one side, make a sustained shift
    (0: ``anomalies.sustain``)."""
    direction: str = "both"
    """``anomaly``: ``up`` (spikes, upward shifts), ``down`` or ``both``."""
    group_wait: float | None = None
    """Overrides ``alerts.group_wait`` for this rule's notifications."""
    group_interval: float | None = None
    """Overrides ``alerts.group_interval`` for this rule's notifications."""

    def holds(self, value: float) -> bool:
        if self.kind == "anomaly":
            return self.anomalous(value)
        return bool(_COMPARE[self.op](value, self.threshold))

    def anomalous(self, z: float) -> bool:
        """Is a z-score beyond ``K`` in the watched direction?"""
        if self.direction == "up":
            return z > self.threshold
        if self.direction == "down":
            return z < -self.threshold
        return abs(z) > self.threshold

    @property
    def zero_when_empty(self) -> bool:
        """A window with no record has a value for counts and sums (0), none for the rest."""
        return self.agg in ("count", "errors", "rate") or self.agg.startswith("sum:")


@dataclass(frozen=True, slots=True)
class WebhookNotifier:
    """JSON POST: ``body: slack`` (a Slack-compatible ``text`` plus ``attachments``, and the
    raw ``alert``) or ``body: alert`` (the raw alert object alone)."""

    url: str
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time."""
    min_severity: str = "info"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    body: str = "slack"
    kind: str = "webhook"
    name: str = "webhook"
    """What routes call it (``alerts.routes[].notifiers``); the type by default."""
    url_env: str | None = None
    """The environment variable holding the URL instead of ``url`` (a Slack webhook URL is a secret)."""


@dataclass(frozen=True, slots=True)
class AlertmanagerNotifier:
    """Prometheus Alertmanager's API v2 (``POST <url>/api/v2/alerts``).

    Unlike chat and email, Alertmanager wants the *state*: every firing alert again every
    ``resend_interval`` (it groups, deduplicates, silences and routes them itself), and a
    resolved one with its ``endsAt``. Cooldowns do not apply to it.
    """

    url: str
    """The Alertmanager's base URL (``http://alertmanager:9093``)."""
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    min_severity: str = "info"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    resend_interval: float = 60.0
    """Seconds between two sends of a firing alert (Alertmanager's ``resolve_timeout`` is 5 min
    by default; each send also says the alert is valid for 4 resend intervals)."""
    kind: str = "alertmanager"
    name: str = "alertmanager"
    url_env: str | None = None
    """The environment variable holding the base URL instead of ``url``."""

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.url)


def endpoint_of(url: str) -> str:
    """An Alertmanager's base URL -> its ``/api/v2/alerts``."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v2/alerts") else url + "/api/v2/alerts"


@dataclass(frozen=True, slots=True)
class PagerDutyNotifier:
    """PagerDuty's Events API v2: each alert is triggered with a ``dedup_key`` of its own
    (stable across restarts, so repeats update the same PagerDuty alert) and resolved
    with the same key. Our severities are PagerDuty's (critical, error, warning, info)."""

    routing_key: str | None = None
    """The 32-character integration key; better given as ``routing_key_env``."""
    routing_key_env: str | None = None
    url: str = PAGERDUTY_EVENTS_URL
    url_env: str | None = None
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    min_severity: str = "info"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    kind: str = "pagerduty"
    name: str = "pagerduty"


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
    name: str = "email"


Notifier = WebhookNotifier | EmailNotifier | AlertmanagerNotifier | PagerDutyNotifier
"""Any configured notifier (``alerts.notifiers``)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Sends the alerts it matches to the notifiers it names.

    ``match`` maps a label to a value or a list of values; every key must hold. The labels
    an alert offers: ``rule`` (also ``alertname``), ``severity``, ``module``,
    ``operation``, the rule's ``group_by`` labels (``model``), and the global labels
    ``service_name`` and ``environment``. Routes are tried in order and the first match
    wins, unless it says ``continue: true``; an alert no route matches goes to every
    notifier that no route names.
    """

    notifiers: tuple[str, ...]
    match: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    continue_: bool = False

    def matches(self, labels: Mapping[str, Any]) -> bool:
        for key, wanted in self.match.items():
            value = labels.get(key)
            text = value if isinstance(value, str) else "" if value is None else \
                str(value).lower() if isinstance(value, bool) else str(value)
            if text not in wanted:
                return False
        return True


@dataclass(frozen=True, slots=True)
class AlertSettings:
    enabled: bool = True
    interval_seconds: float = 60.0
    cooldown: Mapping[str, float] = field(default_factory=lambda: DEFAULT_COOLDOWNS)
    rules: tuple[AlertRule, ...] = ()
    notifiers: tuple[Notifier, ...] = ()
    routes: tuple[Route, ...] = ()
    group_wait: float = 0.0
    """Seconds a rule's first firing alert waits for others of the same rule, so they go out
    as one notification (alerts firing at the same evaluation always do)."""
    group_interval: float = 0.0
    """Seconds after a rule's notification before the next one about that rule's later changes."""

    def cooldown_of(self, rule: AlertRule) -> float:
        return rule.cooldown if rule.cooldown is not None else self.cooldown[rule.severity]

    def group_timing(self, rule: AlertRule) -> tuple[float, float]:
        """``(group_wait, group_interval)`` of ``rule``."""
        wait = rule.group_wait if rule.group_wait is not None else self.group_wait
        interval = rule.group_interval if rule.group_interval is not None else self.group_interval
        return wait, interval

    def route(self, labels: Mapping[str, Any]) -> tuple[Notifier, ...]:
        """The notifiers an alert with ``labels`` goes to (every notifier when there are no routes)."""
        if not self.routes:
            return self.notifiers
        chosen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(labels):
                chosen.update(dict.fromkeys(route.notifiers))
                if not route.continue_:
                    break
        if not chosen:
            routed = {name for r in self.routes for name in r.notifiers}
            return tuple(n for n in self.notifiers if n.name not in routed)
        return tuple(n for n in self.notifiers if n.name in chosen)


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
class BasicAuthSettings:
    """HTTP basic authentication of ``monitoring serve``. The password is read from the
    environment variable ``password_env`` so that it never sits in the file."""

    username: str
    password_env: str


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 9464
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    """Histogram bucket bounds (seconds) of the ``/metrics`` latency histograms."""
    cache_seconds: float = 10.0
    """``/metrics`` answers from a copy at most this old (scrapes come every 15 s or so)."""
    auth_token_env: str = MONITORING_SERVER_TOKEN
    """The environment variable holding the bearer token; when it is set, every request needs it."""
    basic_auth: BasicAuthSettings | None = None
    events_max_clients: int = 16
    """Browsers following ``/api/events`` at once (each holds one thread); more get a 503."""
    events_check_seconds: float = 2.0
    """How often a live page's server looks at the folder for new records."""
    events_heartbeat_seconds: float = 15.0
    """A comment line this often keeps proxies from closing a quiet stream."""
    external_url: str | None = None
    """Where people reach ``monitoring serve`` (``https://monitoring.example.com``): the link
    (``generatorURL``) that alerts sent to Alertmanager carry back to the dashboard."""


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
    """``service.name`` of records that carry no ``service_name`` (the global label wins when set)."""
    start_at: str = "beginning"
    """Where a family never shipped before starts: ``beginning`` (what the folder holds) or ``end``."""
    metrics: bool = True
    """Also post metrics derived from each batch to ``/v1/metrics`` (counters, gauges, GenAI histograms)."""


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

    return orjson.dumps(value).decode()


def _where(value: Any, key: str, src: str) -> tuple[str, ...]:
    """Filters as ``FIELD=VALUE`` strings, or a mapping (``{success: false, model: [a, b]}``),
    checked by the query parser."""
    from .query.spec import QueryError, parse_where  # the query parser: only when a section has filters

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


_UNSET: Final = math.nan
"""An anomaly rule's K before ``resolve_references`` fills in the ``anomalies`` section's."""


class _Threshold(NamedTuple):
    """``AGG OP NUMBER``: the kind is the type, never read from a name the user chose."""

    agg: str
    op: str
    threshold: float


class _BurnRate(NamedTuple):
    agg: str
    op: str
    threshold: float
    slo: str
    """The SLO's name, whatever it is (an SLO may be called ``threshold`` or ``anomaly``)."""


class _Anomaly(NamedTuple):
    agg: str
    op: str
    threshold: float
    by: tuple[str, ...]


def parse_expr(expr: Any, key: str, src: str) -> _Threshold | _BurnRate | _Anomaly:
    """``p95(response_time) > 2.0`` -> _Threshold(``p95:response_time``, ``>``, 2.0);
    ``burn_rate(api) > 14.4`` -> _BurnRate(``burn_rate``, ``>``, 14.4, ``api``);
    ``anomaly(p95:response_time) by model`` -> _Anomaly(``p95:response_time``, ``>``, K, (``model``,))."""
    from .query.spec import QueryError, parse_agg  # the query parser: only when a section has rules

    valid = ("'AGG OP NUMBER' such as 'error_rate > 0.05', 'p95(response_time) > 2.0', 'count < 1' "
             "or 'sum(cost) > 10' (AGG: count, errors, error_rate, rate, sum/avg/min/max/pNN(FIELD)), "
             "'burn_rate(SLO_NAME) > 14.4' or 'anomaly(AGG) [by FIELD,...] [> K]'")
    text = expr.strip() if isinstance(expr, str) else ""
    if text.startswith("burn_rate"):
        burn = _BURN_RE.match(text)
        if burn is None or float(burn["num"]) <= 0:
            raise ConfigError(key, expr, "'burn_rate(SLO_NAME) > FACTOR' with a positive FACTOR, such as "
                              "'burn_rate(api_availability) > 14.4'", source=src)
        return _BurnRate("burn_rate", burn["op"], float(burn["num"]), burn["slo"])
    if text.startswith("anomaly"):
        found = _ANOMALY_RE.match(text)
        if found is None:
            raise ConfigError(key, expr, "'anomaly(AGG) [by FIELD,...] [> K]' such as "
                              "'anomaly(p95:response_time) by model' or 'anomaly(count) > 4'", source=src)
        fld = found["field"] or found["field2"]
        spec = f"{found['agg'].lower()}:{fld}" if fld else found["agg"].lower()
        try:
            parsed = parse_agg(spec)
        except QueryError as exc:
            raise ConfigError(key, expr, f"an aggregate the query engine knows inside anomaly(...): {exc}",
                              source=src) from None
        if parsed.kind in ("latest", "count_if"):
            raise ConfigError(key, expr, "anomaly() of count, errors, error_rate, rate or sum/avg/min/max/pNN(FIELD)",
                              source=src)
        by = tuple(f.strip() for f in found["by"].split(",")) if found["by"] else ()
        k = float(found["k"]) if found["k"] else _UNSET
        if k == k and k <= 0:
            raise ConfigError(key, expr, "a K above 0 (deviations from the baseline)", source=src)
        return _Anomaly(spec, ">", k, by)
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
    return _Threshold(spec, "!=" if match["op"] == "!=" else match["op"], float(match["num"]))


_RULE_SCHEMA: Final[Mapping[str, Validator]] = {
    "name": _name, "expr": parse_expr, "module": _name, "operation": _text,
    "where": _where, "group_by": _one_or_many, "window": _seconds, "for": _seconds,
    "severity": _choice(SEVERITIES), "cooldown": _optional(_seconds), "min_count": _positive_int(0),
    "description": _text, "short_window": _seconds, "baseline": _positive_int(3), "sustain": _positive_int(2),
    "direction": _choice(("both", "up", "down")), "group_wait": _seconds, "group_interval": _seconds,
}
_ONLY: Final = {"short_window": "burn_rate", "baseline": "anomaly", "sustain": "anomaly", "direction": "anomaly"}
_KIND_OF: Final[Mapping[type, str]] = {_Threshold: "threshold", _BurnRate: "burn_rate", _Anomaly: "anomaly"}


def _anomaly_expr(agg: str, by: tuple[str, ...], k: float) -> str:
    return f"anomaly({agg})" + (f" by {','.join(by)}" if by else "") + (f" > {k:g}" if k == k else "")


def _rule(value: Any, key: str, src: str) -> AlertRule:
    fields = _section(value, key, src, _RULE_SCHEMA)
    for needed in ("name", "expr"):
        if needed not in fields:
            raise ConfigError(f"{key}.{needed}", None, "a value: every rule needs name, expr and module", source=src)
    parsed: _Threshold | _BurnRate | _Anomaly = fields.pop("expr")
    agg, op, threshold = parsed.agg, parsed.op, parsed.threshold
    kind = _KIND_OF[type(parsed)]
    for option, only in _ONLY.items():
        if option in fields and kind != only:
            raise ConfigError(f"{key}.{option}", fields[option], f"unset: {option} belongs to {only} rules "
                              f"(expr: {'burn_rate(SLO) > FACTOR' if only == 'burn_rate' else 'anomaly(AGG)'})",
                              source=src)
    if kind != "burn_rate" and "module" not in fields:
        raise ConfigError(f"{key}.module", None, "a value: every rule needs name, expr and module", source=src)
    if fields.get("window", 300.0) <= 0:
        raise ConfigError(f"{key}.window", fields["window"], "a window longer than 0 seconds", source=src)
    fields["hold"] = fields.pop("for", 0.0)
    if isinstance(parsed, _BurnRate):
        for taken in ("module", "operation", "where", "group_by"):
            if taken in fields:
                raise ConfigError(f"{key}.{taken}", fields[taken], "unset: a burn-rate rule watches its SLO's "
                                  "module, operation and filters (slos[])", source=src)
        window = fields.setdefault("window", 3600.0)
        short = fields.setdefault("short_window", window / 12)
        if not 0 < short < window:
            raise ConfigError(f"{key}.short_window", short, f"a window shorter than window ({window:g}s) and "
                              "longer than 0 (the workbook pairs 1h with 5m, 6h with 30m)", source=src)
        return AlertRule(expr=f"burn_rate({parsed.slo}) {op} {threshold:g}", agg=agg, op=op, threshold=threshold,
                         kind=kind, slo=parsed.slo, module="", **fields)
    if isinstance(parsed, _Anomaly):
        if "group_by" in fields and parsed.by:
            raise ConfigError(f"{key}.group_by", fields["group_by"], "unset when the expr says 'by ...'", source=src)
        fields["group_by"] = fields.get("group_by", parsed.by)
        fields.setdefault("window", 0.0)  # the anomalies section's window, filled in by resolve_references
        fields.setdefault("min_count", -1)
        fields.setdefault("baseline", 0)
        fields.setdefault("sustain", 0)
        return AlertRule(expr=_anomaly_expr(agg, fields["group_by"], threshold), agg=agg, op=op, threshold=threshold,
                         kind=kind, **fields)
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


def _env_var(value: Any, key: str, src: str) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        return value
    raise ConfigError(key, value, "the name of an environment variable (letters, digits, '_')", source=src)


_COMMON: Final[Mapping[str, Validator]] = {
    "type": _text, "name": _name, "timeout": _seconds, "retries": _positive_int(0), "backoff": _seconds,
    "min_severity": _choice(SEVERITIES),
}
_WEBHOOK_SCHEMA: Final[Mapping[str, Validator]] = {
    **_COMMON, "url": _url, "url_env": _env_var, "headers": _str_map, "body": _choice(("slack", "alert")),
}
_ALERTMANAGER_SCHEMA: Final[Mapping[str, Validator]] = {
    **_COMMON, "url": _url, "url_env": _env_var, "headers": _str_map, "resend_interval": _seconds,
}
_PAGERDUTY_SCHEMA: Final[Mapping[str, Validator]] = {
    **_COMMON, "url": _url, "url_env": _env_var, "headers": _str_map, "routing_key": _text,
    "routing_key_env": _env_var,
}
_EMAIL_SCHEMA: Final[Mapping[str, Validator]] = {
    **_COMMON, "host": _text, "port": _port, "to": _one_or_many, "sender": _text, "from": _text,
    "starttls": _bool, "ssl": _bool, "username": _optional(_text), "password": _optional(_text),
    "password_env": _optional(_env_var),
}


def _url_or_env(fields: dict[str, Any], key: str, src: str, what: str, *, required: bool = True) -> None:
    """One of ``url`` and ``url_env``; ``required=False`` for a notifier whose URL has a default."""
    if "url" in fields and "url_env" in fields:
        raise ConfigError(f"{key}.url", fields["url"], "unset when url_env is given (one or the other)", source=src)
    if not required:
        return
    if "url" not in fields and "url_env" not in fields:
        raise ConfigError(f"{key}.url", None, f"{what}, or url_env: the environment variable holding it", source=src)
    fields.setdefault("url", "")


def _notifier(value: Any, key: str, src: str) -> Notifier:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "alertmanager":
        fields = _section(value, key, src, _ALERTMANAGER_SCHEMA)
        fields.pop("type")
        _url_or_env(fields, key, src, "the Alertmanager's base URL (http://alertmanager:9093)")
        fields["url"] = fields["url"].rstrip("/")
        if fields.get("resend_interval", 60.0) <= 0:
            raise ConfigError(f"{key}.resend_interval", fields["resend_interval"],
                              "a positive interval, below the Alertmanager's resolve_timeout (default 5m)", source=src)
        return AlertmanagerNotifier(**fields)
    if kind == "webhook":
        fields = _section(value, key, src, _WEBHOOK_SCHEMA)
        fields.pop("type")
        _url_or_env(fields, key, src, "the URL to POST to")
        return WebhookNotifier(**fields)
    if kind == "pagerduty":
        fields = _section(value, key, src, _PAGERDUTY_SCHEMA)
        fields.pop("type")
        if ("routing_key" in fields) == ("routing_key_env" in fields):
            raise ConfigError(f"{key}.routing_key_env", fields.get("routing_key_env"), "the environment variable "
                              "holding the Events API v2 integration key (or routing_key, not both)", source=src)
        _url_or_env(fields, key, src, "the Events API v2 URL", required=False)
        return PagerDutyNotifier(**fields)
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
    raise ConfigError(f"{key}.type", kind, "'webhook', 'email', 'pagerduty' or 'alertmanager'", source=src)


def _notifiers(value: Any, key: str, src: str) -> tuple[Notifier, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "a list of notifiers ({type: webhook, url: ...}, {type: email, ...}, "
                          "{type: pagerduty, routing_key_env: ...} or {type: alertmanager, url: ...})", source=src)
    notifiers = [_notifier(item, f"{key}[{i}]", src) for i, item in enumerate(value)]
    named = [isinstance(item, Mapping) and "name" in item for item in value]
    taken: set[str] = set()
    for i, (notifier, explicit) in enumerate(zip(notifiers, named, strict=True)):
        if explicit:
            if notifier.name in taken:
                raise ConfigError(f"{key}[{i}].name", notifier.name, "a name no other notifier has", source=src)
            taken.add(notifier.name)
    for i, (notifier, explicit) in enumerate(zip(notifiers, named, strict=True)):
        if not explicit:  # the type, then type_2, type_3 ... for the unnamed ones
            name, n = notifier.kind, 1
            while name in taken:
                n += 1
                name = f"{notifier.kind}_{n}"
            taken.add(name)
            notifiers[i] = replace(notifier, name=name)
    return tuple(notifiers)


def _match(value: Any, key: str, src: str) -> Mapping[str, tuple[str, ...]]:
    valid = "a mapping of label to a value or a list of values, such as {severity: critical} or {module: [llm, tool]}"
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(key, value, valid, source=src)
    out: dict[str, tuple[str, ...]] = {}
    for label, wanted in value.items():
        values = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        if not isinstance(label, str) or not values or not all(
                isinstance(v, (str, int, float, bool)) for v in values):
            raise ConfigError(f"{key}.{label}", wanted, valid, source=src)
        out[label] = tuple(v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                           for v in values)
    return MappingProxyType(out)


def _route(value: Any, key: str, src: str) -> Route:
    fields = _section(value, key, src, {"match": _match, "notifiers": _one_or_many, "continue": _bool})
    if "notifiers" not in fields:
        raise ConfigError(f"{key}.notifiers", None, "the names of the notifiers this route sends to", source=src)
    return Route(notifiers=fields["notifiers"], match=fields.get("match", MappingProxyType({})),
                 continue_=fields.get("continue", False))


def _routes(value: Any, key: str, src: str) -> tuple[Route, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, value, "a list of routes ({match: {severity: critical}, notifiers: [pagerduty]})",
                          source=src)
    return tuple(_route(item, f"{key}[{i}]", src) for i, item in enumerate(value))


_ALERTS_SCHEMA: Final[Mapping[str, Validator]] = {
    "enabled": _bool, "interval_seconds": _number(1), "cooldown": _cooldowns, "rules": _rules,
    "notifiers": _notifiers, "routes": _routes, "group_wait": _seconds, "group_interval": _seconds,
}


def alerts_section(value: Any, key: str, src: str) -> AlertSettings:
    settings = AlertSettings(**_section(value, key, src, _ALERTS_SCHEMA))
    names = [n.name for n in settings.notifiers]
    for i, route in enumerate(settings.routes):
        for name in route.notifiers:
            if name not in names:
                raise ConfigError(f"{key}.routes[{i}].notifiers", name, "the name of a notifier: one of "
                                  + (", ".join(repr(n) for n in names) or "none (alerts.notifiers is empty)"),
                                  source=src)
    return settings


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


def _basic_auth(value: Any, key: str, src: str) -> BasicAuthSettings:
    fields = _section(value, key, src, {"username": _text, "password_env": _env_var})
    for needed in ("username", "password_env"):
        if needed not in fields:
            raise ConfigError(f"{key}.{needed}", None, "a value: basic_auth needs username and password_env "
                              "(the environment variable holding the password)", source=src)
    if ":" in fields["username"]:
        raise ConfigError(f"{key}.username", fields["username"], "a user name without ':'", source=src)
    return BasicAuthSettings(**fields)


def server_section(value: Any, key: str, src: str) -> ServerSettings:
    return ServerSettings(**_section(value, key, src, {
        "host": _text, "port": _port, "buckets": _buckets, "cache_seconds": _number(0),
        "auth_token_env": _env_var, "basic_auth": _optional(_basic_auth), "events_max_clients": _positive_int(1),
        "events_check_seconds": _number(0.05), "events_heartbeat_seconds": _number(1),
        "external_url": _optional(_url),
    }))


def otlp_section(value: Any, key: str, src: str) -> OtlpSettings:
    fields = _section(value, key, src, {
        "enabled": _bool, "endpoint": _url, "modules": _str_list, "interval_seconds": _number(1),
        "batch_size": _positive_int(1), "timeout": _seconds, "headers": _str_map, "service_name": _text,
        "start_at": _choice(("beginning", "end")), "metrics": _bool,
    })
    if "endpoint" in fields:
        fields["endpoint"] = fields["endpoint"].rstrip("/")
    return OtlpSettings(**fields)


def resolve_references(alerts: AlertSettings, slos: tuple[SloTarget, ...], anomalies: AnomalySettings,
                       src: str) -> AlertSettings:
    """``alerts`` with what its rules take from other sections filled in, once the whole file is
    known: a burn-rate rule's module from its SLO (a ConfigError when no SLO has that name), an
    anomaly rule's window, K and min_count from ``anomalies`` when the rule does not say."""
    by_name = {s.name: s for s in slos}
    rules = []
    for i, given in enumerate(alerts.rules):
        rule = given
        if rule.kind == "burn_rate":
            slo = by_name.get(str(rule.slo))
            if slo is None:
                _refuse(ConfigError(f"alerts.rules[{i}].expr", rule.expr, "burn_rate(NAME) naming an SLO of the "
                                    "slos list: " + (", ".join(repr(n) for n in by_name) or "there is none"),
                                    source=src))
                continue  # collecting every error (validate-config): the rule is left out
            rule = replace(rule, module=slo.module, operation=slo.operation)
        elif rule.kind == "anomaly":
            k = anomalies.k if rule.threshold != rule.threshold else rule.threshold
            rule = replace(
                rule, window=rule.window or anomalies.window, threshold=k,
                expr=_anomaly_expr(rule.agg, rule.group_by, k),
                min_count=anomalies.min_count if rule.min_count < 0 else rule.min_count,
                baseline=rule.baseline or anomalies.baseline, sustain=rule.sustain or anomalies.sustain)
        rules.append(rule)
    return replace(alerts, rules=tuple(rules))


def missing_secrets(alerts: AlertSettings, environ: Mapping[str, str]) -> list[str]:
    """The environment variables the notifiers read their secrets from that ``environ`` lacks."""
    out = []
    for n in alerts.notifiers:
        wanted = [("url_env", getattr(n, "url_env", None)), ("routing_key_env", getattr(n, "routing_key_env", None)),
                  ("password_env", getattr(n, "password_env", None))]
        out += [f"notifier {n.name!r}: {key} names {var}, which is not set here" for key, var in wanted
                if var and not environ.get(var)]
    return out
