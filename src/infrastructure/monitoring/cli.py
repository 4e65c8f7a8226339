"""The ``monitoring`` command: a thin layer that parses, calls the library and prints.

Exit status: 0 success, 1 an error the user can fix (bad config), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from dependency_injector import providers

from ._parsers import format_size
from .config import MonitoringSettings, load_settings
from .di_config import MonitoringContainer
from .errors import MonitoringError
from .factory import PerformanceMonitorFactory
from .log_cleaner import CleanupResult

__all__ = ["main"]


def _settings(config: str | None, log_dir: str | None, problems: list[str] | None = None) -> MonitoringSettings:
    overrides: dict[str, Any] = {"logging": {"log_dir": log_dir}} if log_dir else {}
    try:
        return load_settings(config, overrides=overrides, problems=problems)
    except MonitoringError as exc:
        raise click.ClickException(str(exc)) from exc


def _factory(settings: MonitoringSettings) -> PerformanceMonitorFactory:
    container = MonitoringContainer()
    container.settings.override(providers.Object(settings))
    return PerformanceMonitorFactory(container)


_human = format_size


_config_option = click.option(
    "--config", "config", type=click.Path(dir_okay=False), default=None,
    help="YAML configuration (default: $MONITORING_CONFIG or configs/monitoring_logging.yaml).",
)
_log_dir_option = click.option("--log-dir", "log_dir", type=click.Path(file_okay=False), default=None,
                               help="Log folder, overriding the configuration.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-telemetry-logs")
def main() -> None:
    """Zero-memory telemetry for LLM applications: record metrics as JSON lines, then ask the logs."""


@main.command()
@click.option("--seconds", type=click.FloatRange(0.1, 3600), default=3.0, show_default=True,
              help="How long to record.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated workload.")
@_config_option
@_log_dir_option
def demo(seconds: float, seed: int, config: str | None, log_dir: str | None) -> None:
    """Record a few seconds of a realistic LLM/agent workload into the log folder."""
    from ._demo import run_demo

    settings = _settings(config, log_dir)
    if not settings.enabled:
        raise click.ClickException("monitoring is switched off (enabled: false or MONITORING_ENABLED=0)")
    folder = settings.logging.log_dir
    sizes_before = {p.name: p.stat().st_size for p in folder.glob("*")} if folder.is_dir() else {}
    factory = _factory(settings)
    click.echo(f"Recording a simulated LLM/agent workload for {seconds:g}s into {folder}/ ...")
    try:
        result = run_demo(factory, seconds, seed=seed)
    finally:
        factory.shutdown()
    click.echo(f"Recorded {result.records} records in {result.seconds:.1f}s:")
    rows = []
    for path in sorted(folder.glob("*_metrics.log")):
        grown = path.stat().st_size - sizes_before.get(path.name, 0)
        lines = _count_lines(path)
        rows.append((str(path), lines, _human(path.stat().st_size), _human(max(grown, 0))))
    width = max((len(r[0]) for r in rows), default=10)
    click.echo(f"  {'file':<{width}}  {'lines':>7}  {'size':>10}  {'added':>10}")
    for name, lines, size, added in rows:
        click.echo(f"  {name:<{width}}  {lines:>7}  {size:>10}  {added:>10}")
    click.echo(f"Each line is one JSON record; try:  tail -n 3 {folder}/llm_metrics.log")
    from .query import LogParser
    from .query.reports import build_report

    click.echo()
    print_report(build_report(LogParser(folder), hours=max(seconds, 60) / 3600 + 1 / 60))


def _count_lines(path: Path) -> int:
    from .query.storage import count_lines

    return count_lines(path)


@main.command("validate-config")
@_config_option
def validate_config(config: str | None) -> None:
    """Load the configuration and the environment; exit 1 on any problem."""
    problems: list[str] = []
    settings = _settings(config, None, problems)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    log = settings.logging
    click.echo(f"configuration: {settings.source}")
    click.echo(f"enabled: {settings.enabled}")
    click.echo(f"log_dir: {log.log_dir}")
    rotation = log.rotation
    click.echo(f"rotation: max_bytes={rotation.max_bytes} backup_count={rotation.backup_count} when={rotation.when}")
    modules = ", ".join(f"{k}->{v.file}" + ("" if v.enabled else " (off)") for k, v in log.modules.items())
    click.echo(f"modules: {modules}")
    cleanup = settings.log_cleanup
    click.echo(f"log_cleanup: enabled={cleanup.enabled} retention_days={cleanup.retention_days:g} "
               f"dry_run={cleanup.dry_run} every {cleanup.check_interval_hours:g}h "
               f"patterns={list(cleanup.log_patterns)}")
    extras = {"max_total_size": cleanup.max_total_size, "compress_after_days": cleanup.compress_after_days,
              "min_free_space": cleanup.min_free_space}
    if any(v is not None for v in extras.values()):
        click.echo("  " + " ".join(f"{k}={v}" for k, v in extras.items() if v is not None))
    system = settings.system_metrics
    click.echo(f"system_metrics: enabled={system.enabled} every {system.interval_seconds:g}s")
    pricing = settings.pricing
    click.echo(f"pricing: {len(pricing.models)} models, version={pricing.version}, currency={pricing.currency}")
    click.echo(f"tracing: sample_rate={settings.tracing.sample_rate:g}")
    alerts = settings.alerts
    kinds = ", ".join(n.kind for n in alerts.notifiers) or "none"
    click.echo(f"alerts: enabled={alerts.enabled} {len(alerts.rules)} rules every {alerts.interval_seconds:g}s, "
               f"notifiers: {kinds}")
    from .alerts.engine import describe_rules

    for line in describe_rules(alerts.rules):
        click.echo(f"  {line}")
    click.echo(f"slos: {', '.join(f'{s.name} ({s.objective} {s.target:g})' for s in settings.slos) or 'none'}")
    server, otlp = settings.server, settings.otlp
    click.echo(f"server: {server.host}:{server.port} buckets={list(server.buckets)}")
    click.echo(f"otlp: enabled={otlp.enabled} endpoint={otlp.endpoint} modules={list(otlp.modules)}")
    if problems:
        sys.exit(1)


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
        raise click.ClickException(str(exc)) from exc
    finally:
        factory.shutdown()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_cleanup(result, days if days is not None else settings.log_cleanup.retention_days)
    if result.errors:
        sys.exit(1)


def _print_cleanup(result: CleanupResult, days: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if result.skipped:
        console.print(f"Cleanup of {result.log_dir} skipped: {result.skipped}")
        return
    would = result.dry_run
    console.print(f"{'Dry run: ' if would else ''}cleanup of {result.log_dir} (retention {days:g} days)")
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files scanned", str(result.files_scanned))
    table.add_row("would delete" if would else "deleted", f"{result.files_deleted} ({_human(result.bytes_freed)})")
    if result.files_retired:
        table.add_row("idle live files retired", str(result.files_retired))
    if result.files_compressed:
        saved = "" if would else f" (saved {_human(result.bytes_saved)})"
        table.add_row("would compress" if would else "compressed", f"{result.files_compressed}{saved}")
    if result.symlinks_skipped:
        table.add_row("symlinks left alone", str(result.symlinks_skipped))
    if result.files_changed:
        table.add_row("changed meanwhile (next run)", str(result.files_changed))
    table.add_row("errors", str(result.errors), style="red" if result.errors else None)
    table.add_row("remaining in matched files", _human(result.bytes_remaining))
    if result.free_bytes is not None:
        table.add_row("free disk", _human(result.free_bytes))
    table.add_row("duration", f"{result.duration_seconds:.3f}s")
    console.print(table)
    shown = 20
    for label, paths in (("would delete" if would else "deleted", result.deleted),
                         ("would compress" if would else "compressed", result.compressed)):
        for path in paths[:shown]:
            console.print(f"  {label}: {path}")
        if len(paths) > shown:
            console.print(f"  ... and {len(paths) - shown} more (see cleaner_metrics.log)")
    for path, reason in result.failures[:shown]:
        console.print(f"  [red]error[/red]: {path}: {reason}")


@main.command()
@click.option("--system-interval", type=click.FloatRange(min=0.05), default=None,
              help="Also record a system snapshot every SECONDS (default: system_metrics in the config).")
@click.option("--interval-hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Cleanup interval, overriding log_cleanup.check_interval_hours.")
@_config_option
@_log_dir_option
def run(system_interval: float | None, interval_hours: float | None, config: str | None, log_dir: str | None) -> None:
    """Run the scheduled jobs (cleanup, system sampling) in the foreground until SIGINT or SIGTERM."""
    import signal
    import threading

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
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        click.echo(f"received {signal.Signals(signum).name}, stopping ...")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    factory = _factory(settings)
    try:
        service = factory.get_scheduled_cleaner(start=False)
        service.first_run_delay = 1.0  # a process of its own: nothing else to let start up first
        service.start()
        click.echo(f"monitoring jobs running for {settings.logging.log_dir}: {service.describe()}")
        click.echo("press Ctrl+C to stop", err=True)
        while not stop.wait(0.5):
            pass
        runs = service.runs
    finally:
        factory.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"stopped cleanly after {runs} cleanup runs")


# --------------------------------------------------------------------------- reading the logs


def _log_folder(config: str | None, log_dir: str | None) -> Path:
    return Path(log_dir) if log_dir else _settings(config, None).logging.log_dir


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal (stderr), nothing when the output is piped."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200  # piped or captured: do not fold tables at 80 columns
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


_FIELD_LABELS = {
    "response_time": "latency s", "time_to_first_token": "ttft s", "duration": "dur s",
    "prompt_tokens": "prompt tok", "completion_tokens": "compl tok", "total_tokens": "tokens",
    "input_tokens": "input tok", "cpu_percent": "cpu %", "memory_percent": "mem %", "process_rss_bytes": "rss",
}
_AGG_LABELS = {"count": "count", "errors": "errors", "error_rate": "error %", "rate": "per s"}


def _header(column: str) -> str:
    """A short column title: ``p95_response_time`` -> ``p95 latency s``, ``sum_total_tokens`` -> ``tokens``."""
    if column in _AGG_LABELS:
        return _AGG_LABELS[column]
    kind, _, field = column.partition("_")
    if field and (kind in ("avg", "min", "max", "sum", "latest") or (kind[:1] == "p" and kind[1:2].isdigit())):
        label = _FIELD_LABELS.get(field, field)
        return label if kind == "sum" else f"{kind} {label}"
    return column


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if name.endswith("error_rate") or name in ("measured", "budget_left"):
            return f"{value:.2%}"
        if "bytes" in name or name.endswith("_size"):
            return _human(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return _human(value) if ("bytes" in name or name.endswith("_size")) else f"{value:,}"
    return str(value)


def _table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold")
    for c in columns:
        numeric = any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)
        table.add_column(_header(c), justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*(_cell(c, r.get(c)) for c in columns))
    return table


def _window_text(since: float | None, until: float | None) -> str:
    from datetime import UTC, datetime

    def iso(t: float | None) -> str:
        return "the beginning" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    return f"{iso(since)} to {iso(until) if until is not None else 'now'}"


def _print_skipped(console: Any, skipped: Any) -> None:
    if not skipped:
        return
    console.print(f"[yellow]{skipped.summary()}[/yellow]")
    for s in skipped.samples[:5]:
        console.print(f"  {s.file}:{s.line or '?'} {s.reason}: {s.excerpt[:80]}")


def print_report(report: Any, console: Any | None = None) -> None:
    console = console or _console()
    console.print(f"[bold]Report[/bold] for {_window_text(report.since, report.until)} "
                  f"({report.seconds:.2f}s)")
    if not report.sections:
        console.print("no records in this window")
    for section in report.sections:
        console.print(_table(section.title, section.columns, section.rows))
    _print_skipped(console, report.skipped)


@main.command()
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="Window: the last N hours.")
@click.option("--all", "everything", is_flag=True, help="Everything in the files, whatever its age.")
@click.option("--module", default=None, help="Only this module's section(s): llm, tool, checkpoint, task, system.")
@click.option("--session", "session_id", default=None, help="Summary of one agent session instead.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_log_dir_option
def report(hours: float, everything: bool, module: str | None, session_id: str | None, fmt: str,
           config: str | None, log_dir: str | None) -> None:
    """Usage of LLMs, tools, checkpoints, tasks and the system over a window, from the logs."""
    from .query import LogParser, QueryError
    from .query.reports import build_report, report_json

    if session_id is not None:
        _session_report(_log_folder(config, log_dir), session_id, fmt)
        return
    settings = _settings(config, log_dir)
    parser = LogParser(settings.logging.log_dir)
    a = settings.anomalies
    anomalies = None if everything else {"window": a.window, "baseline": a.baseline, "k": a.k,
                                         "sustain": a.sustain, "min_count": a.min_count}
    try:
        with _progress("reading logs") as progress:
            result = build_report(parser, hours=None if everything else hours, module=module, progress=progress,
                                  anomalies=anomalies)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(report_json(result), indent=2))
    else:
        print_report(result)


def _session_report(folder: Path, session_id: str, fmt: str) -> None:
    from .instrumentation.sessions import session_summary

    summary = session_summary(folder, session_id)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    console = _console()
    env = summary.get("environment") or {}
    console.print(f"[bold]Session {session_id}[/bold]  status: {summary.get('status') or 'running or unknown'}"
                  + (f", {summary['duration']:.1f}s" if isinstance(summary.get("duration"), (int, float)) else ""))
    if env:
        console.print("  " + ", ".join(f"{k}={v}" for k, v in env.items() if v is not None))
    if summary["tasks"]:
        console.print(_table("Tasks", ["task_id", "description", "status", "duration"], summary["tasks"]))
    if summary["agents"]:
        console.print(_table("Agents", ["agent_type", "agent_name", "count", "errors", "sum_duration"],
                             summary["agents"]))
    if summary["tools"]:
        console.print(_table("Tools", ["tool_name", "count", "errors", "sum_duration"], summary["tools"]))
    if summary["llm"]:
        console.print(_table("LLM calls", ["provider", "model", "count", "errors", "sum_prompt_tokens",
                                           "sum_completion_tokens", "sum_total_tokens", "sum_cost"], summary["llm"]))
    console.print(f"LLM calls: {summary['llm_calls']}, tokens: {summary['total_tokens']:,}, "
                  f"estimated cost: {summary['estimated_cost']:.4f}"
                  + (f" (+{summary['unpriced_calls']} unpriced calls)" if summary.get("unpriced_calls") else ""))


@main.command()
@click.option("--module", "modules", multiple=True, help="Module (family) to read; repeatable; default all.")
@click.option("--operation", "operations", multiple=True, help="Only these operations; repeatable.")
@click.option("--where", "wheres", multiple=True, metavar="FIELD=VALUE",
              help="Filter: FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>N, FIELD<=N, FIELD>=N; repeatable.")
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
@click.option("--engine", type=click.Choice(["auto", "python", "duckdb"]), default="auto", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_config_option
@_log_dir_option
def query(modules: tuple[str, ...], operations: tuple[str, ...], wheres: tuple[str, ...], since: str | None,
          until: str | None, last: str | None, group_by: tuple[str, ...], bucket: str | None, aggs: tuple[str, ...],
          order_by: str | None, asc: bool, limit: int | None, max_groups: int, engine: str, fmt: str,
          config: str | None, log_dir: str | None) -> None:
    """Filter, group and aggregate records; prints a table, a JSON array of rows or CSV.

    \b
    Example: monitoring query --module llm --last 1h --group-by model \\
                 --agg count --agg p95:response_time --agg error_rate --format json
    """
    from .query import LogParser, QueryError

    parser = LogParser(_log_folder(config, log_dir))
    try:
        with _progress("scanning") as progress:
            result = parser.query(
                list(modules) or None, operation=list(operations) or None, where=list(wheres), since=since,
                until=until, last=last, group_by=list(group_by), bucket=bucket, aggs=list(aggs) or ["count"],
                order_by=order_by, descending=not asc, limit=limit, max_groups=max_groups, progress=progress,
                engine=engine,
            )
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    columns = [*result.group_by, *result.aggregates]
    if fmt == "json":
        click.echo(json.dumps(result.rows))
    elif fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    else:
        console = _console()
        console.print(_table(f"{len(result.rows)} rows, {result.records_matched:,} records, "
                             f"{_human(result.bytes_read)} read in {result.seconds:.2f}s", columns, result.rows))
        if result.folded_groups:
            console.print(f"{result.folded_groups:,} smaller groups folded into __other__ (--max-groups {max_groups})")
    if result.skipped:
        err = _console(stderr=True)
        _print_skipped(err, result.skipped)


@main.command()
@click.option("--module", default="llm", show_default=True, help="Family to follow.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("-f", "--follow", "keep", is_flag=True, help="Keep printing new lines, across rotations.")
@_config_option
@_log_dir_option
def tail(module: str, lines: int, keep: bool, config: str | None, log_dir: str | None) -> None:
    """The last lines of a family's live file; with -f, every new line as it is written."""
    from .query.storage import follow

    folder = _log_folder(config, log_dir)
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
@_config_option
@_log_dir_option
def status(config: str | None, log_dir: str | None) -> None:
    """Storage at a glance: families, files, bytes, records, time span, free disk, writer faults."""
    from .query.storage import folder_status

    state = folder_status(_log_folder(config, log_dir))
    console = _console()
    rows = [{"module": f.module, "files": f.files, "gz": f.compressed_files, "size": f.bytes,
             "records": f.records, "oldest": _window_text(f.oldest, None).split(" to ")[0] if f.oldest else "-",
             "newest": _window_text(f.newest, None).split(" to ")[0] if f.newest else "-"} for f in state.families]
    console.print(_table(f"Log folder {state.log_dir}", ["module", "files", "gz", "size", "records", "oldest",
                                                         "newest"], rows))
    if state.free_bytes is not None and state.total_bytes:
        console.print(f"free disk: {_human(state.free_bytes)} of {_human(state.total_bytes)} "
                      f"({state.free_bytes / state.total_bytes:.0%})")
    if state.faults:
        console.print(_table("Writer faults reported in the logs", ["module", "count", "sum_dropped", "latest_fault"],
                             state.faults))
    else:
        console.print("writer faults: none reported")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "prometheus"]), required=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), required=True,
              help="File to write (written whole, then renamed into place).")
