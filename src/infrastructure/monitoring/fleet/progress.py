"""What the shipper has shipped, read from its state file: for the cleaner and ``monitoring status``.

No HTTP here. The state file (``.clickhouse_ship.json`` beside the logs) holds, per
family and per file identity, the offset up to which the table acknowledged the lines,
with the file's device and inode as seen last. A file is *shipped* when every complete
line it holds is below that offset. The state is only read: an unreadable one makes
every file count as unshipped (the safe side for a cleaner) until the shipper replaces it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._family import ALIAS_SUFFIX, family_member, family_name, read_aliases
from .._parsers import format_size
from ..query.files import discover, gzip_content_size, last_line_end, line_timestamp
from ..query.tailer import file_identity
from . import SHIP_STATE_FILE

__all__ = ["ShipStatus", "ShippedIndex", "read_ship_state", "shipped_index", "shipping_status"]


def read_ship_state(log_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The shipper's state, ``None`` when there is none, ``{"unreadable": reason}`` when it cannot be read."""
    path = Path(log_dir) / SHIP_STATE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"unreadable": str(exc)}
    try:
        state = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return {"unreadable": str(exc)}
    return state if isinstance(state, dict) else {"unreadable": "not a JSON object"}


def _family(path: Path) -> str | None:
    """The module a file belongs to, as the readers see it (``llm_metrics.log.3.gz`` -> ``llm``)."""
    member = family_member(path.name)
    if member is None:
        return None
    alias = read_aliases(path.parent, [f".{member[0]}{ALIAS_SUFFIX}"])
    return alias.get(member[0]) or family_name(member[0])


class ShippedIndex:
    """Answers "how many bytes of this file are not shipped yet?" from one reading of the state."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.readable = "unreadable" not in state
        self.modules = frozenset(str(m) for m in state.get("modules") or ())
        positions = state.get("positions") if self.readable else None
        self._by_key: dict[str, dict[str, dict[str, Any]]] = {}
        self._by_inode: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}
        for module, files in (positions or {}).items():
            if not isinstance(files, dict):
                continue
            self._by_key[module] = {k: e for k, e in files.items() if isinstance(e, dict)}
            for entry in self._by_key[module].values():
                if isinstance(entry.get("dev"), int) and isinstance(entry.get("ino"), int):
                    self._by_inode[(entry["dev"], entry["ino"])] = (module, entry)

    def pending_bytes(self, path: str | os.PathLike[str]) -> int:
        """Bytes of complete lines in ``path`` the table has not acknowledged (0 for files it does not ship)."""
        offset, content = self.position(path)
        return max(0, content - offset)

    def position(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """``(acknowledged up to, end of the last complete line)`` of ``path``, in its uncompressed content."""
        target = Path(path)
        module = _family(target)
        if module is None or (self.modules and module not in self.modules):
            return 0, 0
        gz = target.name.endswith(".gz")
        try:
            with open(target, "rb") as handle:
                st = os.fstat(handle.fileno())
                fd = handle.fileno()
                content = (gzip_content_size(fd) or st.st_size) if gz else last_line_end(fd, st.st_size)
        except FileNotFoundError:
            return 0, 0
        except OSError:
            return 0, 1  # cannot tell: not shipped
        if not self.readable:
            return 0, content
        found = self._by_inode.get((st.st_dev, st.st_ino))
        entry = found[1] if found is not None and bool(found[1].get("gz")) == gz else None
        if entry is None:
            key = file_identity(target, gz=gz)
            entry = self._by_key.get(module, {}).get(key) if key is not None else None
        if entry is None:
            return 0, content
        if gz and isinstance(entry.get("total"), int):
            content = entry["total"]
        return min(int(entry.get("offset", 0)), content), content


def shipped_index(log_dir: str | os.PathLike[str]) -> ShippedIndex | None:
    """The index of the folder's shipper, or ``None`` when this folder is not shipped."""
    state = read_ship_state(log_dir)
    return None if state is None else ShippedIndex(state)


@dataclass
class ShipStatus:
    """How far behind the files the table is (``monitoring status``)."""

    target: str
    source_host: str | None
    lag_bytes: int
    lag_seconds: float | None
    """Age of the oldest record not yet acknowledged (0 when caught up; ``None`` when unknown)."""
    pending_files: int
    last_ack: float | None
    rows_shipped: int
    last_error: str | None
    error_since: float | None
    retry_at: float | None
    readable: bool = True
    files: list[dict[str, Any]] = field(default_factory=list)

    def lines(self, now: float | None = None) -> list[str]:
        """A few lines of text for a terminal."""
        now = time.time() if now is None else now
        if not self.readable:
            return ["shipping to ClickHouse: the state file cannot be read (every file counts as unshipped)"]
        age = f", oldest unshipped record {self.lag_seconds:,.0f}s old" if self.lag_seconds else ""
        out = [f"shipping to ClickHouse: {self.target} as {self.source_host}: "
               + (f"{format_size(self.lag_bytes)} behind in {self.pending_files} files{age}" if self.lag_bytes
                  else "caught up")]
        if self.last_ack is not None:
            out.append(f"  last batch acknowledged {max(0.0, now - self.last_ack):,.0f}s ago; "
                       f"{self.rows_shipped:,} rows shipped so far")
        if self.last_error:
            since = f" (failing for {now - self.error_since:,.0f}s)" if self.error_since else ""
            retry = f"; next attempt in {max(0.0, self.retry_at - now):,.0f}s" if self.retry_at else ""
            out.append(f"  last error{since}: {self.last_error}{retry}")
        return out


def shipping_status(log_dir: str | os.PathLike[str], *, now: float | None = None) -> ShipStatus | None:
    """The shipper's lag behind the folder, or ``None`` when the folder is not shipped."""
    state = read_ship_state(log_dir)
    if state is None:
        return None
    index = ShippedIndex(state)
    now = time.time() if now is None else now
    status = ShipStatus(str(state.get("target", "?")), state.get("source_host"), 0, 0.0, 0,
                        _number(state.get("last_ack")), int(state.get("rows_shipped") or 0),
                        state.get("last_error"), _number(state.get("error_since")), _number(state.get("retry_at")),
                        readable=index.readable)
    oldest: list[float] = []  # per family: files are in time order within a family only
    for module, files in discover(log_dir).items():
        if index.modules and module not in index.modules:
            continue
        dated = False
        for f in files:
            offset, content = index.position(f.path)
            pending = content - offset
            if pending <= 0:
                continue
            status.lag_bytes += pending
            status.pending_files += 1
            status.files.append({"file": f.name, "pending_bytes": pending})
            if not dated and not f.gz:
                with contextlib.suppress(OSError), open(f.path, "rb") as handle:
                    first = line_timestamp(os.pread(handle.fileno(), 4096, offset).split(b"\n", 1)[0])
                    if first is not None:
                        oldest.append(first)
                        dated = True
    if status.lag_bytes == 0:
        status.lag_seconds = 0.0
    else:
        status.lag_seconds = max(0.0, now - min(oldest)) if oldest else None
    return status


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
