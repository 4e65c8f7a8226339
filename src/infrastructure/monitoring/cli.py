"""The ``monitoring`` command: parse the flags, call the library, print (``_views.py``).

Exit status, one meaning each:

* 0: success;
* 1: the answer is bad news: an alert fires (``alerts --check``), an objective is breached
  (``slo --check``), a file could not be cleaned, the shipper could not catch up; or, as grep
  has it, ``grep`` found nothing;
* 2: the question could not be asked: bad flags, a bad or incomplete configuration, a log
  folder that does not exist.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from dependency_injector import providers

from . import _views as views
from ._parsers import format_size, parse_duration
from ._validate import collecting_errors
from .config import MonitoringSettings, load_settings
from .di_config import MonitoringContainer
from .errors import MonitoringError, QueryError
from .factory import PerformanceMonitorFactory
from .ops_config import missing_secrets

__all__ = ["main"]

_FLAGS = {"last": "--last", "since": "--since", "until": "--until", "order_by": "--order-by",
          "max_groups": "--max-groups", "where": "--where", "aggs": "--agg", "bucket": "--bucket",
          "group_by": "--group-by"}


class Problem(click.ClickException):
    """The question could not be asked (a configuration or a folder at fault): exit 2, as for bad flags."""

    exit_code = 2


class _EchoWarnings(logging.Handler):
    """The library's warnings (a field that occurs nowhere, a damaged file) as ``warning: ...`` on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {self.format(record)}", err=True)


def _usage(exc: QueryError) -> click.UsageError:
    """A query error in the command line's words: ``--last``, not ``last``."""
    message = str(exc)
    named = [p for p in exc.params if re.search(rf"\b{p}\b", message)]
    for param in named:
        message = re.sub(rf"\b{param}\b", _FLAGS.get(param, param), message)
    if exc.params and not named:
        message = "/".join(_FLAGS.get(p, p) for p in exc.params) + f": {message}"
    return click.UsageError(message)


def _settings(config: str | None, log_dir: str | None, problems: list[str] | None = None) -> MonitoringSettings:
    overrides: dict[str, Any] = {"logging": {"log_dir": log_dir}} if log_dir else {}
    try:
        settings = load_settings(config, overrides=overrides, problems=problems)
    except MonitoringError as exc:
        raise Problem(str(exc)) from exc
    # the copies' module (and the query package around it) loads only where copies are used
    from .query.columnar import set_default_enabled  # the read side, loaded by the commands that read (~0.2 s)

    set_default_enabled(settings.query.columnar_cache)  # every query of this command follows the switch
    return settings


def _folder(settings: MonitoringSettings, log_dir: str | None) -> Path:
    """The log folder to read; a folder that does not exist is an error saying where it was looked
    for, what chose it and how to choose another (an empty answer would look like "no traffic")."""
    folder = settings.logging.log_dir
    if folder.is_dir():
        return folder
    origin = "--log-dir" if log_dir else settings.log_dir_origin
    if log_dir and not Path(log_dir).is_absolute():
        origin += f", relative to the working directory {Path.cwd()}"
    raise Problem(f"the log folder {folder} does not exist (chosen by {origin}). Point to the folder your "
                  "application writes with --log-dir DIR, the environment variable MONITORING_LOG_DIR or "
                  "logging.log_dir in the configuration; `monitoring demo` writes a sample one.")


def _read_folder(config: str | None, log_dir: str | None) -> Path:
    return _folder(_settings(config, log_dir), log_dir)


def _factory(settings: MonitoringSettings) -> PerformanceMonitorFactory:
    container = MonitoringContainer()
    container.settings.override(providers.Object(settings))
    return PerformanceMonitorFactory(container)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal (stderr), nothing when the output is piped."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console  # rich: only for a progress bar on a terminal
    from rich.progress import (  # rich: only for a progress bar on a terminal
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _write_atomically(target: Path, text: str) -> None:
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)


_config_option = click.option(
    "--config", "config", type=click.Path(dir_okay=False), default=None,
    help="YAML configuration (default: $MONITORING_CONFIG or configs/monitoring_logging.yaml).",
)
_log_dir_option = click.option("--log-dir", "log_dir", type=click.Path(file_okay=False), default=None,
                               help="Log folder, overriding the configuration.")
_sparklines_option = click.option("--sparklines/--no-sparklines", default=None,
                                  help="Trend lines beside the numbers (default: on a terminal only).")


@dataclass(frozen=True)
class _Source:
    """Where a reading command finds the records: the log folder, or the ClickHouse table."""

    url: str | None
    database: str | None
    kind: str | None

    @property
    def cluster(self) -> bool:
        if self.kind == "files" and self.url is not None:
            raise click.UsageError("--source files reads the log folder: leave out --clickhouse")
        if self.database is not None and self.url is None and self.kind is None:
            raise click.UsageError("--database names a ClickHouse database: give --clickhouse URL or "
                                   "--source clickhouse with it")
        return self.url is not None or self.kind == "clickhouse"


