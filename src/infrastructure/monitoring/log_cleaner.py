"""Retention: delete, retire or compress old files of the log folder, and nothing else.

A run lists the folder once, decides, then acts, and writes every action as a JSON
line to ``cleaner_metrics.log`` (nothing is kept in memory between runs):

1. **age** — a file the patterns match whose modification time is older than
   ``retention_days`` is deleted. A family's *live* file (one a writer of this package
   appends to) is never deleted: when it has been idle that long it is *retired* — renamed
   to ``.1`` under the family lock exactly as a rotation would — and a later run deletes
   it once it is still old. A line a writer races into it lands in the renamed file and
   refreshes its modification time, so it is never lost;
2. **compression** (``compress_after_days``) — rotated files are gzipped to ``.N.gz`` in a
   hidden temporary file, then swapped in under the family lock only if the original is
   unchanged; the query engine reads ``.gz`` transparently;
3. **budget** (``max_total_size``) and **disk floor** (``min_free_space``) — the oldest
   rotated files go first until both hold. Live files never count as candidates.

Safety rests on three rules. The folder is walked with directory descriptors and
``O_NOFOLLOW``, so no symlink is followed and every delete or rename is resolved against
the directory that was checked (swapping a folder for a symlink mid-run redirects
nothing). Symlinks themselves are skipped, never deleted. Before a file is deleted or
replaced, its inode is checked again under the family's rotation lock, so a rotation
that renamed ``.3`` to ``.4`` meanwhile is noticed and the file is left for the next run.

Only one run at a time per folder, across processes: a run takes ``.cleanup.lock`` with a
non-blocking ``flock`` and a run that finds it taken returns at once saying who holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import logging
import os
import re
import shutil
import socket
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fnmatch import translate
from pathlib import Path
from typing import Any, Final

from . import _copies
from ._family import (
    LOCK_SUFFIX,
    bump_generation,
    family_lock,
    last_rotation,
    parse_backup_name,
    rotated_name,
    shift_backups,
)
from ._parsers import format_size
from .config import CleanupSettings, resolve_log_patterns
from .fleet import SHIP_STATE_FILE
from .interfaces import MetricsWriter

__all__ = ["CleanupResult", "LogCleaner", "RUN_LOCK_NAME"]

_log = logging.getLogger("infrastructure.monitoring.cleaner")

RUN_LOCK_NAME: Final = ".cleanup.lock"
"""Hidden file in the log folder whose ``flock`` lets one cleanup run at a time."""
_TMP_PREFIX: Final = ".cleanup-tmp-"
_DAY: Final = 86400.0
_STALE_TMP_SECONDS: Final = 3600.0
"""A compression's temporary file this old belongs to a run that was killed."""
_SETTLE_SECONDS: Final = 2.0
"""A file written this recently is never deleted or compressed, whatever the settings say."""
_DETAIL_LIMIT: Final = 1000
"""The result lists at most this many paths; the counts are always complete."""
_CHUNK: Final = 1 << 20
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_FOLDER: Final = "the log folder does not exist yet"
_FORCED: Final = ("max_total_size", "min_free_space")
"""Reasons that delete a file even when its lines are not shipped yet (the disk comes first)."""


