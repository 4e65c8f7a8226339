"""``ClickHouseShipper``: follow the log folder and insert every record line into ClickHouse, exactly once.

Lines are read through the package's one follower (``query/tailer.py``): every family,
oldest file first, across rotations and compression, complete lines only. A line is
read as the query engine reads it (``NaN``, ``Infinity`` and ``1e400`` too; JSON has no
spelling for them, so they go in as NULL), and each record becomes one row
(``schema.py``); lines that are not records (not JSON, no numeric ``timestamp``) are
skipped and counted, as the query engine skips them.

Rows go in batches of at most ``batch_rows`` rows and ``batch_bytes`` bytes, and what
has accumulated is sent at least every ``batch_seconds``. A batch never spans two days,
so one insert writes one partition.

**Exactly once.** Before a batch is sent, the state file records it as *in flight*
(which lines of which files, under which query id) beside the positions already
acknowledged; after the server acknowledges it, the positions move past it. A batch
whose fate is unknown — the shipper killed, the server killed, the connection cut,
any answer but success — is resolved before anything else is sent: two seconds after
its connection ended (a server may begin an insert only then), and behind a fence (a
``SELECT 1`` under the batch's query id succeeds only when no query with that id runs),
the shipper asks the table how far each of the batch's files got (``max(source_offset)``
per file, in the batch's one partition, time range and families) until two answers
agree, and continues from there. A cut-off insert can
only have stored a prefix of the batch's rows, so this finds exactly what is missing;
nothing is sent twice and nothing is skipped. A state file that is missing (first run
against a table, or lost) is rebuilt the same way from what the table holds for this
host.

While the server cannot be reached, runs back off exponentially up to
``max_backoff`` seconds; the failure and the lag are in the state file (``monitoring
status``). The application writing the logs never waits: shipping only reads files.
"""

from __future__ import annotations

import copy
import gzip
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .._statefile import exclusive, load_state, save_state
from ..env import MONITORING_CLICKHOUSE_PASSWORD, MONITORING_CLICKHOUSE_USER, env_str
from ..query.files import discover
from ..query.lines import _lenient
from ..query.spec import as_number
from ..query.tailer import Chunk, Tailer, file_identity
from . import SHIP_LOCK_FILE, SHIP_STATE_FILE
from .clickhouse import ClickHouseClient, ClickHouseError, ClickHouseUnavailable
from .schema import COLUMNS, CURRENT, LEGACY, TableNames, dialect_for, distributed_ddl, parse_version, table_ddl
from .settings import ClickHouseSettings
from .sql import day_text, literal

__all__ = ["ClickHouseShipper", "ShipResult", "password_from_env", "user_from_env"]

_log = logging.getLogger("infrastructure.monitoring.fleet")

_STATE_VERSION: Final = 2
_QUERY_ALREADY_RUNNING: Final = 216
_FENCE_WAIT: Final = 30.0
_SETTLE: Final = 2.0
"""Seconds after an unacknowledged insert before the table is asked how far it got."""
_NONE: Final = type(None)
_INTS: Final = (int,)
_ACCEPTED: Final[dict[str, tuple[type, ...]]] = {
    c.name: {"str": (str, _NONE), "int": _INTS, "float": (float, int, _NONE), "bool": (bool, _NONE)}[c.kind]
    for c in COLUMNS if c.kind != "fixed"}
"""The JSON types a field may have to go into its typed column as the line spells it."""
_ACCEPTED.update({"timestamp": (float, int), "operation": (str,), "module": (str,)})
_ACCEPTED.update({c.name: () for c in COLUMNS if c.name not in _ACCEPTED} | {"time": ()})
"""Columns the shipper fills itself: a record with such a field takes the careful path."""
_INT_MAX: Final = 2**63 - 1
_DATA_ERRORS: Final = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 130, 131})
"""Error codes of a server that could not read the rows (a line the fast path sent as written)."""
_INF, _NEG_INF = math.inf, -math.inf


def user_from_env(settings: ClickHouseSettings, environ: dict[str, str] | None = None) -> str | None:
    """``MONITORING_CLICKHOUSE_USER`` over ``clickhouse.user``."""
    return env_str(MONITORING_CLICKHOUSE_USER, environ) or settings.user