def _source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--clickhouse URL`` / ``--database DB`` / ``--source files|clickhouse``, handed to the command as
    one ``source``; a server that cannot answer is a problem (exit 2), as a missing folder is."""

    @functools.wraps(command)
    def run(*args: Any, clickhouse: str | None, database: str | None, source_kind: str | None, **kwargs: Any) -> Any:
        from .fleet.clickhouse import ClickHouseError  # ClickHouse: loaded only by the commands that talk to it

        try:
            return command(*args, source=_Source(clickhouse, database, source_kind), **kwargs)
        except ClickHouseError as exc:
            raise Problem(str(exc)) from exc

    for option in (
        click.option("--source", "source_kind", type=click.Choice(["files", "clickhouse"]), default=None,
                     help="Read the log folder (default) or the configured ClickHouse table (clickhouse: section)."),
        click.option("--database", default=None, help="ClickHouse database (default: clickhouse.database)."),
        click.option("--clickhouse", default=None, metavar="URL",
                     help="Read the fleet's ClickHouse table at this HTTP URL instead of the log folder "
                          "(user and password: clickhouse.user, MONITORING_CLICKHOUSE_USER / _PASSWORD)."),
    ):
        run = option(run)
    return run


def _records(settings: MonitoringSettings, log_dir: str | None, source: _Source) -> Any:
    """The records a reading command answers from: the log folder (which must exist), or the table."""
    if source.cluster:
        from .fleet.console import cluster_reader  # ClickHouse: loaded only by the commands that talk to it

        parser = cluster_reader(settings, source.url, source.database)
        click.get_current_context().call_on_close(parser.close)
        return parser
    from .query import LogParser  # the read side, loaded by the commands that read (~0.2 s)

    return LogParser(_folder(settings, log_dir))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-telemetry-logs")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Zero-memory telemetry for LLM applications: record metrics as JSON lines, then ask the logs.

    \b
    Exit status: 0 success; 1 bad news (an alert fires with `alerts --check`, an
    objective is breached with `slo --check`, a file could not be cleaned, `grep`
    found nothing); 2 the question could not be asked (bad flags, bad
    configuration, no log folder).
    """
    package = logging.getLogger("infrastructure.monitoring")
    handler = _EchoWarnings(logging.WARNING)
    package.addHandler(handler)
    ctx.call_on_close(lambda: package.removeHandler(handler))


# --------------------------------------------------------------------------- writing and housekeeping


@main.command()
@click.option("--seconds", type=click.FloatRange(0.1, 3600), default=3.0, show_default=True,
              help="How long to record live.")
@click.option("--history", default=None, metavar="SPAN",
              help="First write a realistic history reaching this far back (e.g. 6h, 2d): traces, a profile, "
                   "an alert that fires.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated workload.")
@_config_option
@_log_dir_option
def demo(seconds: float, history: str | None, seed: int, config: str | None, log_dir: str | None) -> None:
    """Record a realistic LLM/agent workload into the log folder, then report on it."""
    from ._demo import run_demo  # the demo workload: only `demo` loads it
    from .query import LogParser  # the read side, loaded by the commands that read (~0.2 s)
    from .query.reports import build_report  # the read side, loaded by the commands that read (~0.2 s)

    span = None
    if history is not None:
        try:
            span = parse_duration(history)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--history") from exc
    settings = _settings(config, log_dir)
    if not settings.enabled:
        raise Problem("monitoring is switched off (enabled: false or MONITORING_ENABLED=0)")
    folder = settings.logging.log_dir
    before = {p.name: p.stat().st_size for p in folder.glob("*")} if folder.is_dir() else {}
    factory = _factory(settings)
    what = f"{history} of history, then {seconds:g}s live" if history else f"{seconds:g}s"
    views.say(f"Recording a simulated LLM/agent workload ({what}) into {folder}/ ...")
    try:
        result = run_demo(factory, seconds, seed=seed, history=span)
    finally:
        factory.shutdown()
    views.say(f"Recorded {result.records:,} records in {result.seconds:.1f}s; each line is one JSON record:")
    views.print_files(folder, before)
    parser = LogParser(folder)
    report = build_report(parser, hours=(span or max(seconds, 60)) / 3600 + 1 / 60)
    views.print_report(report)
    views.say()
    for line in views.NEXT_STEPS:
        views.say(line)