@dataclass(slots=True)
class CleanupResult:
    """What one run did (or, in a dry run, would do).

    The counts are complete; ``deleted``/``compressed``/``failures`` list at most 1,000
    entries each (``cleaner_metrics.log`` has every one).
    """

    log_dir: str
    enabled: bool = True
    dry_run: bool = False
    skipped: str | None = None
    """Why nothing was done: disabled, another run holds the lock, a run finished recently."""
    files_scanned: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    files_retired: int = 0
    files_compressed: int = 0
    bytes_saved: int = 0
    """Bytes gained by compression (original minus ``.gz`` sizes)."""
    errors: int = 0
    files_changed: int = 0
    """Files renamed or written to between listing and acting: left for the next run."""
    symlinks_skipped: int = 0
    files_kept_unshipped: int = 0
    """Old files kept because the ClickHouse shipper has not shipped all their lines yet."""
    unshipped_bytes_lost: int = 0
    """Bytes never shipped, in files a size budget or the disk floor forced out (logged as errors)."""
    bytes_remaining: int = 0
    """Size of every file the patterns still match after the run."""
    free_bytes: int | None = None
    duration_seconds: float = 0.0
    deleted: list[str] = field(default_factory=list)
    compressed: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(path, reason)`` of each file that could not be handled."""

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.skipped:
            return f"cleanup of {self.log_dir} skipped: {self.skipped}"
        verb = "would delete" if self.dry_run else "deleted"
        parts = [f"{verb} {self.files_deleted} files ({_human(self.bytes_freed)})"]
        if self.files_retired:
            parts.append(f"{'would retire' if self.dry_run else 'retired'} {self.files_retired} idle live files")
        if self.files_compressed:
            parts.append(f"{'would compress' if self.dry_run else 'compressed'} {self.files_compressed} files"
                         + ("" if self.dry_run else f" (saved {_human(self.bytes_saved)})"))
        if self.files_kept_unshipped:
            parts.append(f"kept {self.files_kept_unshipped} files not yet shipped")
        if self.unshipped_bytes_lost:
            parts.append(f"LOST {_human(self.unshipped_bytes_lost)} never shipped")
        parts.append(f"{self.errors} errors")
        return (f"cleanup of {self.log_dir}: " + ", ".join(parts)
                + f"; {self.files_scanned} files scanned in {self.duration_seconds:.3f}s")


_human = format_size


@dataclass(slots=True)
class _Entry:
    folder: str
    """Relative folder inside the log folder ('' for the folder itself)."""
    name: str
    size: int
    mtime: float
    ino: tuple[int, int]
    family: str | None
    """The live file's name when this file belongs to a family of this package."""
    index: int
    live: bool
    gz: bool

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def rotated(self) -> bool:
        """Candidates for compression, budget and disk floor: never a file being appended to."""
        return not self.live and (self.family is not None or not self.name.endswith(".log"))