@_config_option
@_log_dir_option
def export(fmt: str, hours: float, output: str, config: str | None, log_dir: str | None) -> None:
    """Write the report of the last N hours as JSON, CSV or Prometheus text."""
    from .query import LogParser
    from .query.reports import build_report, prometheus_text, report_csv, report_json

    result = build_report(LogParser(_log_folder(config, log_dir)), hours=hours)
    if fmt == "json":
        text = json.dumps(report_json(result), indent=2) + "\n"
    elif fmt == "csv":
        text = report_csv(result)
    else:
        text = prometheus_text(result)
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    click.echo(f"wrote {target} ({len(result.sections)} sections, {_human(len(text.encode()))})")


@main.command()
@click.option("--type", "kind", type=click.Choice(["function", "memory", "io"]), default=None,
              help="Only profiles of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_config_option
@_log_dir_option
def profiles(kind: str | None, limit: int, config: str | None, log_dir: str | None) -> None:
    """Recent profiles (written by @profile / profile_context), newest first."""
    from collections import deque

    from .query import LogParser

    parser = LogParser(_log_folder(config, log_dir))
    if "profile" not in parser.modules():
        click.echo("no profiles recorded")
        return
    where = ["operation=profile", *([f"kind={kind}"] if kind else [])]
    recent = deque(parser.records("profile", where=where), maxlen=limit)
    console = _console()
    rows = []
    for r in reversed(recent):
        if r.get("kind") == "function":
            tops = r.get("top_functions") or [{}]
            headline = f"{tops[0].get('function', '-')} ({tops[0].get('cumulative_time', 0):.4f}s cumulative)"
        elif r.get("kind") == "memory":
            headline = f"peak {_human(r.get('peak_bytes') or 0)}, retained {_human(r.get('retained_bytes') or 0)}"
        else:
            headline = (f"read {_human(r.get('read_chars') or 0)} / wrote {_human(r.get('write_chars') or 0)} "
                        f"in {r.get('read_count', 0)}+{r.get('write_count', 0)} calls")
        rows.append({"name": r.get("name"), "kind": r.get("kind"), "duration": r.get("duration"),
                     "success": r.get("success"), "summary": headline})
    console.print(_table("Profiles", ["name", "kind", "duration", "success", "summary"], rows))


@main.command()
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many recent traces.")
@click.option("--trace", "trace_id", default=None, help="Show only this trace id.")
@_config_option
@_log_dir_option
def traces(limit: int, trace_id: str | None, config: str | None, log_dir: str | None) -> None:
    """Recent traces as indented trees, with durations and status."""
    from .query import LogParser
    from .query.traces import recent_traces

    found = recent_traces(LogParser(_log_folder(config, log_dir)), limit=limit, trace_id=trace_id)
    if not found:
        click.echo("no traces recorded" if trace_id is None else f"no trace {trace_id}")
        return
    for trace in found:
        click.echo(f"trace {trace.trace_id}  ({trace.spans} spans)")
        for depth, node in trace.walk():
            r = node.record
            status = r.get("status", "ok")
            mark = "ERROR " + str(r.get("status_message", "")) if status == "error" else status
            duration = r.get("duration")
            took = f"{duration * 1000:.3f} ms" if isinstance(duration, (int, float)) else "?"
            click.echo(f"  {'  ' * depth}{r.get('name')}  [{r.get('kind', 'internal')}]  {took}  {mark}")


if __name__ == "__main__":  # pragma: no cover
    main()


# --------------------------------------------------------------------------- alerts, SLOs


def _when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _alert_rows(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"state": a.get("state") or a.get("event"), "severity": a.get("severity"), "rule": a.get("rule"),
             "labels": " ".join(f"{k}={v}" for k, v in (a.get("labels") or {}).items()) or "-",
             "value": a.get("value"), "since": _when(a.get("since")),
             "at": _when(a.get("evaluated_at") or a.get("timestamp"))} for a in alerts]


