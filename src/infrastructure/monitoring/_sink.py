"""Append whole lines to one file family, rotating by rename, safe across processes.

How several processes share one family without losing or tearing a line:

* every line is handed to a single ``os.write`` on an ``O_APPEND`` descriptor, so the
  kernel places it atomically at the end of the file (local filesystems; not NFS);
* a small control file beside the log (``.llm_metrics.log.lock``) is ``mmap``-ed by
  every writer. It holds the rotation *generation* and the next time-based rollover,
  so the per-line check costs a memory read, not a system call;
* the size is read from the descriptor (``lseek`` after an ``O_APPEND`` write gives
  the end of the file, everyone's lines included) once every
  ``max(4 KiB, max_bytes / 256)`` bytes written by this process, so a file overshoots
  ``max_bytes`` by at most that much per concurrent writer (about 0.4 %);
* rotation takes an ``flock`` on the control file, re-checks that rotation is still
  due (another process may have done it), renames ``.N-1 -> .N`` ... ``base -> .1``,
  and bumps the generation. Writers notice the new generation before their next line
  and reopen; a line written through an old descriptor meanwhile lands, complete, in
  the rotated file. Nothing is ever copied or truncated;
* the descriptor number never changes after the first open: a reopen ``dup2``-s the
  new file onto it, so a thread racing a reopen can never write into a descriptor
  number that was closed and handed to something else;
* after ``fork`` the child re-opens its own control descriptor (an inherited ``flock``
  would be shared with the parent) before its next line.

A deleted folder or a file renamed away by an outside tool is noticed by a ``stat``
at most every ``check_interval`` seconds, and the file (and folder) is re-created.
The same ``stat`` notices a live file that shrank under the writer (logrotate's
``copytruncate``, ``: > file``): that loses the lines written between the copy and the
truncation, which no appending writer can prevent, so the sink logs one warning saying
to rotate by rename instead (logrotate's ``create`` mode, or the writer's own rotation).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

from ._family import (
    CTL_MAGIC,
    CTL_SIZE,
    OFF_GEN,
    OFF_MAGIC,
    OFF_ROLL,
    OFF_ROTATED,
    lock_path_for,
    rotated_name,
    shift_backups,
    write_alias,
)

__all__ = ["FileSink", "next_rollover"]

_NO_LIMIT: Final = 1 << 62
_RETRY_AFTER_FAILURE: Final = 1.0
_STEP = {"S": 1, "M": 60, "H": 3600, "D": 86400, "midnight": 86400}

_os_write = os.write
_os_lseek = os.lseek
_live_sinks: weakref.WeakSet[FileSink] = weakref.WeakSet()
_log = logging.getLogger("infrastructure.monitoring")


def next_rollover(now: float, when: str, interval: int = 1, *, utc: bool = False) -> float:
    """The first period boundary after ``now``: boundaries are aligned (top of the hour,
    midnight), so every process of a family computes the same instant."""
    step = _STEP[when] * interval
    if when in ("S", "M") or utc:
        return (now // step + 1) * step
    # local-time alignment for hours and days (DST shifts move it by at most an hour)
    offset = time.localtime(now).tm_gmtoff
    return ((now + offset) // step + 1) * step - offset


def _end_dead_fragment(path: str, fd: int, size: int) -> None:
    """A file that does not end with a newline may end with the part of a line a writer
    killed mid-write left (SIGKILL can cut a write short). Appending to it would glue our
    first line to that fragment and spoil both; a newline first keeps the damage to the
    dead line. A live writer's line still being copied looks the same for a few
    microseconds, so the end is looked at twice, 2 ms apart: a file that grew or now ends
    with a newline belongs to a live writer and is left alone."""
    try:
        probe = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.pread(probe, 1, size - 1) in (b"\n", b""):
            return
        time.sleep(0.002)
        if os.fstat(probe).st_size != size or os.pread(probe, 1, size - 1) == b"\n":
            return
    except OSError:
        return
    finally:
        os.close(probe)
    os.write(fd, b"\n")


class FileSink:
    """The live file of one family plus its numbered backups.

    ``write`` raises ``OSError`` on failure; the writer above decides whether that is
    counted (fail-safe) or raised (strict). After a failure the sink does not retry
    the disk on every line: it fails fast for a second, then tries again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 52_428_800,
        backup_count: int = 10,
        when: str | None = None,
        interval: int = 1,
        utc: bool = False,
        file_mode: int = 0o640,
        fsync: bool = False,
        check_interval: float = 1.0,
        module: str | None = None,
    ) -> None:
        """``module``: the module whose records the file holds, left beside a file whose name
        does not say it (``_family.write_alias``)."""
        if backup_count < 1 and (max_bytes or when):
            raise ValueError(f"backup_count must be >= 1 when rotation is on, got {backup_count!r}")
        if when is not None and when not in _STEP:
            raise ValueError(f"when must be one of {sorted(_STEP)} or None, got {when!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.lock_path = lock_path_for(self.path)
        self._module = module
        self._max_bytes = max_bytes or _NO_LIMIT
        self._check_every = max(4096, max_bytes // 256) if max_bytes else _NO_LIMIT
        self._unchecked = 0
        self._rotate_after = 0.0
        self.on_rotation_failure: Callable[[BaseException, float], None] | None = None
        """Told when a rotation fails (the writer counts and reports it); writing goes on."""
        self._backup_count = backup_count
        self._when = when
        self._interval = interval
        self._utc = utc
        self._mode = file_mode
        self._fsync = fsync
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._lock_ino: tuple[int, int] | None = None
        self._file_id: tuple[int, int] | None = None
        self._size_seen = 0
        """The live file's size at the last check: it only grows while the file is ours."""
        self._truncation_warned = False
        # Stand-ins until the control file is mapped: the first write takes the slow path.
        self._gen = ctypes.c_uint64(0)
        self._roll = ctypes.c_double(0.0)
        self._seen_gen = -1
        self._deadline = 0.0
        self._retry_at = 0.0
        self._torn = False
        self._closed = False
        _live_sinks.add(self)

    # ------------------------------------------------------------------ hot path

    def write(self, line: bytes, now: float) -> None:
        """Append ``line`` (which ends with a newline) with one ``write``."""
        if now >= self._deadline or self._seen_gen != self._gen.value:
            self._refresh(now)
        written = _os_write(self._fd, line)
        if written != len(line):
            written += self._finish_short_write(line, written)
        if self._fsync:
            os.fsync(self._fd)
        unchecked = self._unchecked + written
        if unchecked < self._check_every:
            self._unchecked = unchecked
            return
        self._unchecked = 0
        if _os_lseek(self._fd, 0, os.SEEK_CUR) >= self._max_bytes and now >= self._rotate_after:
            self._try_rotate(now)

    # ------------------------------------------------------------------ slow paths

    def _refresh(self, now: float) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the log sink is closed", self.path)
            if now < self._retry_at:
                raise OSError(errno.EAGAIN, "log file unavailable after a recent failure; retrying shortly", self.path)
            if self._torn:
                self._end_fragment()
            shrank: tuple[int, int] | None = None
            try:
                if self._fd < 0 or self._seen_gen != self._gen.value or (shrank := self._check_file()) is None:
                    self._open(now)
            except OSError:
                self._retry_at = now + _RETRY_AFTER_FAILURE
                raise
            self._deadline = now + self._check_interval
            due = False
            if self._when is not None:
                roll = self._roll.value
                due = now >= roll
                self._deadline = min(self._deadline, max(roll, self._rotate_after))
        if shrank and shrank[1] < shrank[0] and not self._truncation_warned:
            self._truncation_warned = True  # logged outside the lock: a handler may write through this sink
            _log.warning(
                "monitoring: %s shrank under its writer (from at least %d to %d bytes): something copied and "
                "truncated it, as logrotate's copytruncate does, and the lines written between the copy and the "
                "truncation are lost. Rotate by rename instead: logrotate's create mode without copytruncate, or "
                "the library's own rotation (logging.rotation). Warned once per file and process.",
                self.path, shrank[0], shrank[1])
        if due and now >= self._rotate_after:
            self._try_rotate(now)

    def _check_file(self) -> tuple[int, int] | None:
        """``None`` when the path is no longer the file we append to (deleted, renamed away);
        else (the least size we know it had, its size now): smaller now means truncated.

        The least size is the larger of the last check's size and where our own last line
        ended (the descriptor's offset after an ``O_APPEND`` write): the second catches a
        truncation right after we wrote, the first one after others kept writing.
        """
        ours = _os_lseek(self._fd, 0, os.SEEK_CUR)  # before the stat: lines other threads add meanwhile only grow it
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        if (st.st_dev, st.st_ino) != self._file_id:
            return None
        known = max(self._size_seen, ours)
        self._size_seen = st.st_size
        return known, st.st_size

    def _open(self, now: float) -> None:
        """(Re)open the live file and the control file. Caller holds ``self._lock``."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._ensure_control()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self._mode)
            st = os.fstat(fd)
            if st.st_size and self._fd < 0:  # first open in this process: a dead writer's fragment?
                _end_dead_fragment(self.path, fd, st.st_size)
            if self._when is not None and not self._roll.value:
                self._roll.value = next_rollover(now, self._when, self._interval, utc=self._utc)
            gen = self._gen.value
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if self._fd < 0:
            self._fd = fd
        else:
            os.dup2(fd, self._fd, inheritable=False)
            os.close(fd)
        self._file_id = (st.st_dev, st.st_ino)
        self._size_seen = st.st_size
        self._seen_gen = gen
        self._retry_at = 0.0

    def _ensure_control(self) -> None:
        """Open and map the control file unless the mapped one is still the one on disk."""
        try:
            st = os.stat(self.lock_path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._lock_fd >= 0 and current == self._lock_ino:
            return
        if self._module is not None:  # a new control file: a new (or recreated) family
            write_alias(self.path, self._module)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < CTL_SIZE:
                    os.ftruncate(fd, CTL_SIZE)
                mapped = mmap.mmap(fd, CTL_SIZE)
                magic = ctypes.c_uint64.from_buffer(mapped, OFF_MAGIC)
                if magic.value != CTL_MAGIC:
                    mapped[:CTL_SIZE] = bytes(CTL_SIZE)
                    magic.value = CTL_MAGIC
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        st = os.fstat(fd)
        old = self._lock_fd
        # Threads on the hot path may still hold the previous cells; the old mapping is
        # released by garbage collection once they let go, never closed under them.
        self._gen = ctypes.c_uint64.from_buffer(mapped, OFF_GEN)
        self._roll = ctypes.c_double.from_buffer(mapped, OFF_ROLL)
        self._rotated = ctypes.c_double.from_buffer(mapped, OFF_ROTATED)
        self._lock_fd = fd
        self._lock_ino = (st.st_dev, st.st_ino)
        if old >= 0:
            os.close(old)

    def _try_rotate(self, now: float) -> None:
        """Rotate; when that fails (a read-only folder, EPERM, ENOSPC on the rename), keep
        appending to the current file, which grows past ``max_bytes``, try again a second
        later rather than on every line, and tell the writer. The line just written stays
        written: a failed rotation never counts as a lost record."""
        try:
            self._rotate(now)
        except OSError as exc:
            self._rotate_after = now + _RETRY_AFTER_FAILURE
            report = self.on_rotation_failure
            if report is not None:
                report(exc, now)

    def _rotate(self, now: float) -> None:
        with self._lock:
            if self._closed or self._fd < 0:
                return
            self._ensure_control()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                try:
                    size = os.stat(self.path).st_size
                except FileNotFoundError:
                    size = -1
                roll = self._roll.value
                time_due = self._when is not None and roll and now >= roll
                if size > 0 and (size >= self._max_bytes or time_due):
                    self._shift_backups()
                    os.rename(self.path, rotated_name(self.path, 1))
                    self._gen.value += 1
                    self._rotated.value = time.time()
                if self._when is not None and (time_due or not roll):
                    self._roll.value = next_rollover(now, self._when, self._interval, utc=self._utc)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._open(now)
            self._deadline = now + self._check_interval
            if self._when is not None:
                self._deadline = min(self._deadline, self._roll.value)

    def _shift_backups(self) -> None:
        folder, base = os.path.split(self.path)
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            shift_backups(folder_fd, base, self._backup_count)
        finally:
            os.close(folder_fd)

    def _finish_short_write(self, line: bytes, written: int) -> int:
        """A short write (disk nearly full): push the rest so the line is not left torn.

        When the rest cannot be written, the fragment stays; the next write first ends it
        with a newline (``_end_fragment``), so the damage is this one line, never the next.
        """
        view = memoryview(line)[written:]
        extra = 0
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.ENOSPC, "short write", self.path)
                view = view[n:]
                extra += n
        except OSError:
            self._torn = True
            self._deadline = 0.0  # the next write goes through _refresh, which ends the fragment
            raise
        return extra

    def _end_fragment(self) -> None:
        """Terminate a torn line in the file it is in (the descriptor follows renames)."""
        if self._fd >= 0:
            try:
                os.write(self._fd, b"\n")
            except OSError:
                self._retry_at = time.time() + _RETRY_AFTER_FAILURE
                raise
        self._torn = False

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the descriptors. Lines still racing in other threads fail with ``EBADF``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._deadline = 0.0
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._lock_fd = -1

    @property
    def closed(self) -> bool:
        return self._closed

    def _after_fork_in_child(self) -> None:
        # The inherited control descriptor shares its flock with the parent: drop it
        # and force a full reopen before the child's next line.
        self._lock = threading.Lock()
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self._lock_fd = -1
        self._lock_ino = None
        self._seen_gen = -1
        self._deadline = 0.0

    def __repr__(self) -> str:
        return f"FileSink({self.path!r})"


def _reinit_sinks_in_child() -> None:
    for sink in list(_live_sinks):
        sink._after_fork_in_child()


os.register_at_fork(after_in_child=_reinit_sinks_in_child)