@main.command("validate-config")
@_config_option
def validate_config(config: str | None) -> None:
    """Check the configuration and the environment; every problem is listed (exit 2 on any)."""
    from .alerts.engine import describe_rules  # the alert engine: only the commands that need it load it

    problems: list[str] = []
    with collecting_errors() as errors:
        settings = _settings(config, None, problems)
    for error in errors:
        click.echo(f"error: {error}", err=True)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    log = settings.logging
    rotation, cleanup = log.rotation, settings.log_cleanup
    lines = [
        f"configuration: {settings.source}",
        f"enabled: {settings.enabled}",
        f"log_dir: {log.log_dir} (chosen by {settings.log_dir_origin})",
        f"rotation: max_bytes={rotation.max_bytes} backup_count={rotation.backup_count} when={rotation.when}",
        "modules: " + ", ".join(f"{k}->{v.file}" + ("" if v.enabled else " (off)") for k, v in log.modules.items()),
        f"log_cleanup: enabled={cleanup.enabled} retention_days={cleanup.retention_days:g} "
        f"dry_run={cleanup.dry_run} every {cleanup.check_interval_hours:g}h patterns={list(cleanup.log_patterns)}",
    ]
    extras = {"max_total_size": cleanup.max_total_size, "compress_after_days": cleanup.compress_after_days,
              "min_free_space": cleanup.min_free_space}
    if any(v is not None for v in extras.values()):
        lines.append("  " + " ".join(f"{k}={v}" for k, v in extras.items() if v is not None))
    pricing, alerts, system = settings.pricing, settings.alerts, settings.system_metrics
    lines += [
        f"system_metrics: enabled={system.enabled} every {system.interval_seconds:g}s",
        f"pricing: {len(pricing.models)} models, version={pricing.version}, currency={pricing.currency}",
        f"tracing: sample_rate={settings.tracing.sample_rate:g}",
        f"alerts: enabled={alerts.enabled} {len(alerts.rules)} rules every {alerts.interval_seconds:g}s, "
        f"notifiers: {', '.join(f'{n.name} ({n.kind})' for n in alerts.notifiers) or 'none'}, "
        f"{len(alerts.routes)} routes, group_wait={alerts.group_wait:g}s group_interval={alerts.group_interval:g}s",
        *(f"  {line}" for line in describe_rules(alerts.rules)),
        *(f"  note: {line}" for line in missing_secrets(alerts, os.environ)),
        f"global labels: {settings.global_labels or 'none'}",
        f"slos: {', '.join(f'{s.name} ({s.objective} {s.target:g})' for s in settings.slos) or 'none'}",
        f"server: {settings.server.host}:{settings.server.port} buckets={list(settings.server.buckets)}",
        f"otlp: enabled={settings.otlp.enabled} endpoint={settings.otlp.endpoint} "
        f"modules={list(settings.otlp.modules)}",
        f"clickhouse: ship={settings.clickhouse.ship} {settings.clickhouse.url} "
        f"{settings.clickhouse.database}.{settings.clickhouse.table} cluster={settings.clickhouse.cluster} "
        f"ttl={settings.clickhouse.ttl}",
    ]
    for line in lines:
        click.echo(line)
    if errors or problems:
        click.echo(f"{len(errors)} errors, {len(problems)} warnings", err=True)
        sys.exit(2)


@main.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Retention in days for this run (default: log_cleanup.retention_days).")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted or compressed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_config_option
@_log_dir_option
def cleanup(days: float | None, dry_run: bool, as_json: bool, config: str | None, log_dir: str | None) -> None:
    """Apply the retention rules to the log folder once (exit 1 if a file could not be handled)."""
    settings = _settings(config, log_dir)
    factory = _factory(settings)
    try:
        result = factory.force_log_cleanup(dry_run=True if dry_run else None, retention_days=days)
    except MonitoringError as exc:
        raise Problem(str(exc)) from exc
    finally:
        factory.shutdown()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        views.print_cleanup(result, days if days is not None else settings.log_cleanup.retention_days)
    if result.errors:
        sys.exit(1)


@main.command()
@click.option("--system-interval", type=click.FloatRange(min=0.05), default=None,
              help="Also record a system snapshot every SECONDS (default: system_metrics in the config).")
@click.option("--interval-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Cleanup interval, overriding log_cleanup.check_interval_hours.")
@_config_option
@_log_dir_option
def run(system_interval: float | None, interval_hours: float | None, config: str | None, log_dir: str | None) -> None:
    """Run the scheduled jobs (cleanup, sampling, alerts, exports) in the foreground until SIGINT or SIGTERM;
    SIGHUP reloads the configuration (a bad new file is reported and the running one kept)."""
    overrides: dict[str, Any] = {}
    if log_dir:
        overrides["logging"] = {"log_dir": log_dir}
    if system_interval is not None:
        overrides["system_metrics"] = {"enabled": True, "interval_seconds": system_interval}
    if interval_hours is not None:
        overrides["log_cleanup"] = {"check_interval_hours": interval_hours}
    try:
        settings = load_settings(config, overrides=overrides)
    except MonitoringError as exc:
        raise Problem(str(exc)) from exc
    stop, reload = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            reload.set()
            return
        click.echo(f"received {signal.Signals(signum).name}, stopping ...")
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    factory, runs = _factory(settings), 0
    try:
        service = _start_jobs(factory, settings)
        click.echo("press Ctrl+C to stop; SIGHUP reloads the configuration", err=True)
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                try:
                    fresh = load_settings(config, overrides=overrides)
                except MonitoringError as exc:
                    click.echo(f"error: the new configuration was refused, the running one stays: {exc}", err=True)
                    continue
                runs += service.runs
                factory.shutdown()
                factory, settings = _factory(fresh), fresh
                service = _start_jobs(factory, settings)
        runs += service.runs
    finally:
        factory.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"stopped cleanly after {runs} cleanup runs")