@main.command()
@click.option("--check", is_flag=True, help="Evaluate the rules once now; exit 1 when an alert fires.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="How far back the list of recent transitions goes.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_log_dir_option
def alerts(check: bool, hours: float, fmt: str, config: str | None, log_dir: str | None) -> None:
    """Current and recent alerts; with --check, evaluate the rules first (for cron and CI)."""
    settings = _settings(config, log_dir)
    factory = _factory(settings)
    try:
        evaluator = factory.get_alert_evaluator()
        errors: list[str] = []
        if check:
            if not settings.alerts.rules:
                raise click.ClickException(f"no alert rules in {settings.source} (add an alerts.rules list)")
            evaluation = evaluator.evaluate()
            errors = evaluation.errors
        current = evaluator.current()
        recent = evaluator.recent(hours=hours)
    finally:
        factory.shutdown()
    firing = [a for a in current if a.get("state") == "firing"]
    if fmt == "json":
        click.echo(json.dumps({"current": current, "recent": recent, "errors": errors}, indent=2, default=str))
    else:
        console = _console()
        columns = ["state", "severity", "rule", "labels", "value", "since", "at"]
        console.print(_table("Current alerts", columns, _alert_rows(current)) if current
                      else "current alerts: none pending or firing")
        if recent:
            console.print(_table(f"Transitions in the last {hours:g} h (newest first)", columns, _alert_rows(recent)))
        for line in errors:
            console.print(f"[red]rule error[/red] {line}")
    if check and (firing or errors):
        sys.exit(1)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_config_option
@_log_dir_option
def slo(fmt: str, config: str | None, log_dir: str | None) -> None:
    """Each SLO target of the config: measured over its period, error budget left, burn rate."""
    from .alerts.slo import evaluate_slos
    from .query import LogParser

    settings = _settings(config, log_dir)
    if not settings.slos:
        raise click.ClickException(f"no SLO targets in {settings.source} (add an slos list)")
    rows = [s.as_row() for s in evaluate_slos(LogParser(settings.logging.log_dir), settings.slos)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    console = _console()
    columns = ["slo", "objective", "target", "period_days", "events", "bad", "measured", "percentile",
               "budget_left", "burn_rate_1h", "status"]
    console.print(_table("Service level objectives", columns, rows))


# --------------------------------------------------------------------------- dashboard and server


def _write_atomically(target: Path, text: str) -> None:
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)


@main.command()
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the self-contained HTML page here (works offline).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 366), default=6.0, show_default=True)
@click.option("--until", default=None, help="End of the window (epoch or ISO 8601; default now): a past incident.")
@click.option("--grafana", "grafana_file", type=click.Path(dir_okay=False), default=None,
              help="Also (or only) write a Grafana dashboard JSON for the /metrics series.")
