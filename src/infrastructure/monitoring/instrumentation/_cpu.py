"""CPU sampling with py-spy: another process reads this one's stacks ``rate`` times a second.

py-spy (``pip install 'llm-telemetry-logs[profile]'``) attaches to the running process with
ptrace, so the profiled code runs unmodified and every thread is seen, native waits excluded
(only stacks on the CPU are sampled). Attaching needs the kernel's permission: the same user
and, in a container, the ``SYS_PTRACE`` capability; where Yama restricts ptrace to ancestors
(``kernel.yama.ptrace_scope = 1``, Ubuntu's default) this process names py-spy as its allowed
tracer for the duration. When py-spy is missing or may not attach, the sampler says so in a
sentence (``error``) and the profiled code runs as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

__all__ = ["CpuSampler", "find_py_spy"]

ATTACH_TIMEOUT: Final = 10.0
"""Seconds py-spy may take to start sampling (it retries while the process starts up)."""
STOP_TIMEOUT: Final = 10.0
_PR_SET_PTRACER: Final = 0x59616D61
_FRAME_RE: Final = re.compile(r"^(?P<function>.*) \((?P<file>.*?):(?P<line>\d+)\)$")
_DENIED: Final = ("permission denied", "operation not permitted", "os error 1)", "os error 13)")


def find_py_spy() -> str | None:
    """The py-spy executable: on ``PATH``, else beside this interpreter's scripts (a virtual
    environment that was never activated still finds the py-spy installed into it)."""
    found = shutil.which("py-spy")
    if found is not None:
        return found
    scripts = sysconfig.get_path("scripts")
    return shutil.which("py-spy", path=scripts) if scripts else None


def not_installed_message() -> str:
    return ("CPU profiling needs py-spy, which is not installed (looked on PATH and in "
            f"{sysconfig.get_path('scripts')}): pip install 'llm-telemetry-logs[profile]' "
            "(or profile with kind='function')")


def forbidden_message(detail: str) -> str:
    return (f"py-spy may not attach to this process (pid {os.getpid()}): {detail}. It reads the process "
            "with ptrace: run as the same user as the process, in a container with the SYS_PTRACE "
            "capability (docker run --cap-add SYS_PTRACE; in Kubernetes securityContext.capabilities.add: "
            "[SYS_PTRACE]), and where Yama is on with kernel.yama.ptrace_scope at most 1 (or profile with "
            "kind='function', which needs none of this)")


class CpuSampler:
    """One py-spy recording of this process, from ``start()`` to ``stop()``.

    ``error`` holds the sentence that says why nothing is sampled (not installed, not allowed
    to attach, did not start); ``stop()`` then returns it as ``profiler_error``.
    """

    def __init__(self, top: int, rate: int = 100) -> None:
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 1000:
            raise ValueError(f"a CPU profile samples 1 to 1000 times a second, not {rate!r}")
        self.top = top
        self.rate = rate
        self.error: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: Path | None = None

    def start(self) -> None:
        executable = find_py_spy()
        if executable is None:
            self.error = not_installed_message()
            return
        try:
            folder = self._folder = Path(tempfile.mkdtemp(prefix="monitoring-cpu-"))
            with open(folder / "py-spy.log", "wb") as log:  # a file, not a pipe: a long run cannot fill it and stall
                self._process = subprocess.Popen(  # the command holds our own pid and numbers only
                    [executable, "record", "--pid", str(os.getpid()), "--format", "raw", "--function",
                     "--rate", str(self.rate), "--output", str(folder / "profile.txt")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
        except OSError as exc:  # no temporary folder, or a py-spy that cannot run: the profiled code still does
            self.error = f"py-spy could not be started: {exc}"
            self._process = None
            self._cleanup()
            return
        _allow_tracer(self._process.pid)
        self._wait_until_sampling(folder / "py-spy.log")

    def _wait_until_sampling(self, log: Path) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if "Sampling process" in text:
                return
            if process.poll() is not None:
                self.error = _failure(log.read_text(errors="replace"), process.returncode)
                self._cleanup()
                return
            time.sleep(0.005)
        self.error = f"py-spy did not start sampling within {ATTACH_TIMEOUT:g} s"
        process.kill()
        process.wait()
        self._cleanup()

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the samples counted and the ``top`` functions by samples on the CPU."""
        process = self._process
        if self.error is not None or process is None or self._folder is None:
            return {"samples": 0, "sample_rate": self.rate, "top_functions": [],
                    "profiler_error": self.error or "the CPU profile never started"}
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl+C
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            details = self._read(self._folder / "profile.txt")
        except OSError:
            log = (self._folder / "py-spy.log").read_text(errors="replace").strip()
            details = {"samples": 0, "sample_rate": self.rate, "top_functions": [],
                       "profiler_error": f"py-spy wrote no profile: {_last_line(log) or 'no message'}"}
        finally:
            _allow_tracer(0)
            self._cleanup()
        return details

    def _read(self, path: Path) -> dict[str, Any]:
        """py-spy's raw format: one ``frame;frame;...;leaf COUNT`` line per distinct stack."""
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                stack, _, count_text = line.rstrip("\n").rpartition(" ")
                if not stack or not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [_name(frame) for frame in stack.split(";")]
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
        ranked = sorted(own, key=lambda f: (-own[f], -inclusive[f], f))
        top = [{"function": f, "self_samples": own[f], "cumulative_samples": inclusive[f],
                "share": round(own[f] / total, 4)} for f in ranked[: self.top]]
        return {"samples": total, "sample_rate": self.rate, "top_functions": top}

    def _cleanup(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def _name(frame: str) -> str:
    """``hot (app/rank.py:12)`` -> ``rank.py:12(hot)``, the form the function profile uses."""
    match = _FRAME_RE.match(frame)
    if match is None:
        return frame
    return f"{os.path.basename(match['file'])}:{match['line']}({match['function']})"


def _failure(log: str, code: int | None) -> str:
    text = log.lower()
    if any(word in text for word in _DENIED):
        return forbidden_message("permission denied")
    return f"py-spy could not sample this process (exit status {code}): {_first_error(log) or 'no message'}"


def _first_error(log: str) -> str:
    """py-spy's own sentence, without the stack trace it prints after it."""
    head = log.split("\nStack backtrace:", 1)[0]
    return " ".join(part.strip() for part in head.splitlines() if part.strip())


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _allow_tracer(pid: int) -> None:
    """Name ``pid`` as this process's tracer (0: nobody) where Yama limits ptrace to ancestors;
    elsewhere the call fails harmlessly (EINVAL without Yama)."""
    if not sys.platform.startswith("linux"):
        return
    # ctypes only here, on Linux, when a CPU profile starts or stops
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PTRACER, pid, 0, 0, 0)
