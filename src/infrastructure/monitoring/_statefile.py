"""Small JSON state files (which alert fires, how far a shipper got) that survive a kill.

A state file is replaced, never rewritten in place: the new content goes to a hidden
temporary file in the same folder, is fsynced, then renamed over the old one, and the
folder is fsynced. A process killed at any moment leaves either the old state or the
new one, never half of each. A temporary left by a process killed mid-save carries that process's id in its name and
is removed by the next save once the process is gone. A file that is nevertheless unreadable (edited by hand,
a disk fault) is set aside as ``<name>.corrupt`` and the caller starts from empty, so a
bad state file can cost a re-notification or a resend but never stops the job.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["exclusive", "load_state", "save_state"]

_log = logging.getLogger("infrastructure.monitoring.state")


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved mapping, or ``{}`` when there is none or it cannot be read."""
    target = Path(path)
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        _log.warning("cannot read state file %s (%s); starting from empty", target, exc)
        return {}
    try:
        state = orjson.loads(data)
        if isinstance(state, dict):
            return state
        raise ValueError("not a JSON object")
    except ValueError as exc:
        with contextlib.suppress(OSError):
            os.replace(target, target.with_name(target.name + ".corrupt"))
        _log.warning("state file %s was unreadable (%s); kept as %s.corrupt, starting from empty",
                     target, exc, target.name)
        return {}


def save_state(path: str | os.PathLike[str], state: dict[str, Any], *, mode: int = 0o600) -> None:
    """Replace the file with ``state`` atomically (write, fsync, rename, fsync the folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)  # before making ours: a save killed at any point leaves at most its own
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_orphans(target: Path) -> None:
    """Delete temporaries that processes killed mid-save left (their pid is in the name)."""
    prefix = f".{target.name}."
    try:
        names = [e.name for e in os.scandir(target.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(target.parent / name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # our own temporary of a concurrent save in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[bool]:
    """Hold an ``flock`` on ``path`` (created 0600): one evaluator or shipper per folder
    at a time, across processes. Yields ``False`` when ``wait`` is off and it is taken."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
