"""The ``monitoring`` command: a thin layer that parses, calls the library and prints.

Exit status: 0 success, 1 an error the user can fix (bad config), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from dependency_injector import providers

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


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


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


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


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


if __name__ == "__main__":  # pragma: no cover
    main()
