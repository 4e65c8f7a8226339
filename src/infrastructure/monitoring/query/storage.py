"""The log folder at a glance (``monitoring status``) and following a family (``monitoring tail -f``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import default_file_name
from .engine import LogParser
from .files import discover
from .tailer import Tailer

__all__ = ["FamilyStatus", "FolderStatus", "follow", "folder_status"]

_TAIL_BLOCK = 64 * 1024


@dataclass
class FamilyStatus:
    module: str
    files: int
    bytes: int
    records: int
    """Whole records; lines that are not (damaged, torn) are counted in ``skipped``."""
    oldest: float | None
    newest: float | None
    compressed_files: int = 0
    skipped: int = 0


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
    parser = LogParser(folder)
    for module, files in discover(folder).items():
        counted = parser.query(module, aggs=["count", "min:timestamp", "max:timestamp"], check_fields=False)
        row = counted.rows[0] if counted.rows else {}
        status.families.append(FamilyStatus(
            module, len(files), sum(f.size for f in files), row.get("count", 0),
            row.get("min_timestamp"), row.get("max_timestamp"), sum(1 for f in files if f.gz),
            counted.skipped.count,
        ))
    try:
        usage = shutil.disk_usage(folder)
        status.free_bytes, status.total_bytes = usage.free, usage.total
    except OSError:
        pass
    if status.families:
        faults = LogParser(folder).query(operation="writer_fault", where=["metric_type=event"], group_by="module",
                                         check_fields=False,
                                         aggs=["count", "sum:dropped", "latest:fault"])
        status.faults = faults.rows
    return status


def follow(log_dir: str | os.PathLike[str], module: str, *, lines: int = 10, poll: float = 0.25,
           keep_going: Callable[[], bool] = lambda: True) -> Iterator[bytes]:
    """The last ``lines`` lines of the family's live file, then every new line as it is written,
    across rotations and compression (the package's one follower, ``tailer.Tailer``): a file
    renamed away is read to its end before the next one, so no line is skipped or shown twice."""
    tailer = Tailer(log_dir, [module], start_at="end")
    for _ in tailer.chunks():
        pass  # the first poll notes where every file ends; nothing is returned
    if lines > 0:
        _rewind(tailer, Path(log_dir) / default_file_name(module), module, lines)
    while True:
        got = False
        for chunk in tailer.chunks():
            yield from chunk.lines
            tailer.commit(chunk)
            got = True
        if not keep_going():
            return
        if not got:
            time.sleep(poll)


def _rewind(tailer: Tailer, live: Path, module: str, lines: int) -> None:
    """Move the live file's position back to the start of its last ``lines`` complete lines."""
    family = discover(live.parent, module).get(module)
    path = family[-1].path if family and family[-1].index == 0 and not family[-1].gz else live
    found = tailer.locate(path)
    if found is None:
        return
    key = found[1]
    end = int(tailer.positions[module][key]["offset"])
    try:
        with open(path, "rb") as handle:
            start = max(0, end - _TAIL_BLOCK * 4)
            data = os.pread(handle.fileno(), end - start, start)
    except OSError:
        return
    cut = len(data)
    for _ in range(lines + 1):  # the newline before the first of the last `lines` lines
        cut = data.rfind(b"\n", 0, max(cut, 0))
        if cut < 0:
            break
    tailer.seek(module, key, start + cut + 1 if cut >= 0 or start == 0 else end)
