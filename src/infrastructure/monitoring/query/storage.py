"""The log folder at a glance (``monitoring status``) and following a family (``monitoring tail -f``)."""

from __future__ import annotations

import gzip
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import LogParser
from .files import FamilyFile, discover, line_timestamp

__all__ = ["FamilyStatus", "FolderStatus", "count_lines", "follow", "folder_status"]

_TAIL_BLOCK = 64 * 1024


@dataclass
class FamilyStatus:
    module: str
    files: int
    bytes: int
    records: int
    oldest: float | None
    newest: float | None
    compressed_files: int = 0


@dataclass
class FolderStatus:
    log_dir: str
    families: list[FamilyStatus] = field(default_factory=list)
    free_bytes: int | None = None
    total_bytes: int | None = None
    faults: list[dict[str, Any]] = field(default_factory=list)
    """Per module: how many ``writer_fault`` lines, records dropped, the latest fault."""


def folder_status(log_dir: str | os.PathLike[str]) -> FolderStatus:
    folder = Path(log_dir)
    status = FolderStatus(str(folder))
    for module, files in discover(folder).items():
        status.families.append(FamilyStatus(
            module, len(files), sum(f.size for f in files), sum(count_lines(f.path, gz=f.gz) for f in files),
            _edge_timestamp(files[0], first=True), _edge_timestamp(files[-1], first=False),
            sum(1 for f in files if f.gz),
        ))
    try:
        usage = shutil.disk_usage(folder)
        status.free_bytes, status.total_bytes = usage.free, usage.total
    except OSError:
        pass
    if status.families:
        faults = LogParser(folder).query(operation="writer_fault", where=["metric_type=event"], group_by="module",
                                         aggs=["count", "sum:dropped", "latest:fault"])
        status.faults = faults.rows
    return status


def count_lines(path: str | os.PathLike[str], *, gz: bool = False) -> int:
    """Lines in a file (compressed or not); what could be read of a damaged one."""
    count = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as handle:
            while block := handle.read(1 << 22):
                count += block.count(b"\n")
    except (OSError, EOFError, zlib.error):
        pass
    return count


def _edge_timestamp(f: FamilyFile, *, first: bool) -> float | None:
    """The first record's timestamp of ``f`` (or its last record's)."""
    try:
        if f.gz:
            with gzip.open(f.path, "rb") as handle:
                if first:
                    data = handle.read(_TAIL_BLOCK)
                else:
                    data = b""
                    while block := handle.read(1 << 22):
                        data = (data + block)[-_TAIL_BLOCK:]
        else:
            with open(f.path, "rb") as handle:
                if not first:
                    handle.seek(max(0, f.size - _TAIL_BLOCK))
                data = handle.read(_TAIL_BLOCK)
    except (OSError, EOFError, zlib.error):
        return None
    lines = data.split(b"\n")
    for line in (lines if first else reversed(lines)):
        ts = line_timestamp(line)
        if ts is not None:
            return ts
    return None


def follow(log_dir: str | os.PathLike[str], module: str, *, lines: int = 10, poll: float = 0.25,
           keep_going: Callable[[], bool] = lambda: True) -> Iterator[bytes]:
    """The last ``lines`` lines of the family's live file, then every new line as it is written,
    across rotations: when the live file is renamed away, what remains in it is read to the end
    before the new live file is opened, so no line is skipped or shown twice."""
    folder = Path(log_dir)
    family = discover(folder, module).get(module)
    path = family[-1].path if family and family[-1].index == 0 else folder / f"{module}_metrics.log"
    handle = _open_wait(path, keep_going, poll)
    if handle is None:
        return
    try:
        size = os.fstat(handle.fileno()).st_size
        start = max(0, size - _TAIL_BLOCK * 4)
        handle.seek(start)
        data = handle.read(size - start)
        complete = data[: data.rfind(b"\n") + 1]
        yield from complete.splitlines()[-lines:] if lines > 0 else []
        handle.seek(start + len(complete))
        carry = b""
        while keep_going():
            block = handle.read()
            if block:
                data = carry + block
                cut = data.rfind(b"\n") + 1
                yield from data[:cut].splitlines()
                carry = data[cut:]
                continue
            if _replaced(path, handle):  # rotated: the old file is complete; continue in the next one
                rest = handle.read()
                tail = carry + rest
                yield from tail.splitlines()
                carry = b""
                following = _next_after(path, os.fstat(handle.fileno()))
                handle.close()
                new = _open_wait(following, keep_going, poll)
                if new is None:
                    return
                handle = new
                continue
            time.sleep(poll)
    finally:
        handle.close()


def _open_wait(path: Path, keep_going: Callable[[], bool], poll: float) -> Any:
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not keep_going():
                return None
            time.sleep(poll)


def _next_after(path: Path, done: os.stat_result) -> Path:
    """The file written after the one just finished: if it has been renamed to ``.k`` meanwhile
    (several rotations may happen between two looks), that is ``.k-1``, else the live file."""
    for index in range(1, 10_000):
        candidate = path.with_name(f"{path.name}.{index}")
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            break
        if (st.st_dev, st.st_ino) == (done.st_dev, done.st_ino):
            return path if index == 1 else path.with_name(f"{path.name}.{index - 1}")
    return path


def _replaced(path: Path, handle: Any) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False  # between the rename and the writer's next line: keep reading the old one
    mine = os.fstat(handle.fileno())
    return (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)