def password_from_env(settings: ClickHouseSettings, environ: dict[str, str] | None = None) -> str | None:
    """The password from the variable ``clickhouse.password_env`` names (``MONITORING_CLICKHOUSE_PASSWORD``)."""
    return env_str(settings.password_env or MONITORING_CLICKHOUSE_PASSWORD, environ)


@dataclass
class ShipResult:
    """What one run did."""

    rows: int = 0
    batches: int = 0
    bytes: int = 0
    """Bytes of log lines shipped (the files' bytes, not the request bodies)."""
    skipped_lines: int = 0
    """Lines that are not records (not JSON, no numeric timestamp): not shipped, as the query engine skips them."""
    resolved: int = 0
    """Batches of an earlier run whose fate was unknown, settled by asking the table."""
    failed: str | None = None
    """Why the run stopped early; the next run resolves and retries."""
    retry_in: float | None = None
    """Seconds until the next attempt, while backing off."""
    caught_up: bool = False
    """Everything the folder held when the run started is in the table."""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    by_module: dict[str, int] = field(default_factory=dict)


class _Unacknowledged(Exception):  # noqa: N818 - internal signal: stop the run, resolve the batch next time
    pass


@dataclass
class _Batch:
    rows: list[bytes] = field(default_factory=list)
    size: int = 0
    day: int | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``module/key`` -> module, key, start (first row's offset), last (last row's offset), end."""
    tmin: float = _INF
    tmax: float = _NEG_INF
    operations: set[str] = field(default_factory=set)
    line_bytes: int = 0
    skipped: int = 0
    """Lines passed over (not records) since the previous batch: counted once this batch is acknowledged."""
    by_module: dict[str, int] = field(default_factory=dict)


class ClickHouseShipper:
    """Ships one log folder to one table; one shipper per folder at a time (a lock).

        shipper = ClickHouseShipper(settings.clickhouse, "logs")
        result = shipper.ship_once()          # everything the folder holds now
        shipper.follow(stop_event)            # and then whatever is appended, until stopped

    ``writer`` (a ``MetricsWriter``) receives one ``clickhouse_ship`` event when shipping
    starts failing and one when it recovers; ``retention_days`` is the TTL when
    ``settings.ttl`` is on.
    """

    def __init__(self, settings: ClickHouseSettings, log_dir: str | os.PathLike[str], *,
                 client: ClickHouseClient | None = None, writer: Any = None, retention_days: float | None = None,
                 environ: dict[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.state_path = self.log_dir / SHIP_STATE_FILE
        self.client = client or ClickHouseClient(settings.url, user=user_from_env(settings, environ),
                                                 password=password_from_env(settings, environ),
                                                 timeout=settings.timeout)
        self.names = TableNames(settings.database, settings.table, settings.cluster)
        self.retention_days = retention_days
        self._writer = writer
        self._clock = clock
        self.dialect: str | None = None
        self.version: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._error_since: float | None = None
        self._day_json: dict[int, bytes] = {}
        self._careful = False
        """Re-encode every record (after the server refused rows sent as written)."""
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._insert_sql = ""
        self._insert_settings: dict[str, Any] = {}
        self.target = f"{settings.url} {settings.database}.{settings.table}" + (
            f" on cluster {settings.cluster}" if settings.cluster else "")

    def __repr__(self) -> str:
        return f"ClickHouseShipper({str(self.log_dir)!r} -> {self.target})"

    def close(self) -> None:
        """Close the connection to the server (a later run opens a new one)."""
        self.client.close()

    def __enter__(self) -> ClickHouseShipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the table

    def ensure_table(self) -> str:
        """Create the database and the table (its cluster form with ``cluster``) unless they exist;
        returns the dialect chosen from the server's version."""
        self.version = self.client.version()
        dialect = dialect_for(parse_version(self.version))
        ttl = self.retention_days if self.settings.ttl else None
        if ttl is not None and dialect == LEGACY:
            _log.warning("ClickHouse %s has no TTL: %s keeps every row; drop old days with "
                         "ALTER TABLE ... DROP PARTITION", self.version, self.names.qualified)
        self.client.query(f"CREATE DATABASE IF NOT EXISTS `{self.names.database}`")
        if self.names.cluster is None:
            self.client.query(table_ddl(self.names, dialect, ttl_days=ttl))
        else:
            self._ensure_cluster(dialect, ttl)
        self.dialect = dialect
        self._insert_sql = f"INSERT INTO {self.names.qualified} FORMAT JSONEachRow"
        settings: dict[str, Any] = {"max_insert_block_size": max(1_048_576, self.settings.batch_rows * 2),
                                    "input_format_skip_unknown_fields": 1}
        if self.names.cluster is not None:
            settings["insert_distributed_sync"] = 1  # acknowledged = stored on the shard, not queued
        if dialect == CURRENT:
            settings.update(input_format_parallel_parsing=0, async_insert=0)  # one request, one block
        self._insert_settings = settings
        return dialect

    def _ensure_cluster(self, dialect: str, ttl: float | None) -> None:
        cluster = self.names.cluster
        assert cluster is not None
        replicas = self.client.rows("SELECT host_address, default_database FROM system.clusters "
                                    f"WHERE cluster = {literal(cluster)}")
        if not replicas:
            raise ClickHouseError(f"cluster {cluster!r} is not in the remote_servers of {self.settings.url}")
        databases = {r[1] for r in replicas if len(r) > 1}
        own_db = all(databases) and databases != {self.names.database}
        names = TableNames(self.names.database, self.names.table, cluster, "" if own_db else None)
        created = False
        if not own_db:  # distributed DDL (ON CLUSTER) creates both tables on every node
            try:
                self.client.query(table_ddl(names, dialect, ttl_days=ttl, on_cluster=True))
                self.client.query(distributed_ddl(names, dialect, on_cluster=True))
                created = True
            except ClickHouseError as exc:
                _log.info("ON CLUSTER %s refused (%s); creating the tables from this node", cluster, exc)
        if not created and all(r[0].startswith("127.") or r[0] in ("::1", "localhost") for r in replicas):
            for db in sorted(databases) if own_db else [self.names.database]:  # every shard is on this server
                self.client.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
                self.client.query(table_ddl(names, dialect, ttl_days=ttl, database=db))
        self.client.query(distributed_ddl(names, dialect))
        try:
            self.client.query(f"SELECT count() FROM {names.qualified}")  # every shard has its local table
        except ClickHouseUnavailable:
            raise
        except ClickHouseError as exc:
            raise ClickHouseError(f"{names.qualified} cannot read every shard of {cluster!r} ({exc}); create "
                                  f"{names.local} on each shard (`monitoring ship --print-schema` prints it)",
                                  exc.code, exc.status) from None

    # ------------------------------------------------------------------ running

    def ship_once(self, *, wait: bool = True) -> ShipResult | None:
        """Ship everything the folder holds now; ``None`` when another process is shipping it."""
        return self._run(wait=wait)

    def run_job(self) -> ShipResult | None:
        """One scheduled run (``monitoring run``): skipped while backing off or when another process ships."""
        return self._run(wait=False)

    def follow(self, stop: threading.Event, *, on_result: Callable[[ShipResult], None] | None = None) -> None:
        """Ship, then keep shipping what is appended, every ``batch_seconds``, until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            result = self._run(wait=False)
            if result is not None and on_result is not None:
                on_result(result)
            pause = self.settings.batch_seconds - (time.monotonic() - started)
            if result is not None and result.retry_in is not None:
                pause = max(pause, result.retry_in)
            stop.wait(max(0.05, pause))

    def _run(self, *, wait: bool) -> ShipResult | None:
        now = self._clock()
        if now < self._retry_at:
            return ShipResult(failed="backing off", retry_in=self._retry_at - now)
        with exclusive(self.log_dir / SHIP_LOCK_FILE, wait=wait) as held:
            if not held:
                return None
            started, cpu = time.perf_counter(), time.process_time()
            result = ShipResult()
            state = load_state(self.state_path)
            try:
                try:
                    self._ship(state, result)
                except _Unacknowledged:
                    if not state.get("careful") or self._careful:
                        raise
                    self._ship(state, result)  # refused as written: settle it, then once more, re-encoded
            except (ClickHouseError, _Unacknowledged) as exc:
                self._failed(state, result, exc)
            else:
                self._recovered(state)
            finally:
                result.seconds = time.perf_counter() - started
                result.cpu_seconds = time.process_time() - cpu
            return result

    def _ship(self, state: dict[str, Any], result: ShipResult) -> None:
        if self.dialect is None:
            self.ensure_table()
        fresh = state.get("version") != _STATE_VERSION or state.get("target") != self.target
        if fresh:
            state.clear()
            state.update(version=_STATE_VERSION, target=self.target, positions={}, inflight=None,
                         source_host=self.settings.source_host or socket.gethostname(),
                         modules=list(self.settings.modules), rows_shipped=0)
        self._host = str(self.settings.source_host or state.get("source_host") or socket.gethostname())
        state.update(source_host=self._host, modules=list(self.settings.modules))
        if state.get("inflight"):
            self._resolve(state)
            result.resolved += 1
        if fresh:
            self._adopt(state)
            self._save(state)
        self._careful = bool(state.get("careful"))
        tailer = Tailer(self.log_dir, self.settings.modules, positions=copy.deepcopy(state.get("positions") or {}))
        batch = _Batch()
        try:
            for chunk in tailer.chunks(max_lines=self.settings.batch_rows):
                batch = self._take(chunk, tailer, batch, state, result)
            if batch.rows:
                self._send(batch, tailer, state, result)
        finally:
            try:
                self._wait_sent()
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                    self._pool = None
        if not batch.rows:
            state["positions"] = copy.deepcopy(tailer.positions)  # skipped lines, forgotten files
            result.skipped_lines += batch.skipped
        self._save(state)
        result.caught_up = True

    # ------------------------------------------------------------------ rows

    def _day(self, day: int) -> bytes:
        """``,"day":"2024-01-01"`` for the UTC day number ``day`` (clamped to the range of ``Date``)."""
        self._day_json[day] = encoded = b',"day":"' + day_text(day).encode() + b'"'
        return encoded

    def _take(self, chunk: Chunk, tailer: Tailer, batch: _Batch, state: dict[str, Any],  # noqa: PLR0912, PLR0915
              result: ShipResult) -> _Batch:  # the hot loop, kept flat with locals only
        """Turn a chunk's lines into rows; send the batch whenever it is full or the day changes.

        A record whose fields all have their columns' types is sent as written, with the
        shipper's columns appended (the server skips the fields that have no column, and
        ``extra`` repeats them); any other goes through ``_row``, which re-encodes it.
        """
        module, key = chunk.module, chunk.key
        loads, dumps, json_error, lenient_loads = orjson.loads, orjson.dumps, orjson.JSONDecodeError, _lenient
        accepted = _ACCEPTED.get
        ints, int_max, dct, flt, integer = _INTS, _INT_MAX, dict, float, int
        tail = (b',"source_host":' + dumps(self._host) + b',"source_file":' + dumps(key) + b',"source_offset":')
        module_json = dumps(module)
        with_module = b',"module":' + module_json
        careful = self._careful
        max_rows, max_bytes = self.settings.batch_rows, self.settings.batch_bytes
        days = self._day_json
        pos = chunk.start
        rows, ops = batch.rows, batch.operations
        size, tmin, tmax = batch.size, batch.tmin, batch.tmax
        first = last = last_end = -1  # this file's rows in this batch: first and last start, last end
        here = line_bytes = skipped = 0
        for line in chunk.lines:
            start = pos
            pos += len(line) + 1
            lenient = False
            try:
                record: Any = loads(line)
            except json_error as exc:
                record = lenient_loads(line, exc)  # NaN, Infinity, 1e400: the query engine reads them too
                if record is None:
                    if line.strip():
                        skipped += 1
                    continue
                lenient = True  # the server may not read those numbers as written: re-encode the record
            if record.__class__ is not dct:
                skipped += 1
                continue
            ts = record.get("timestamp")
            cls = ts.__class__
            if cls is not flt and cls is not integer:
                ts = as_number(ts)
            if ts is None or ts != ts or ts in (_INF, _NEG_INF):
                skipped += 1
                continue
            day = int(ts // 86400)
            if batch.day != day and rows:
                self._note(batch, module, key, first, last, last_end, here, size, tmin, tmax, line_bytes, skipped)
                tailer.advance(module, key, start)
                self._send(batch, tailer, state, result)
                batch = _Batch()
                rows, ops = batch.rows, batch.operations
                size, tmin, tmax = 0, _INF, _NEG_INF
                first = last = last_end = -1
                here = line_bytes = skipped = 0
            extra = None
            plain = not careful and not lenient and line[-1:] == b"}"
            if plain:
                for name, value in record.items():
                    kinds = accepted(name)
                    if kinds is None:
                        if extra is None:
                            extra = {}
                        extra[name] = value
                    elif kinds is ints:
                        if value.__class__ is not integer or value > int_max:
                            plain = False
                            break
                    elif value.__class__ not in kinds:
                        plain = False
                        break
            day_json = days.get(day) or self._day(day)
            if plain and record.get("module", module) == module:
                encoded = b"".join((line[:-1], day_json, b',"extra":' + dumps(dumps(extra).decode()) if extra
                                    else b',"extra":"{}"', b"" if "module" in record else with_module, tail,
                                    str(start).encode(), b"}"))
            else:
                encoded = self._row(record, ts, module, day_json) + module_json + tail + str(start).encode() + b"}"
            batch.day = day
            rows.append(encoded)
            size += len(encoded) + 1
            line_bytes += len(line) + 1
            if ts < tmin:  # noqa: PLR1730 - a min() call per row costs more
                tmin = ts
            if ts > tmax:  # noqa: PLR1730
                tmax = ts
            op = record.get("operation")
            ops.add(op if op.__class__ is str else "")
            if first < 0:
                first = start
            last, last_end = start, pos
            here += 1
            if len(rows) >= max_rows or size >= max_bytes:
                self._note(batch, module, key, first, last, last_end, here, size, tmin, tmax, line_bytes, skipped)
                tailer.advance(module, key, pos)
                self._send(batch, tailer, state, result)
                batch = _Batch()
                rows, ops = batch.rows, batch.operations
                size, tmin, tmax = 0, _INF, _NEG_INF
                first = last = last_end = -1
                here = line_bytes = skipped = 0
        self._note(batch, module, key, first, last, last_end, here, size, tmin, tmax, line_bytes, skipped)
        tailer.advance(module, key, chunk.end)
        return batch

    @staticmethod
    def _note(batch: _Batch, module: str, key: str, first: int, last: int, last_end: int, here: int, size: int,
              tmin: float, tmax: float, line_bytes: int, skipped: int) -> None:
        """Fold what the hot loop kept in locals into the batch (before it is sent, and at a chunk's end)."""
        batch.size, batch.tmin, batch.tmax = size, tmin, tmax
        batch.line_bytes += line_bytes
        batch.skipped += skipped
        if first < 0:
            return
        file_key = f"{module}/{key}"
        place = batch.files.get(file_key)
        if place is None:
            batch.files[file_key] = {"module": module, "key": key, "start": first, "last": last, "end": last_end}
        else:
            place["last"], place["end"] = last, last_end
        batch.by_module[module] = batch.by_module.get(module, 0) + here

    @staticmethod
    def _row(record: dict[str, Any], ts: float, module: str, day_json: bytes) -> bytes:
        """A record re-encoded field by field: typed columns for values of the right type, the rest
        in ``extra`` (a null is a NULL column), ending with ``"module":`` for the caller to complete."""
        row: dict[str, Any] = {"timestamp": ts}
        extra: dict[str, Any] = {}
        for name, value in record.items():
            if name == "timestamp":
                continue
            kinds = _ACCEPTED.get(name)
            if kinds is None:
                extra[name] = value
            elif value is None or (name == "module" and value == module):
                continue
            elif kinds is _INTS:
                if value.__class__ is int and value <= _INT_MAX:
                    row[name] = value
                else:
                    extra[name] = value
            elif value.__class__ in kinds and name != "module":
                row[name] = value
            else:
                extra[name] = value
        row["extra"] = orjson.dumps(extra).decode() if extra else "{}"
        return orjson.dumps(row)[:-1] + day_json + b',"module":'

    # ------------------------------------------------------------------ one batch

    def _send(self, batch: _Batch, tailer: Tailer, state: dict[str, Any], result: ShipResult) -> None:
        """Hand a full batch to the sending thread (after the previous one was acknowledged): the
        next batch is read and encoded while the server stores this one."""
        assert batch.day is not None
        ops = sorted(batch.operations)
        inflight = {
            "query_id": f"monitoring-ship-{uuid.uuid4().hex}", "day": day_text(batch.day),
            "source_host": self._host,
            "rows": len(batch.rows), "tmin": batch.tmin, "tmax": batch.tmax,
            "modules": sorted({f["module"] for f in batch.files.values()}),
            "operations": ops if len(ops) <= 100 else None, "files": list(batch.files.values()),
            "after": copy.deepcopy(tailer.positions)}
        body = b"\n".join(batch.rows) + b"\n"
        self._wait_sent()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-ship")
        self._pending = self._pool.submit(self._deliver, state, inflight, body, batch, result)

    def _wait_sent(self) -> None:
        """Wait for the batch being sent; raises ``_Unacknowledged`` when it was not acknowledged."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _deliver(self, state: dict[str, Any], inflight: dict[str, Any], body: bytes, batch: _Batch,
                 result: ShipResult) -> None:
        """In flight on disk, then the insert; the acknowledgement is saved with the next batch's
        record (or at the end of the run): after a kill in between, the in-flight batch is found
        whole in the table."""
        inflight["at"] = self._clock()
        state["inflight"] = inflight
        self._save(state)
        try:
            self.client.insert(self._insert_sql, body, settings=self._insert_settings, query_id=inflight["query_id"])
        except ClickHouseUnavailable as exc:
            if not exc.sent:  # not even connected: nothing of it can be in the table
                state["inflight"] = None
                self._save(state)
            raise _Unacknowledged(str(exc)) from exc
        except ClickHouseError as exc:
            if exc.code in _DATA_ERRORS and not self._careful:
                state["careful"] = True  # the next run re-encodes every record of this batch
            raise _Unacknowledged(str(exc)) from exc
        state["inflight"] = None
        state["positions"] = inflight["after"]
        state["rows_shipped"] = int(state.get("rows_shipped") or 0) + len(batch.rows)
        state["last_ack"] = self._clock()
        if self._careful:
            state.pop("careful", None)
            self._careful = False
        result.rows += len(batch.rows)
        result.skipped_lines += batch.skipped
        result.batches += 1
        result.bytes += batch.line_bytes
        for module, n in batch.by_module.items():
            result.by_module[module] = result.by_module.get(module, 0) + n

    def _save(self, state: dict[str, Any]) -> None:
        state["saved_at"] = self._clock()
        save_state(self.state_path, state)

    # ------------------------------------------------------------------ asking the table

    def _fence(self, query_id: str) -> None:
        """Return once no query with ``query_id`` runs on the server (it cannot store rows after that)."""
        deadline = time.monotonic() + _FENCE_WAIT
        while True:
            try:
                self.client.query("SELECT 1", query_id=query_id)
                return
            except ClickHouseError as exc:
                if exc.code != _QUERY_ALREADY_RUNNING or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def _resolve(self, state: dict[str, Any]) -> None:
        """Settle the batch in flight: how far did each of its files get into the table?

        A server may begin an insert only once its body has ended (18.16 reads the first
        megabyte before it registers the query), so the table is asked ``_SETTLE`` seconds
        later, each time after a fence, until two answers agree."""
        inflight = state["inflight"]
        self._fence(str(inflight["query_id"]))  # fails at once while the server is unreachable
        time.sleep(_SETTLE)  # the insert's connection is closed by now: let the server begin it, if it will
        files = [f for f in inflight.get("files") or [] if isinstance(f, dict)]
        landed: dict[str, int] | None = None
        for _ in range(10):
            self._fence(str(inflight["query_id"]))
            again = self._landed(inflight, files) if files else {}
            if again == landed:
                break
            landed = again
        else:
            raise ClickHouseError(f"the rows of batch {inflight['query_id']} keep changing; settling it later")
        assert landed is not None
        positions = state.setdefault("positions", {})
        for f in files:
            last = landed.get(f["key"])
            if last is None:
                continue
            end = int(f["end"]) if last >= int(f["last"]) else self._line_end(positions, f["module"], f["key"], last)
            entry = positions.setdefault(f["module"], {}).setdefault(f["key"], {"offset": 0})
            entry["offset"] = max(int(entry.get("offset", 0)), end)
        found = sum(1 for f in files if f["key"] in landed)
        if found == len(files) and all(landed[f["key"]] >= int(f["last"]) for f in files):
            state["positions"] = inflight.get("after") or positions  # all of it landed
            state["rows_shipped"] = int(state.get("rows_shipped") or 0) + int(inflight.get("rows") or 0)
        _log.info("batch %s of an earlier run: %d of %d files found in the table", inflight["query_id"], found,
                  len(files))
        state["inflight"] = None
        self._save(state)

    def _landed(self, inflight: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, int]:
        per_file = " OR ".join(
            f"(source_file = {literal(f['key'])} AND source_offset >= {int(f['start'])} "
            f"AND source_offset <= {int(f['last'])})" for f in files)
        where = [f"day = {literal(str(inflight['day']))}",
                 "module IN (" + ", ".join(literal(m) for m in inflight["modules"]) + ")",
                 f"timestamp >= {float(inflight['tmin']) - 1.0!r} AND timestamp <= {float(inflight['tmax']) + 1.0!r}",
                 f"source_host = {literal(str(inflight.get('source_host') or self._host))}", f"({per_file})"]
        if inflight.get("operations") is not None:
            where.append("operation IN (" + ", ".join(literal(o) for o in inflight["operations"]) + ")")
        rows = self.client.rows(f"SELECT source_file, max(source_offset) FROM {self.names.qualified} "
                                f"WHERE {' AND '.join(where)} GROUP BY source_file")
        return {r[0]: int(r[1]) for r in rows if len(r) == 2}

    def _adopt(self, state: dict[str, Any]) -> None:
        """No positions for this table: take them from what the table already holds from this host."""
        positions = state.setdefault("positions", {})
        for module, files in discover(self.log_dir).items():
            if self.settings.modules and module not in self.settings.modules:
                continue
            keys = {k: f for f in files if (k := file_identity(f.path, gz=f.gz)) is not None}
            if not keys:
                continue
            rows = self.client.rows(
                f"SELECT source_file, max(source_offset) FROM {self.names.qualified} WHERE module = {literal(module)} "
                f"AND source_host = {literal(self._host)} AND source_file IN ("
                + ", ".join(literal(k) for k in keys) + ") GROUP BY source_file")
            for key, last in ((r[0], int(r[1])) for r in rows if len(r) == 2):
                end = self._line_end(positions, module, key, last)
                positions.setdefault(module, {})[key] = {"offset": end}
                _log.info("%s: %s already holds %s up to byte %d", module, self.names.qualified, keys[key].name, end)

    def _line_end(self, positions: dict[str, Any], module: str, key: str, offset: int) -> int:
        """The offset just past the line that starts at ``offset`` in the file ``key``."""
        for f in discover(self.log_dir, module).get(module, []):
            if file_identity(f.path, gz=f.gz) != key.split("~", 1)[0]:
                continue
            try:
                with open(f.path, "rb") as handle:
                    reader: Any = gzip.GzipFile(fileobj=handle) if f.gz else handle
                    reader.seek(offset)
                    line = reader.readline()
            except (OSError, EOFError):
                break
            if line.endswith(b"\n"):
                return offset + len(line)
        _log.warning("%s/%s: the file holding byte %d is gone; its position stays where the table stopped",
                     module, key, offset)
        entry = positions.get(module, {}).get(key, {})
        return max(int(entry.get("offset", 0)), offset + 1)

    # ------------------------------------------------------------------ failures

    def _failed(self, state: dict[str, Any], result: ShipResult, exc: BaseException) -> None:
        now = self._clock()
        self._failures += 1
        delay = min(self.settings.max_backoff, 0.5 * 2 ** min(self._failures - 1, 30))
        delay *= random.uniform(0.8, 1.2)
        self._retry_at = now + delay
        first = self._error_since is None
        self._error_since = self._error_since or now
        result.failed, result.retry_in = str(exc), delay
        if first:
            _log.warning("shipping %s to %s stopped: %s (retrying with back-off, up to %gs apart)", self.log_dir,
                         self.target, exc, self.settings.max_backoff)
            self._event(False, error_message=str(exc))
        if state.get("version") == _STATE_VERSION:
            state.update(last_error=str(exc), error_since=self._error_since, retry_at=self._retry_at)
            try:
                self._save(state)
            except OSError as save_error:
                _log.warning("cannot save the shipping state: %s", save_error)

    def _recovered(self, state: dict[str, Any]) -> None:
        if self._error_since is not None:
            _log.warning("shipping %s to %s works again after %.0fs", self.log_dir, self.target,
                         self._clock() - self._error_since)
            self._event(True, failed_seconds=round(self._clock() - self._error_since, 3))
        self._failures, self._retry_at, self._error_since = 0, 0.0, None
        if state.get("last_error") is not None:
            state.update(last_error=None, error_since=None, retry_at=None)
            self._save(state)

    def _event(self, ok: bool, **fields: Any) -> None:
        if self._writer is not None:
            try:
                self._writer.log_event("clickhouse_ship", success=ok, target=self.target, **fields)
            except Exception:  # noqa: BLE001 - reporting must not stop shipping
                _log.debug("cannot record the shipping event", exc_info=True)