def _start_jobs(factory: PerformanceMonitorFactory, settings: MonitoringSettings) -> Any:
    service = factory.get_scheduled_cleaner(start=False)
    service.first_run_delay = 1.0  # a process of its own: nothing else to let start up first
    service.build_copies = True  # the dedicated process makes the columnar copies (query.columnar_cache)
    service.start()
    click.echo(f"monitoring jobs running for {settings.logging.log_dir} ({settings.source}): {service.describe()}")
    return service


# --------------------------------------------------------------------------- reading the logs


@main.command()
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="Window: the last N hours.")
@click.option("--all", "everything", is_flag=True, help="Everything in the files, whatever its age.")
@click.option("--module", default=None, help="Only this module's section(s): llm, tool, checkpoint, task, system.")
@click.option("--session", "session_id", default=None, help="Summary of one agent session instead.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_sparklines_option
@_config_option
@_log_dir_option
@_source_options
def report(hours: float, everything: bool, module: str | None, session_id: str | None, fmt: str,
           sparklines: bool | None, config: str | None, log_dir: str | None, source: _Source) -> None:
    """Usage of LLMs, tools, checkpoints, tasks and the system over a window, from the logs (or the fleet's
    table: group by host with `query --group-by host`)."""
    from .query.reports import (  # the read side, loaded by the commands that read (~0.2 s)
        build_report,
        report_json,
        report_trends,
    )

    settings = _settings(config, log_dir)
    if session_id is not None and source.cluster:
        raise click.UsageError("--session reads the log folder; leave out --clickhouse / --source clickhouse")
    parser = _records(settings, log_dir, source)
    if session_id is not None:
        from .query.sessions import session_summary  # the read side, loaded by the commands that read (~0.2 s)

        summary = session_summary(parser.log_dir, session_id)
        if fmt == "json":
            click.echo(json.dumps(summary, indent=2, default=str))
        else:
            views.print_session(summary)
        return
    a = settings.anomalies
    anomalies = None if everything else {"window": a.window, "baseline": a.baseline, "k": a.k,
                                         "sustain": a.sustain, "min_count": a.min_count}
    try:
        with _progress("reading logs") as progress:
            result = build_report(parser, hours=None if everything else hours, module=module, progress=progress,
                                  anomalies=anomalies)
    except QueryError as exc:
        raise _usage(exc) from exc
    if fmt == "json":
        click.echo(json.dumps(report_json(result), indent=2))
        return
    show = sys.stdout.isatty() if sparklines is None else sparklines
    views.print_report(result, trends=report_trends(parser, result) if show else None)


@main.command()
@click.option("--module", "modules", multiple=True, help="Module (family) to read; repeatable; default all.")
@click.option("--operation", "operations", multiple=True, help="Only these operations; repeatable.")
@click.option("--where", "wheres", multiple=True, metavar="FIELD=VALUE",
              help="Filter: FIELD=VALUE (or ==), FIELD!=VALUE, FIELD<N, FIELD>N, FIELD<=N, FIELD>=N, "
                   "'FIELD in A,B', 'FIELD~REGEX'; repeatable.")
@click.option("--since", default=None, help="Start (epoch seconds or ISO 8601).")
@click.option("--until", default=None, help="End, exclusive (epoch seconds or ISO 8601).")
@click.option("--last", default=None, help="The last span, e.g. 15m, 1h, 7d.")
@click.option("--group-by", "group_by", multiple=True, help="Group by this field; repeatable.")
@click.option("--bucket", default=None, help="Also group by time bucket: 1m, 5m, 1h, 1d ...")
@click.option("--agg", "aggs", multiple=True,
              help="count, sum:F, avg:F, min:F, max:F, pNN:F (p95:response_time), error_rate, errors, rate, "
                   "latest:F, count_if:F=V; repeatable (default: count).")
@click.option("--order-by", default=None, help="Sort by this aggregate or field (descending).")
@click.option("--asc", is_flag=True, help="Sort ascending.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep the first N rows (top-N).")
@click.option("--max-groups", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Beyond this many groups, the smaller ones fold into one __other__ row.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_sparklines_option
@_config_option
@_log_dir_option
@_source_options
def query(modules: tuple[str, ...], operations: tuple[str, ...], wheres: tuple[str, ...], since: str | None,
          until: str | None, last: str | None, group_by: tuple[str, ...], bucket: str | None, aggs: tuple[str, ...],
          order_by: str | None, asc: bool, limit: int | None, max_groups: int, fmt: str, sparklines: bool | None,
          config: str | None, log_dir: str | None, source: _Source) -> None:
    """Filter, group and aggregate records; prints a table, a JSON array of rows or CSV.

    \b
    Example: monitoring query --module llm --last 1h --group-by model \\
                 --agg count --agg p95:response_time --agg error_rate --format json
    """
    parser = _records(_settings(config, log_dir), log_dir, source)
    try:
        with _progress("scanning") as progress:
            result = parser.query(
                list(modules) or None, operation=list(operations) or None, where=list(wheres), since=since,
                until=until, last=last, group_by=list(group_by), bucket=bucket, aggs=list(aggs) or ["count"],
                order_by=order_by, descending=not asc, limit=limit, max_groups=max_groups, progress=progress,
            )
    except QueryError as exc:
        raise _usage(exc) from exc
    show = (sys.stdout.isatty() and fmt == "table") if sparklines is None else sparklines
    views.print_query(result, fmt, max_groups=max_groups, sparklines=show)


@main.command()
@click.option("--module", default="llm", show_default=True, help="Family to follow.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("-f", "--follow", "keep", is_flag=True, help="Keep printing new lines, across rotations.")
@_config_option
@_log_dir_option
def tail(module: str, lines: int, keep: bool, config: str | None, log_dir: str | None) -> None:
    """The last lines of a family's live file; with -f, every new line as it is written."""
    from .query.storage import follow  # the read side, loaded by the commands that read (~0.2 s)

    folder = _read_folder(config, log_dir)
    out = sys.stdout.buffer
    try:
        for line in follow(folder, module, lines=lines, keep_going=lambda: keep):
            out.write(line + b"\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        sys.stderr.close()


@main.command()
@click.argument("pattern")
@click.option("--module", "modules", multiple=True, help="Only this family; repeatable; default all.")
@click.option("--field", default=None, help="Match this field's text instead of the whole line.")
@click.option("--where", "wheres", multiple=True, metavar="FIELD=VALUE", help="Also filter, as in query; repeatable.")
@click.option("--since", default=None, help="Start (epoch seconds or ISO 8601).")
@click.option("--until", default=None, help="End, exclusive (epoch seconds or ISO 8601).")
@click.option("--last", default=None, help="The last span, e.g. 15m, 1h, 7d.")
@click.option("-i", "--ignore-case", "ignore_case", is_flag=True, help="Ignore case, as (?i) does.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the N most recent matches.")
@_config_option
@_log_dir_option
def grep(pattern: str, modules: tuple[str, ...], field: str | None, wheres: tuple[str, ...], since: str | None,
         until: str | None, last: str | None, ignore_case: bool, limit: int | None, config: str | None,
         log_dir: str | None) -> None:
    """Print the records whose line (or --field) matches the regular expression PATTERN, one JSON
    line each, oldest first, across rotated and .gz files.

    \b
    Exit status as grep's: 0 something matched, 1 nothing did, 2 a bad pattern, flag or folder.
    Example: monitoring grep 'rate.?limit' --module llm --last 1h
    """
    import orjson  # the reading side loads when a reading command runs, not with every command

    from .query import LogParser, SkipReport  # (the same)
    from .query.search import search  # (the same)

    parser, skipped, found = LogParser(_read_folder(config, log_dir)), SkipReport(), 0
    out = sys.stdout.buffer
    try:
        for record in search(parser, pattern, module=list(modules) or None, field=field, where=wheres, since=since,
                             until=until, last=last, ignore_case=ignore_case, limit=limit, skipped=skipped):
            out.write(orjson.dumps(record) + b"\n")
            found += 1
        out.flush()
    except QueryError as exc:
        raise _usage(exc) from exc
    except BrokenPipeError:
        sys.stderr.close()
        return
    views.print_skipped(skipped)
    if not found:
        sys.exit(1)


@main.command()
@_config_option
@_log_dir_option
@_source_options
def status(config: str | None, log_dir: str | None, source: _Source) -> None:
    """Storage at a glance: families, files, sizes, records and skipped lines, free disk, writer faults
    (with --clickhouse: the table's modules, hosts, time span and parts)."""
    from .fleet.progress import shipping_status  # only its state file: no HTTP code
    from .query.storage import folder_status  # the read side, loaded by the commands that read (~0.2 s)

    if source.cluster:
        from .fleet.console import print_table_status  # ClickHouse: loaded only by the commands that talk to it

        print_table_status(_records(_settings(config, log_dir), log_dir, source).status())
        return
    state = folder_status(_read_folder(config, log_dir))
    views.print_status(state)
    shipping = shipping_status(state.log_dir)
    for line in shipping.lines() if shipping is not None else []:
        click.echo(line)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "prometheus"]), required=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, allow_dash=True), required=True,
              help="File to write (written whole, then renamed into place); - for standard output.")
