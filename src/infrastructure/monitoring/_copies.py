"""The columnar copies' file protocol: where copies live, how they are named, when one is stale.

Copies of log files (``query/columnar.py`` writes and reads them) live in the hidden folder
``<log_dir>/.columnar/``, each as ``<name>.parquet`` beside its sidecar ``<name>.json``, the
name telling whose copy it is: ``<base>@<device>-<inode>-<size>-<mtime_ns>-<fingerprint>`` (hex)
for a whole settled file, ``<base>@<device>-<inode>-<length>-0-<fingerprint>`` for the first
``length`` bytes of a file still written to. The cleaner and the scheduled service need only
these names (which copies a file has, how much room they take, which are orphans) and not the
query engine, so they import this module alone, as every side imports ``_family`` for the
family's own names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from ._family import Member, family_files

__all__ = [
    "FOLDER", "IN_FLIGHT_MARGIN", "PREFIX_MIN_BYTES", "SETTLED_SECONDS", "TMP_PREFIX", "build_in_worker", "copy_sizes",
    "has_work", "names", "parse_any", "parse_name", "prefix_due", "prefix_end", "prefix_index", "prune", "remove",
    "remove_copy_of", "repoint",
]

_log = logging.getLogger("infrastructure.monitoring.query.columnar")

FOLDER: Final = ".columnar"
SETTLED_SECONDS: Final = 10.0
"""A backup untouched this long is settled: no writer that missed the rotation still appends."""
PREFIX_MIN_BYTES: Final = 1 << 20
"""A live file's settled part is copied once it holds this much not yet copied, and again each time
the part not yet copied is as large as the part copied (so a file is parsed about twice in all)."""
IN_FLIGHT_MARGIN: Final = 2 << 20
"""Bytes at the end of a file written a moment ago that are never copied: a line still being
written (the writers cap lines at 1 MiB) may become visible page by page."""
TMP_PREFIX: Final = ".tmp-"
_STALE_TMP_SECONDS: Final = 3600.0
_BUILD_MEMORY: Final = "64MB"


def _family_files(log_dir: str | os.PathLike[str]) -> list[Member]:
    try:
        return family_files(log_dir)
    except OSError:
        return []


def parse_name(name: str) -> tuple[str, tuple[int, int, int, int], str] | None:
    """``<base>@<dev>-<ino>-<size>-<mtime>-<fp>.parquet`` -> (base, (dev, ino, size, mtime), fingerprint)."""
    if not name.endswith(".parquet") or "@" not in name:
        return None
    base, _, rest = name[: -len(".parquet")].rpartition("@")
    parts = rest.split("-")
    if len(parts) != 5:
        return None
    try:
        dev, ino, size, mtime = (int(p, 16) for p in parts[:4])
    except ValueError:
        return None
    return base, (dev, ino, size, mtime), parts[4]


def parse_any(name: str) -> tuple[str, tuple[int, int, int, int], str] | None:
    """``parse_name`` of a copy's name or of its sidecar's (``<name>.json`` reads as ``<name>.parquet``)."""
    return parse_name(name[: -len(".json")] + ".parquet" if name.endswith(".json") else name)


def prefix_index(names: Iterable[str]) -> dict[tuple[int, int], list[tuple[int, str]]]:
    """(device, inode) -> ``(length, name)`` of each prefix copy among ``names`` (sidecars aside)."""
    found: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for name in names:
        parsed = parse_name(name)
        if parsed is not None and parsed[1][3] == 0:
            found.setdefault(parsed[1][:2], []).append((parsed[1][2], name))
    return found


def prefix_end(size: int, mtime: float, now: float) -> int:
    """How far a live file's prefix copy may reach (before the cut at a line end): all of a file idle
    for ``SETTLED_SECONDS``, else all but its last ``IN_FLIGHT_MARGIN`` bytes."""
    return size if now - mtime > SETTLED_SECONDS else size - IN_FLIGHT_MARGIN


def prefix_due(end: int, done: int) -> bool:
    """Is a prefix copy up to ``end`` worth making when the longest one holds ``done`` bytes? The scheduled
    service asks with ``prefix_end`` (no file read), the builder again with the line end before it."""
    return end > 0 and end - done >= max(PREFIX_MIN_BYTES, done)


def remove(folder: str, name: str) -> None:
    """Delete the copy ``name`` and its sidecar (whatever is there of them)."""
    for suffix in (".parquet", ".json"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name + suffix))


def repoint(log_dir: str | os.PathLike[str], base: str, old: os.stat_result, new: os.stat_result) -> None:
    """The cleaner replaced a file by its ``.gz`` (same content, same modification time): the copy of
    the old file now belongs to the archive. Never raises."""
    folder = os.path.join(log_dir, FOLDER)
    prefix = f"{base}@{old.st_dev:x}-{old.st_ino:x}-{old.st_size:x}-{old.st_mtime_ns:x}-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and entry.name.endswith(".parquet"):
                fp = entry.name[len(prefix): -len(".parquet")]
                target = f"{base}@{new.st_dev:x}-{new.st_ino:x}-{new.st_size:x}-{new.st_mtime_ns:x}-{fp}"
                old_name = entry.name[: -len(".parquet")]
                os.rename(os.path.join(folder, old_name + ".json"), os.path.join(folder, target + ".json"))
                os.rename(entry.path, os.path.join(folder, target + ".parquet"))


def copies(folder: str) -> Iterator[tuple[os.DirEntry[str], tuple[str, tuple[int, int, int, int], str]]]:
    with contextlib.suppress(OSError), os.scandir(folder) as listing:
        for entry in listing:
            parsed = parse_name(entry.name)
            if parsed is not None:
                yield entry, parsed


def copy_sizes(log_dir: str | os.PathLike[str]) -> dict[tuple[int, int], int]:
    """(device, inode) of each source -> bytes its copies and sidecars take (for the cleaner's budget)."""
    folder = os.path.join(log_dir, FOLDER)
    sizes: dict[tuple[int, int], int] = {}
    for entry, (_, (dev, ino, _s, _m), _) in copies(folder):
        with contextlib.suppress(OSError):
            total = entry.stat().st_size
            with contextlib.suppress(OSError):
                total += os.stat(entry.path[: -len(".parquet")] + ".json").st_size
            sizes[(dev, ino)] = sizes.get((dev, ino), 0) + total
    return sizes


def remove_copy_of(log_dir: str | os.PathLike[str], dev: int, ino: int) -> int:
    """Delete the copies of a source that is being deleted; the bytes freed."""
    folder = os.path.join(log_dir, FOLDER)
    freed = 0
    for _entry, (base, (d, i, n, m), fp) in list(copies(folder)):
        if (d, i) == (dev, ino):
            name = f"{base}@{d:x}-{i:x}-{n:x}-{m:x}-{fp}"
            for suffix in (".parquet", ".json"):
                with contextlib.suppress(OSError):
                    freed += os.stat(os.path.join(folder, name + suffix)).st_size
            remove(folder, name)
    return freed


def prune(log_dir: str | os.PathLike[str], now: float | None = None) -> int:
    """Delete every copy (and sidecar) whose source is gone or changed, every prefix copy a longer one
    or a whole copy supersedes, and stale temporary files. The number of files removed."""
    folder = os.path.join(log_dir, FOLDER)
    if not os.path.isdir(folder):
        return 0
    now = time.time() if now is None else now
    files = {(m.stat.st_dev, m.stat.st_ino): m.stat for m in _family_files(log_dir)}
    with os.scandir(folder) as listing:
        entries = list(listing)
    parsed_names = {e.name: parse_any(e.name) for e in entries}
    whole = {p[1][:2] for p in parsed_names.values() if p is not None and p[1][3]}
    longest: dict[tuple[int, int], int] = {}
    for p in parsed_names.values():
        if p is not None and not p[1][3]:
            longest[p[1][:2]] = max(longest.get(p[1][:2], 0), p[1][2])
    removed = 0
    for entry in entries:
        parsed = parsed_names[entry.name]
        if entry.name.startswith(TMP_PREFIX):
            try:
                stale = now - entry.stat().st_mtime > _STALE_TMP_SECONDS
            except OSError:
                continue
        elif parsed is None:
            continue
        else:
            (dev, ino, n, mtime) = parsed[1]
            found = files.get((dev, ino))
            if mtime:
                stale = found is None or (found.st_size, found.st_mtime_ns) != (n, mtime)
            else:
                stale = found is None or found.st_size < n or (dev, ino) in whole or n < longest[(dev, ino)]
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def build_in_worker(log_dir: str | os.PathLike[str], *, max_seconds: float = 300.0, nice: int = 10,
                    memory_limit: str = _BUILD_MEMORY) -> int:
    """Run ``query.columnar.build_pending`` in a child process at low priority (its memory goes back to
    the system when it ends, and this process never loads the query engine); the child's exit code.
    Used by the scheduled service, which calls it every ``query.build_interval_seconds``."""
    if not has_work(log_dir):
        return 0
    command = [sys.executable, "-c", "import sys; from infrastructure.monitoring.query.columnar import _main; "
               "sys.exit(_main())", str(log_dir),
               "--max-seconds", str(max_seconds), "--nice", str(nice), "--memory", memory_limit]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=max_seconds + 120, check=False)
    if done.returncode != 0:
        _log.warning("columnar build in %s failed (exit %d): %s", log_dir, done.returncode, done.stderr[-2000:])
    return done.returncode


def has_work(log_dir: str | os.PathLike[str]) -> bool:
    """Cheaply, from names and sizes: a settled backup without a copy, a live file grown enough since
    its prefix copy, or a copy without a source?"""
    folder = os.path.join(log_dir, FOLDER)
    copied: dict[tuple[int, int], int] = {}
    for name in names(folder):
        parsed = parse_any(name)
        if parsed is not None:
            key = parsed[1][:2]
            copied[key] = max(copied.get(key, 0), parsed[1][2])
    now = time.time()
    seen = set()
    for source in _family_files(log_dir):
        st = source.stat
        key = (st.st_dev, st.st_ino)
        seen.add(key)
        done = copied.get(key)
        if source.index > 0:
            if now - st.st_mtime >= SETTLED_SECONDS and done != st.st_size:
                return True
        elif not source.gz and prefix_due(prefix_end(st.st_size, st.st_mtime, now), done or 0):
            return True
    return bool(set(copied) - seen)


def names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