class LogCleaner:
    """Applies ``CleanupSettings`` to one log folder.

        cleaner = factory.setup_log_cleaner({"retention_days": 7})
        result = cleaner.cleanup_logs()          # or cleanup_logs(dry_run=True)
        print(result)                            # deleted 12 files (340.2 MiB), 0 errors; ...

    ``audit`` receives one JSON line per action; ``backup_count`` is the writers' rotation
    depth, used when an idle live file is retired. Raises ``ConfigError`` at construction
    when a pattern could reach outside ``log_dir``; a run itself never raises.
    """

    def __init__(
        self,
        settings: CleanupSettings,
        log_dir: str | os.PathLike[str],
        *,
        audit: MetricsWriter | None = None,
        backup_count: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.log_dir = Path(os.path.abspath(log_dir))
        self._audit = audit
        self._backup_count = backup_count
        self._clock = clock
        self._shipping: Any = None
        self._full, self._prefix = _compile(resolve_log_patterns(settings.log_patterns, self.log_dir))

    def __repr__(self) -> str:
        s = self.settings
        return (f"LogCleaner({str(self.log_dir)!r}, retention_days={s.retention_days:g}, "
                f"patterns={list(s.log_patterns)!r}, dry_run={s.dry_run})")

    # ------------------------------------------------------------------ entry point

    def cleanup_logs(
        self,
        *,
        dry_run: bool | None = None,
        retention_days: float | None = None,
        min_interval: float = 0.0,
    ) -> CleanupResult:
        """Run once. ``dry_run``/``retention_days`` override the settings for this run;
        ``min_interval`` skips the run when any process finished one that recently (the
        scheduled service passes half its interval, so N workers clean once, not N times)."""
        dry = self.settings.dry_run if dry_run is None else dry_run
        result = CleanupResult(log_dir=str(self.log_dir), enabled=self.settings.enabled, dry_run=dry)
        if not self.settings.enabled:
            result.skipped = "log cleanup is disabled (log_cleanup.enabled: false)"
            return result
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be a number > 0, got {retention_days!r}")
        started = time.perf_counter()
        try:
            root = os.open(self.log_dir, _DIR_FLAGS)
        except FileNotFoundError:
            result.skipped = _NO_FOLDER
            return result
        except OSError as exc:
            self._fail(result, ".", exc)
            return result
        try:
            self._run_locked(root, result, dry, retention_days or self.settings.retention_days, min_interval)
        except Exception as exc:  # noqa: BLE001 - retention must never take the application down
            _log.exception("log cleanup of %s failed", self.log_dir)
            self._fail(result, ".", exc)
        finally:
            os.close(root)
            result.duration_seconds = time.perf_counter() - started
        if result.skipped != _NO_FOLDER:
            self._write("cleanup_run", **{k: v for k, v in result.to_dict().items()
                                          if k not in ("deleted", "compressed", "failures")})
        return result

    def _run_locked(self, root: int, result: CleanupResult, dry: bool, days: float, min_interval: float) -> None:
        if dry:
            self._run(root, result, dry, days)
            return
        try:
            lock = os.open(RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=root)
        except OSError as exc:
            self._fail(result, RUN_LOCK_NAME, exc)
            return
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_stamp(lock)
                who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                result.skipped = f"another cleanup of this folder is running ({who}); this run skipped"
                return
            stamp = _read_stamp(lock)
            now = self._clock()
            finished = stamp.get("finished") if stamp else None
            if min_interval > 0 and isinstance(finished, (int, float)) and 0 <= now - finished < min_interval:
                result.skipped = (f"a cleanup finished {now - finished:.0f}s ago (pid {stamp.get('pid')}); "
                                  f"next one due after {min_interval:.0f}s")
                return
            _write_stamp(lock, {"pid": os.getpid(), "host": socket.gethostname(), "started": now,
                                "finished": finished})
            self._run(root, result, dry, days)
            _write_stamp(lock, {"pid": os.getpid(), "host": socket.gethostname(), "started": now,
                                "finished": self._clock()})
        finally:
            os.close(lock)

    # ------------------------------------------------------------------ one run

    def _run(self, root: int, result: CleanupResult, dry: bool, days: float) -> None:
        self._shipping = _shipping_index(self.log_dir)
        now = self._clock()
        folders: dict[str, int] = {"": root}
        try:
            leftovers: list[_Entry] = []
            entries = self._scan(folders, result, leftovers)
            result.files_scanned = len(entries)
            cutoff = now - days * _DAY
            settled = now - _SETTLE_SECONDS
            gone: set[int] = set()
            self._remove_leftovers(folders, entries, leftovers, now, dry, result, gone)

            old = [i for i, e in enumerate(entries) if i not in gone and e.mtime < min(cutoff, settled)]
            self._apply(folders, entries, old, "age", dry, result, gone, cutoff)

            compress_days = self.settings.compress_after_days
            if compress_days is not None:
                limit = min(now - compress_days * _DAY, settled)
                for i, e in enumerate(entries):
                    if i not in gone and e.rotated and not e.gz and e.mtime < limit:
                        self._compress(folders[e.folder], e, dry, result)

            self._budget(folders, entries, dry, result, gone)
            if not dry:
                _copies.prune(self.log_dir)  # no copy outlives its source
            result.bytes_remaining = sum(e.size for i, e in enumerate(entries) if i not in gone)
            with contextlib.suppress(OSError):
                result.free_bytes = shutil.disk_usage(self.log_dir).free
        finally:
            for name, fd in folders.items():
                if name:
                    os.close(fd)

    def _remove_leftovers(
        self, folders: dict[str, int], entries: list[_Entry], leftovers: list[_Entry], now: float, dry: bool,
        result: CleanupResult, gone: set[int],
    ) -> None:
        """What an interrupted compression can leave: a hidden temporary file, or ``.N.gz``
        beside the ``.N`` it was made from (killed between the swap's two steps). The plain
        file always wins, so nothing is ever counted twice by a reader."""
        stale = [e for e in leftovers if e.mtime < now - _STALE_TMP_SECONDS]
        if stale:
            self._apply(folders, stale, list(range(len(stale))), "interrupted_compression", dry, result, set())
        plain = {(e.folder, e.name) for e in entries if not e.gz}
        twins = [i for i, e in enumerate(entries) if e.gz and (e.folder, e.name[:-3]) in plain]
        if twins:
            self._apply(folders, entries, twins, "duplicate_of_plain", dry, result, gone)

    def _scan(self, folders: dict[str, int], result: CleanupResult, leftovers: list[_Entry]) -> list[_Entry]:
        """Walk only the folders the patterns reach, never through a symlink."""
        entries: list[_Entry] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            try:
                listing = os.scandir(folders[folder])
            except OSError as exc:
                self._fail(result, folder or ".", exc)
                continue
            with listing:
                entries.extend(self._scan_folder(folder, listing, folders, pending, result, leftovers))
        return entries

    def _scan_folder(
        self, folder: str, listing: Iterator[os.DirEntry[str]], folders: dict[str, int], pending: list[str],
        result: CleanupResult, leftovers: list[_Entry],
    ) -> list[_Entry]:
        prefix = tuple(folder.split("/")) if folder else ()
        found: list[_Entry] = []
        controlled: set[str] = set()
        for item in listing:
            name = item.name
            if name.startswith("."):
                _note_hidden(folder, item, controlled, leftovers)
            rel = (*prefix, name)
            try:
                if item.is_symlink():
                    if self._matches(rel, full=True) or self._matches(rel, full=False):
                        result.symlinks_skipped += 1
                    continue
                if item.is_dir(follow_symlinks=False):
                    if self._matches(rel, full=False):
                        self._open_folder(folders, folder, name, result)
                        pending.append("/".join(rel))
                    continue
                if not item.is_file(follow_symlinks=False) or not self._matches(rel, full=True):
                    continue
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished while listing: nothing to do
            except OSError as exc:
                self._fail(result, "/".join(rel), exc)
                continue
            parsed = parse_backup_name(name)
            found.append(_Entry(folder, name, st.st_size, st.st_mtime, (st.st_dev, st.st_ino),
                                parsed[0] if parsed else None, parsed[1] if parsed else 0,
                                False, bool(parsed and parsed[2])))
        for entry in found:
            if entry.name in controlled:
                entry.live, entry.family = True, entry.name
            elif entry.family not in controlled:
                entry.family = None
        return found

    def _matches(self, rel: tuple[str, ...], *, full: bool) -> bool:
        """Does ``rel`` match a whole pattern (``full``) or the folder part of a longer one?"""
        regex = (self._full if full else self._prefix).get(len(rel))
        return regex is not None and regex.match("/".join(rel)) is not None

    def _open_folder(self, folders: dict[str, int], parent: str, name: str, result: CleanupResult) -> None:
        rel = f"{parent}/{name}" if parent else name
        try:
            folders[rel] = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=folders[parent])
        except OSError as exc:
            self._fail(result, rel, exc)

    # ------------------------------------------------------------------ acting

    def _apply(
        self,
        folders: dict[str, int],
        entries: list[_Entry],
        chosen: list[int],
        reason: str,
        dry: bool,
        result: CleanupResult,
        gone: set[int],
        cutoff: float | None = None,
    ) -> None:
        """Delete (or retire, for live files) the chosen entries, one family lock at a time."""
        by_family: dict[tuple[str, str | None], list[int]] = {}
        for i in chosen:
            e = entries[i]
            by_family.setdefault((e.folder, e.family), []).append(i)
        for (folder, family), members in by_family.items():
            if folder not in folders:
                continue
            folder_fd = folders[folder]
            if dry or family is None:
                for i in members:
                    self._delete_one(folder_fd, entries[i], reason, dry, result, gone, i, cutoff)
                continue
            try:
                with family_lock(folder_fd, family) as control:
                    if control is not None and self._clock() - last_rotation(control) < _SETTLE_SECONDS:
                        result.files_changed += len(members)  # a writer may still hold a renamed file
                        continue
                    for i in members:
                        e = entries[i]
                        if e.live:
                            self._retire(folder_fd, control, e, result, cutoff)
                        else:
                            self._delete_one(folder_fd, e, reason, dry, result, gone, i, cutoff)
            except OSError as exc:
                self._fail(result, f"{folder}/{family}" if folder else str(family), exc)

    def _delete_one(
        self, folder_fd: int, e: _Entry, reason: str, dry: bool, result: CleanupResult,
        gone: set[int], index: int, cutoff: float | None,
    ) -> None:
        if e.live:
            if dry:
                result.files_retired += 1
                self._write("cleanup_retire", path=e.rel, bytes=e.size, age_days=self._age(e), dry_run=True)
            return
        size = e.size
        if not self._may_delete(e, reason, result):
            return
        if not dry:
            try:
                st = os.stat(e.name, dir_fd=folder_fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != e.ino or not stat.S_ISREG(st.st_mode) or (
                    cutoff is not None and st.st_mtime >= cutoff
                ):
                    result.files_changed += 1
                    return
                size = st.st_size
                os.unlink(e.name, dir_fd=folder_fd)
                if not e.folder:
                    result.bytes_freed += _copies.remove_copy_of(self.log_dir, st.st_dev, st.st_ino)
            except FileNotFoundError:
                gone.add(index)  # removed by someone else between listing and now: not an error
                return
            except OSError as exc:
                self._fail(result, e.rel, exc)
                return
        gone.add(index)
        result.files_deleted += 1
        result.bytes_freed += size
        if len(result.deleted) < _DETAIL_LIMIT:
            result.deleted.append(e.rel)
        self._write("cleanup_delete", path=e.rel, bytes=size, age_days=self._age(e), reason=reason, dry_run=dry)

    def _may_delete(self, e: _Entry, reason: str, result: CleanupResult) -> bool:
        """While a ClickHouse shipper follows the folder, a file with lines it has not shipped is
        kept, unless a size budget or the disk floor forces it out: then the loss is counted and
        logged as an error."""
        index = self._shipping
        if index is None or e.folder or reason in ("duplicate_of_plain", "interrupted_compression"):
            return True
        pending = index.pending_bytes(self.log_dir / e.name)
        if not pending:
            return True
        if reason not in _FORCED:
            result.files_kept_unshipped += 1
            self._write("cleanup_keep_unshipped", path=e.rel, bytes=e.size, unshipped_bytes=pending, reason=reason)
            return False
        result.unshipped_bytes_lost += pending
        _log.error("log cleanup: %s deletes %s holding %d bytes never shipped to ClickHouse", reason, e.rel, pending)
        self._write("cleanup_unshipped_loss", path=e.rel, unshipped_bytes=pending, reason=reason, success=False)
        return True

    def _retire(self, folder_fd: int, control: int | None, e: _Entry, result: CleanupResult,
                cutoff: float | None) -> None:
        """Rotate an idle live file away, as the writers' own rotation would (caller holds the lock)."""
        try:
            st = os.stat(e.name, dir_fd=folder_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != e.ino or st.st_size == 0 or (cutoff is not None and st.st_mtime >= cutoff):
                return  # written to since listing (still in use), or empty: leave it
            shift_backups(folder_fd, e.name, self._backup_count)
            os.rename(e.name, rotated_name(e.name, 1), src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            if control is not None:
                bump_generation(control)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(result, e.rel, exc)
            return
        result.files_retired += 1
        self._write("cleanup_retire", path=e.rel, bytes=st.st_size, age_days=self._age(e), dry_run=False)

    def _compress(self, folder_fd: int, e: _Entry, dry: bool, result: CleanupResult) -> None:
        gz_name = e.name + ".gz"
        if dry:
            result.files_compressed += 1
            if len(result.compressed) < _DETAIL_LIMIT:
                result.compressed.append(e.rel)
            self._write("cleanup_compress", path=e.rel, bytes=e.size, dry_run=True)
            return
        tmp = f"{_TMP_PREFIX}{os.getpid()}-{gz_name}"
        try:
            src = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(result, e.rel, exc)
            return
        try:
            st = os.fstat(src)
            if (st.st_dev, st.st_ino) != e.ino or not stat.S_ISREG(st.st_mode):
                result.files_changed += 1
                return
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                          stat.S_IMODE(st.st_mode), dir_fd=folder_fd)
            try:
                with os.fdopen(out, "wb", closefd=False) as raw, gzip.GzipFile(
                    filename=e.name, mode="wb", fileobj=raw, mtime=int(st.st_mtime), compresslevel=6
                ) as packed:
                    while chunk := os.read(src, _CHUNK):
                        packed.write(chunk)
                os.fsync(out)
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
                packed_size = os.fstat(out).st_size
            finally:
                os.close(out)
            swapped = self._swap_in(folder_fd, e, st, tmp, gz_name, result)
        except (OSError, zlib.error) as exc:
            self._fail(result, e.rel, exc)
            swapped = False
        finally:
            os.close(src)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder_fd)
        if swapped:
            result.files_compressed += 1
            result.bytes_saved += st.st_size - packed_size
            e.name, e.size, e.gz = gz_name, packed_size, True
            if len(result.compressed) < _DETAIL_LIMIT:
                result.compressed.append(e.rel)
            self._write("cleanup_compress", path=e.rel, bytes=st.st_size, compressed_bytes=packed_size,
                        dry_run=False)

    def _swap_in(self, folder_fd: int, e: _Entry, st: os.stat_result, tmp: str, gz_name: str,
                 result: CleanupResult) -> bool:
        """Replace the original by its ``.gz`` only if nobody renamed or appended to it meanwhile."""
        with family_lock(folder_fd, e.family or e.name) as control:
            if control is not None and self._clock() - last_rotation(control) < _SETTLE_SECONDS:
                result.files_changed += 1
                return False
            try:
                now = os.stat(e.name, dir_fd=folder_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (
                st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
            ):
                result.files_changed += 1
                return False
            os.rename(tmp, gz_name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            os.unlink(e.name, dir_fd=folder_fd)
            if not e.folder:  # the columnar copy of the file now stands for its archive
                parsed = parse_backup_name(e.name)
                with contextlib.suppress(OSError):
                    _copies.repoint(self.log_dir, parsed[0] if parsed else e.name, now,
                                        os.stat(gz_name, dir_fd=folder_fd, follow_symlinks=False))
        return True

    def _budget(self, folders: dict[str, int], entries: list[_Entry], dry: bool,
                result: CleanupResult, gone: set[int]) -> None:
        """Oldest rotated files first, until the folder fits ``max_total_size`` and the disk
        keeps ``min_free_space`` free."""
        budget = self.settings.max_total_size
        floor = self.settings.min_free_space
        if budget is None and floor is None:
            return
        total = sum(e.size for i, e in enumerate(entries) if i not in gone)
        copies = _copies.copy_sizes(self.log_dir)  # columnar copies count against the budget too
        total += sum(copies.values())
        order = sorted((i for i, e in enumerate(entries) if i not in gone and e.rotated),
                       key=lambda i: (entries[i].mtime, -entries[i].index))
        pending_free = 0  # a dry run frees nothing: count what it would have freed
        for i in order:
            reason = None
            if budget is not None and total > budget:
                reason = "max_total_size"
            elif floor is not None:
                try:
                    usage = shutil.disk_usage(self.log_dir)
                except OSError:
                    return
                if usage.free + pending_free < floor.required(usage.total):
                    reason = "min_free_space"
            if reason is None:
                return
            before = result.bytes_freed
            self._apply(folders, entries, [i], reason, dry, result, gone)
            if i in gone:
                e = entries[i]
                total -= e.size + (0 if e.folder else copies.get(e.ino, 0))
                if dry:
                    pending_free += result.bytes_freed - before

    # ------------------------------------------------------------------ reporting

    def _age(self, e: _Entry) -> float:
        return round((self._clock() - e.mtime) / _DAY, 3)

    def _fail(self, result: CleanupResult, rel: str, exc: BaseException) -> None:
        result.errors += 1
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        if len(result.failures) < _DETAIL_LIMIT:
            result.failures.append((rel, reason))
        code = errno.errorcode.get(exc.errno, None) if isinstance(exc, OSError) and exc.errno else None
        _log.warning("log cleanup: cannot handle %s in %s: %s", rel, self.log_dir, reason)
        self._write("cleanup_error", path=rel, error=reason, error_type=code or type(exc).__name__, success=False)

    def _write(self, operation: str, **fields: Any) -> None:
        if self._audit is not None:
            self._audit.log_event(operation, **fields)


def _shipping_index(log_dir: Path) -> Any:
    """What the folder's ClickHouse shipper has shipped (``None`` when it is not shipped); the
    shipper's state file is only read, and no network code is loaded."""
    if not (log_dir / SHIP_STATE_FILE).exists():
        return None
    from .fleet.progress import shipped_index  # only in folders that are shipped: it reads the query side

    return shipped_index(log_dir)


def _note_hidden(folder: str, item: os.DirEntry[str], controlled: set[str], leftovers: list[_Entry]) -> None:
    """Hidden names are never cleaned by pattern, but they tell which files are live (a
    writer's control file sits beside each) and which are an interrupted compression's."""
    name = item.name
    if name.endswith(LOCK_SUFFIX):
        controlled.add(name[1:-len(LOCK_SUFFIX)])
    elif name.startswith(_TMP_PREFIX):
        with contextlib.suppress(OSError):
            if item.is_file(follow_symlinks=False):
                st = item.stat(follow_symlinks=False)
                leftovers.append(_Entry(folder, name, st.st_size, st.st_mtime, (st.st_dev, st.st_ino),
                                        None, 0, False, False))


# ---------------------------------------------------------------------------- patterns


def _glob_part(component: str) -> str:
    """One path component's glob as a regex that, like the shell, lets a leading wildcard
    skip hidden names (so control and lock files stay out of reach).

    Components may match ``/`` on their own, yet a path only matches a pattern with the
    same number of components, whose literal ``/`` must then pair with the path's, one
    for one: the components line up exactly.
    """
    body = translate(component)
    body = body[len("(?s:"): -len(")\\Z")]
    return body if component.startswith(".") else f"(?!\\.){body}"


def _compile(
    patterns: tuple[tuple[str, ...], ...],
) -> tuple[dict[int, re.Pattern[str]], dict[int, re.Pattern[str]]]:
    """One regex per path depth over ``a/b/c``, for whole matches and for the folders on the way."""
    full: dict[int, list[str]] = {}
    prefix: dict[int, list[str]] = {}
    for parts in patterns:
        regexes = [_glob_part(c) for c in parts]
        full.setdefault(len(parts), []).append("/".join(regexes))
        for depth in range(1, len(parts)):
            prefix.setdefault(depth, []).append("/".join(regexes[:depth]))

    def build(table: dict[int, list[str]]) -> dict[int, re.Pattern[str]]:
        return {n: re.compile("(?s:" + "|".join(f"(?:{r})" for r in dict.fromkeys(rs)) + r")\Z")
                for n, rs in table.items()}

    return build(full), build(prefix)


# ---------------------------------------------------------------------------- the run lock's stamp


def _read_stamp(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(fd: int, stamp: dict[str, Any]) -> None:
    data = json.dumps(stamp).encode()
    with contextlib.suppress(OSError):
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