@_config_option
@_log_dir_option
def export(fmt: str, hours: float, output: str, config: str | None, log_dir: str | None) -> None:
    """Write the report of the last N hours as JSON, CSV or Prometheus text."""
    from .query import LogParser  # the read side, loaded by the commands that read (~0.2 s)
    from .query.reports import (  # the read side, loaded by the commands that read (~0.2 s)
        build_report,
        prometheus_text,
        report_csv,
        report_json,
    )

    settings = _settings(config, log_dir)
    result = build_report(LogParser(_folder(settings, log_dir)), hours=hours, metrics=True)
    if fmt == "json":
        text = json.dumps(report_json(result), indent=2) + "\n"
    elif fmt == "csv":
        text = report_csv(result)
    else:
        text = prometheus_text(result, labels=settings.global_labels)
    if output == "-":
        click.echo(text, nl=False)
        return
    _write_atomically(Path(output), text)
    click.echo(f"wrote {output} ({len(result.sections)} sections, {format_size(len(text.encode()))})", err=True)


@main.command()
@click.option("--type", "kind", type=click.Choice(["function", "memory", "io", "cpu"]), default=None,
              help="Only profiles of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_config_option
@_log_dir_option
def profiles(kind: str | None, limit: int, config: str | None, log_dir: str | None) -> None:
    """Recent profiles (written by @profile, profile_context and start_profiling), newest first."""

    from .query import LogParser  # the read side, loaded by the commands that read (~0.2 s)

    parser = LogParser(_read_folder(config, log_dir))
    if "profile" not in parser.modules():
        click.echo("no profiles recorded")
        return
    where = ["operation=profile", *([f"kind={kind}"] if kind else [])]
    views.print_profiles(list(reversed(deque(parser.records("profile", where=where), maxlen=limit))))


@main.command()
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many recent traces.")
@click.option("--trace", "trace_id", default=None, help="Show only this trace id.")
@_config_option
@_log_dir_option
def traces(limit: int, trace_id: str | None, config: str | None, log_dir: str | None) -> None:
    """Recent traces as indented trees, with durations and status."""
    from .query import LogParser  # the read side, loaded by the commands that read (~0.2 s)
    from .query.traces import recent_traces  # the read side, loaded by the commands that read (~0.2 s)

    found = recent_traces(LogParser(_read_folder(config, log_dir)), limit=limit, trace_id=trace_id)
    if not found:
        click.echo("no traces recorded" if trace_id is None else f"no trace {trace_id}")
        return
    views.print_traces(found)


# --------------------------------------------------------------------------- alerts, SLOs


@main.command()
@click.option("--check", is_flag=True, help="Evaluate the rules once now; exit 1 when an alert fires.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="How far back the list of recent transitions goes.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_log_dir_option
@_source_options
def alerts(check: bool, hours: float, fmt: str, config: str | None, log_dir: str | None, source: _Source) -> None:
    """Current and recent alerts; with --check, evaluate the rules first (for cron and CI). With --clickhouse
    the rules read the fleet's table; the alerts' state and transitions stay in the log folder."""
    settings = _settings(config, log_dir)
    parser = _records(settings, log_dir, source)
    if check and not settings.alerts.rules:
        raise Problem(f"no alert rules in {settings.source} (add an alerts.rules list)")
    settings.logging.log_dir.mkdir(parents=True, exist_ok=True)  # the state's folder (it exists for the files)
    factory = _factory(settings)
    try:
        evaluator = factory.get_alert_evaluator(parser=parser)
        errors: list[str] = evaluator.evaluate().errors if check else []
        current = evaluator.current()
        recent = evaluator.recent(hours=hours)
    finally:
        factory.shutdown()
    if fmt == "json":
        click.echo(json.dumps({"current": current, "recent": recent, "errors": errors}, indent=2, default=str))
    else:
        views.print_alerts(current, recent, errors, hours)
    if check and (errors or any(a.get("state") == "firing" for a in current)):
        sys.exit(1)


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 when an objective is breached.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_log_dir_option
@_source_options
def slo(check: bool, fmt: str, config: str | None, log_dir: str | None, source: _Source) -> None:
    """Each SLO target of the config: measured over its period, error budget left, burn rate."""
    from .alerts.slo import evaluate_slos  # the alert engine: only the commands that need it load it

    settings = _settings(config, log_dir)
    if not settings.slos:
        raise Problem(f"no SLO targets in {settings.source} (add an slos list)")
    statuses = evaluate_slos(_records(settings, log_dir, source), settings.slos)
    rows = [s.as_row() for s in statuses]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        views.print_slos(rows)
    if check and any(row.get("status") == "breached" for row in rows):
        sys.exit(1)


# --------------------------------------------------------------------------- dashboard and server


@main.command()
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the self-contained HTML page here (works offline).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 366), default=6.0, show_default=True)
@click.option("--until", default=None, help="End of the window (epoch or ISO 8601; default now): a past incident.")
@click.option("--grafana", "grafana_file", type=click.Path(dir_okay=False), default=None,
              help="Also (or only) write a Grafana dashboard JSON for the /metrics series.")