@_config_option
@_log_dir_option
def dashboard(output: str | None, hours: float, until: str | None, grafana_file: str | None, config: str | None,
              log_dir: str | None) -> None:
    """Write the dashboard of the last N hours as one HTML file, and/or a Grafana dashboard."""
    if output is None and grafana_file is None:
        raise click.UsageError("give --output FILE (HTML) and/or --grafana FILE (JSON)")
    if grafana_file is not None:
        from .exporters.grafana import grafana_dashboard

        _write_atomically(Path(grafana_file), json.dumps(grafana_dashboard(), indent=2) + "\n")
        click.echo(f"wrote {grafana_file} (Grafana dashboard; pick the Prometheus data source on import)")
    if output is not None:
        from .query.spec import QueryError, parse_time
        from .web.dashboard import render_dashboard
        from .web.data import dashboard_data

        try:
            end = parse_time(until)
        except QueryError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from exc
        settings = _settings(config, log_dir)
        data = dashboard_data(settings.logging.log_dir, hours=hours, now=end, settings=settings)
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
def serve(host: str | None, port: int | None, hours: float, jobs: bool, config: str | None,
          log_dir: str | None) -> None:
    """Serve the live dashboard, the JSON API and Prometheus /metrics until interrupted."""
    import signal

    from .web.server import DashboardServer

    settings = _settings(config, log_dir)
    try:
        server = DashboardServer(settings, host=host, port=port, hours=hours)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host or settings.server.host}:{port}: {exc}") from exc

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    factory = _factory(settings) if jobs else None
    if factory is not None:
        service = factory.get_scheduled_cleaner()
        click.echo(f"jobs: {service.describe()}", err=True)
    click.echo(f"serving {settings.logging.log_dir} on {server.url}  (/ /api/status /api/metrics /api/alerts "
               "/metrics)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        if factory is not None:
            factory.shutdown()
