"""``monitoring ship``: the command's work, behind the thin click layer of ``cli.py``.

Exit status: 0 when caught up (``--once``) or stopped by a signal; 1 when the server
refused or could not be reached (``--once``), or when another shipper holds the folder.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from typing import Any

import click

from .._display import render_table, terminal_width, when
from .._parsers import format_size
from ..config import MonitoringSettings
from ..errors import ConfigError
from ..logger_writer import WriterPool, default_redactor
from .clickhouse import ClickHouseClient
from .reader import ClickHouseParser, TableStatus
from .schema import CURRENT, LEGACY, TableNames, dialect_for, distributed_ddl, parse_version, table_ddl
from .settings import ClickHouseSettings, clickhouse_section
from .shipper import ClickHouseShipper, ShipResult, password_from_env, user_from_env

__all__ = ["cluster_reader", "print_schema", "print_table_status", "ship_command", "ship_settings"]


def ship_settings(settings: MonitoringSettings, url: str | None, database: str | None) -> ClickHouseSettings:
    """The ``clickhouse`` section with the command line's ``--clickhouse`` and ``--database`` over it."""
    given: dict[str, Any] = {}
    if url is not None:
        given["url"] = url
    if database is not None:
        given["database"] = database
    try:
        parsed = clickhouse_section(given, "clickhouse", "the command line")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--clickhouse" if "url" in exc.key else "--database") from None
    return replace(settings.clickhouse, **{k: getattr(parsed, k) for k in given})


def cluster_reader(settings: MonitoringSettings, url: str | None, database: str | None) -> ClickHouseParser:
    """The reading commands' source with ``--clickhouse`` / ``--source clickhouse``: the configured
    table (``--clickhouse`` and ``--database`` over the ``clickhouse`` section)."""
    return ClickHouseParser(ship_settings(settings, url, database))


def print_table_status(status: TableStatus) -> None:
    """``monitoring status`` of the table: its modules, hosts and time span, its parts on disk."""

    rows = [{"module": m.module, "records": m.records, "hosts": m.hosts, "oldest": when(m.oldest),
             "newest": when(m.newest)} for m in status.modules]
    click.echo(render_table(f"ClickHouse {status.version}: {status.target}", ["module", "records", "hosts", "oldest",
                                                                             "newest"], rows, keys=["module"],
                            width=terminal_width()))
    ratio = (f", {status.uncompressed_bytes / status.compressed_bytes:.1f}x compressed"
             if status.compressed_bytes else "")
    click.echo(f"on disk: {status.rows:,} rows in {status.parts} parts over {status.days} days, "
               f"{format_size(status.compressed_bytes)} ({format_size(status.uncompressed_bytes)} uncompressed{ratio})")
    if status.faults:
        click.echo(render_table("Writer faults reported in the records", ["module", "count", "sum_dropped",
                                                                         "latest_fault"], status.faults,
                                keys=["module"], width=terminal_width()))
    else:
        click.echo("writer faults: none reported")


def print_schema(settings: ClickHouseSettings, retention_days: float, dialect: str | None) -> None:
    """The statements that create the table (both tables of the cluster form), for operators who run them."""
    names = TableNames(settings.database, settings.table, settings.cluster)
    if dialect is None:
        dialect = CURRENT
        try:
            client = ClickHouseClient(settings.url, user=user_from_env(settings), password=password_from_env(settings),
                                      timeout=min(settings.timeout, 5.0))
            version = client.version()
            client.close()
            dialect = dialect_for(parse_version(version))
            click.echo(f"-- ClickHouse {version} at {settings.url}: the {dialect} layout")
        except Exception as exc:  # noqa: BLE001 - the schema is printed whatever the server says
            click.echo(f"-- {settings.url} did not answer ({type(exc).__name__}); the {dialect} layout "
                       "(--dialect legacy for servers before 21.8)")
    ttl = retention_days if settings.ttl else None
    if ttl is not None and dialect == LEGACY:
        click.echo("-- no TTL: servers before 21.8 cannot expire rows; drop old days with "
                   "ALTER TABLE ... DROP PARTITION")
    click.echo(f"CREATE DATABASE IF NOT EXISTS `{settings.database}`;\n")
    if settings.cluster:
        click.echo(f"-- on every shard of {settings.cluster} (or once, with ON CLUSTER, where distributed DDL works):")
        click.echo(table_ddl(names, dialect, ttl_days=ttl, on_cluster=True) + ";\n")
        click.echo("-- where queries and inserts go (every node that should answer):")
        click.echo(distributed_ddl(names, dialect, on_cluster=True) + ";")
    else:
        click.echo(table_ddl(names, dialect, ttl_days=ttl) + ";")


def ship_command(settings: MonitoringSettings, ship: ClickHouseSettings, *, once: bool) -> None:
    """Ship the folder (``--once``: what it holds now) and print what was done."""
    folder = settings.logging.log_dir
    pool = WriterPool(settings=settings, redactor=default_redactor(settings))
    try:
        shipper = ClickHouseShipper(ship, folder, writer=pool.get("exporter"),
                                    retention_days=settings.log_cleanup.retention_days)
        _ship(shipper, once=once)
    finally:
        pool.close()


def _ship(shipper: ClickHouseShipper, *, once: bool) -> None:
    folder = shipper.log_dir
    click.echo(f"shipping {folder} to {shipper.target}", err=True)
    if once:
        result = shipper.ship_once(wait=False)
        if result is None:
            raise click.ClickException(f"another shipper is shipping {folder} (it holds its .clickhouse_ship.lock)")
        click.echo(_describe(result))
        if result.failed:
            raise click.ClickException(f"shipping stopped: {result.failed} (the next run resumes where it stopped)")
        return
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        click.echo(f"received {signal.Signals(signum).name}, stopping after the current batch ...", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def report(result: ShipResult) -> None:
        if result.rows or (result.failed and result.failed != "backing off") or result.resolved:
            click.echo(_describe(result))
            sys.stdout.flush()

    try:
        shipper.follow(stop, on_result=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shipper.client.close()


def _describe(result: ShipResult) -> str:
    text = (f"shipped {result.rows:,} rows in {result.batches} batches ({format_size(result.bytes)} of logs) "
            f"in {result.seconds:.2f}s")
    if result.rows:
        text += f", {result.rows / max(result.seconds, 1e-9):,.0f} rows/s"
    if result.skipped_lines:
        text += f"; {result.skipped_lines} lines skipped (not records)"
    if result.resolved:
        text += f"; {result.resolved} unacknowledged batch of an earlier run settled"
    if result.failed:
        text += f"; stopped: {result.failed}"
    return text