@_config_option
@_log_dir_option
@_source_options
def dashboard(output: str | None, hours: float, until: str | None, grafana_file: str | None, config: str | None,
              log_dir: str | None, source: _Source) -> None:
    """Write the dashboard of the last N hours as one HTML file, and/or a Grafana dashboard."""
    if output is None and grafana_file is None:
        raise click.UsageError("give --output FILE (HTML) and/or --grafana FILE (JSON)")
    if grafana_file is not None:
        from .exporters.grafana import grafana_dashboard  # only with --grafana

        _write_atomically(Path(grafana_file), json.dumps(grafana_dashboard(), indent=2) + "\n")
        click.echo(f"wrote {grafana_file} (Grafana dashboard; pick the Prometheus data source on import)")
    if output is not None:
        from .query.spec import parse_time  # the read side, loaded by the commands that read (~0.2 s)
        from .web.dashboard import (
            render_dashboard,  # the dashboard and its server: only `dashboard` and `serve` load them
        )
        from .web.data import dashboard_data  # the dashboard and its server: only `dashboard` and `serve` load them

        try:
            end = parse_time(until)
        except QueryError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from exc
        settings = _settings(config, log_dir)
        parser = _records(settings, log_dir, source)
        data = dashboard_data(settings.logging.log_dir, hours=hours, now=end, settings=settings, parser=parser)
        _write_atomically(Path(output), render_dashboard(data))
        series = sum(len(c["series"]) for c in data["charts"])
        click.echo(f"wrote {output} ({len(data['charts'])} charts, {series} series, {data['seconds']:.2f}s)")


@main.command()
@click.option("--host", default=None, help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: server.port, 9464).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 366), default=6.0, show_default=True,
              help="Default window of the dashboard.")
@click.option("--jobs", is_flag=True,
              help="Also run the scheduled jobs (cleanup, alert evaluation, OTLP export), as `monitoring run` does.")
@_config_option
@_log_dir_option
@_source_options
def serve(host: str | None, port: int | None, hours: float, jobs: bool, config: str | None,
          log_dir: str | None, source: _Source) -> None:
    """Serve the live dashboard, the JSON API and Prometheus /metrics until interrupted; SIGHUP reloads the
    configuration. With --clickhouse the dashboard and /api/status answer from the fleet's table (/metrics
    and the alerts stay this host's)."""
    from .web.server import DashboardServer  # the dashboard and its server: only `dashboard` and `serve` load them

    settings = _settings(config, log_dir)
    parser = _records(settings, log_dir, source) if source.cluster else None
    try:
        server = DashboardServer(settings, host=host, port=port, hours=hours, parser=parser)
    except MonitoringError as exc:  # a non-loopback address without credentials, a too-short secret
        raise Problem(f"refusing to serve: {exc}") from exc
    except OSError as exc:
        raise Problem(f"cannot listen on {host or settings.server.host}:{port}: {exc}") from exc

    factory = _factory(settings) if jobs else None

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    def reload(*_: Any) -> None:
        nonlocal factory
        try:
            fresh = load_settings(config, overrides={"logging": {"log_dir": log_dir}} if log_dir else {})
            server.reload(fresh)
        except MonitoringError as exc:
            click.echo(f"error: the new configuration was refused, the running one stays: {exc}", err=True)
            return
        if factory is not None:
            factory.shutdown()
            factory = _factory(fresh)
            factory.get_scheduled_cleaner()
        click.echo(f"reloaded the configuration from {fresh.source}", err=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    if factory is not None:
        service = factory.get_scheduled_cleaner()
        click.echo(f"jobs: {service.describe()}", err=True)
    click.echo(f"serving {settings.logging.log_dir} on {server.url}  (/ /api/status /api/metrics /api/events "
               "/api/alerts /metrics)", err=True)
    creds = server.credentials
    access = " and ".join([*(["a bearer token"] if creds.token else []), *(["basic auth"] if creds.basic else [])])
    click.echo(f"access: {access} required (/healthz open)" if access else
               "access: open, loopback only (set MONITORING_SERVER_TOKEN to require a token)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        if factory is not None:
            factory.shutdown()


# --------------------------------------------------------------------------- the fleet


@main.command()
@click.option("--clickhouse", "url", default=None, help="ClickHouse's HTTP interface (default: clickhouse.url).")
@click.option("--database", default=None, help="Database of the table (default: clickhouse.database).")
@click.option("--once", is_flag=True, help="Ship what the folder holds now, then exit (0 when caught up).")
@click.option("--print-schema", "schema", is_flag=True, help="Print the statements that create the table; exit.")
@click.option("--dialect", type=click.Choice(["current", "legacy"]), default=None,
              help="With --print-schema: the layout (default: the server's; legacy is for servers before 21.8).")
@_config_option
@_log_dir_option
def ship(url: str | None, database: str | None, once: bool, schema: bool, dialect: str | None, config: str | None,
         log_dir: str | None) -> None:
    """Ship the log folder to ClickHouse, exactly once per line; follow new lines until Ctrl+C unless --once."""
    from .fleet.console import print_schema, ship_command, ship_settings  # the shipper, loaded by its command

    settings = _settings(config, log_dir)
    chosen = ship_settings(settings, url, database)
    if schema:
        print_schema(chosen, settings.log_cleanup.retention_days, dialect)
    else:
        ship_command(settings, chosen, once=once)


# --------------------------------------------------------------------------- columnar copies


@main.group()
def cache() -> None:
    """Columnar (Parquet) copies of settled log files, which long-window queries read instead of JSON."""


@cache.command("build")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Start no new file after this long (default: build everything pending).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file handled.")
@_config_option
@_log_dir_option
def cache_build(max_seconds: float | None, as_json: bool, config: str | None, log_dir: str | None) -> None:
    """Build the missing copies now, one file at a time (queries never wait for this)."""
    # the copies' module (and the query package around it) loads only where copies are used
    from .query import columnar  # the read side, loaded by the commands that read (~0.2 s)

    settings = _settings(config, log_dir)
    folder = _folder(settings, log_dir)
    if not settings.query.columnar_cache:
        raise Problem("columnar copies are switched off (query.columnar_cache: false); nothing built")
    results = columnar.build_pending(folder, max_seconds=max_seconds,
                                     memory_limit=f"{max(16, settings.query.build_memory >> 20)}MB")
    for r in results:
        if as_json:
            click.echo(json.dumps({"file": r.path, "built": r.built, "reason": r.reason, "seconds": r.seconds,
                                   "source_bytes": r.source_bytes, "copy_bytes": r.copy_bytes}))
        elif r.built:
            click.echo(f"built  {r.path}  {format_size(r.source_bytes)} -> {format_size(r.copy_bytes)} "
                       f"in {r.seconds:.2f}s")
        else:
            click.echo(f"skip   {r.path}  ({r.reason})")
    if not as_json:
        done = columnar.status(folder)
        click.echo(f"{sum(1 for r in results if r.built)} copies built; {done.covered_files} of {done.files} "
                   f"settled files covered, {len(done.pending)} pending")


@cache.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the coverage as one JSON object.")
@_config_option
@_log_dir_option
def cache_status(as_json: bool, config: str | None, log_dir: str | None) -> None:
    """Coverage: settled files and bytes with a copy, the copies' size, what is pending."""
    # the copies' module (and the query package around it) loads only where copies are used
    from .query import columnar  # the read side, loaded by the commands that read (~0.2 s)

    settings = _settings(config, log_dir)
    found = columnar.status(_folder(settings, log_dir))
    if as_json:
        click.echo(json.dumps({**found.to_dict(), "enabled": settings.query.columnar_cache}, indent=2))
        return
    state = "on" if settings.query.columnar_cache else "OFF (query.columnar_cache: false; queries read JSON)"
    share = found.covered_bytes / found.bytes if found.bytes else 1.0
    covered = found.covered_bytes + found.live_covered_bytes
    ratio = f" ({found.copy_bytes / covered:.1%} of the JSON they cover)" if covered else ""
    click.echo(f"columnar copies in {found.log_dir}: {state}")
    click.echo(f"  settled files  {found.covered_files} of {found.files} covered, "
               f"{format_size(found.covered_bytes)} of {format_size(found.bytes)} ({share:.0%})")
    click.echo(f"  copies         {format_size(found.copy_bytes)}{ratio}")
    click.echo(f"  pending        {len(found.pending)} files, {format_size(found.pending_bytes)}")
    for path in found.pending[:10]:
        click.echo(f"                 {path}")
    if found.unsupported:
        click.echo(f"  read as JSON   {len(found.unsupported)} files ({found.unsupported[0][1]}, ...)")
    click.echo(f"  live files     {found.live_files}, {format_size(found.live_bytes)}: "
               f"{format_size(found.live_covered_bytes)} through prefix copies, the rest read as JSON")


if __name__ == "__main__":  # pragma: no cover
    main()
