"""Recording switched off and on at run time, sampled families, and configuration reloaded on SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.instrumentation import get_tracer, observe_tool_call, start_session

from .conftest import read_records


def test_disable_and_enable_switch_every_way_of_recording(make_factory: Any, log_dir: Path) -> None:
    """``disable()`` stops monitors, decorators, spans and sessions at once, with the switched-off
    classes (the cost of ``enabled: false``); ``enable()`` resumes them."""
    factory = make_factory()
    PerformanceMonitorFactory.set_instance(factory)
    llm = factory.create_monitor("llm")
    kind = type(llm)

    @observe_tool_call("search")
    def search() -> int:
        return 1

    def everything() -> None:
        llm.record_llm_call("gpt-4o", "openai", 1.0, 10, 20)
        search()
        with get_tracer().start_as_current_span("request"):
            pass
        with start_session(agent="a"):
            pass

    everything()
    written = {p.name: len(read_records(p)) for p in log_dir.glob("*.log")}
    assert written == {"llm_metrics.log": 1, "tool_metrics.log": 1, "trace_metrics.log": 1,
                       "session_metrics.log": 2}
    factory.disable()
    assert not factory.is_enabled()
    assert type(llm) is not kind
    assert type(llm).__name__.endswith("SwitchedOff")
    late = factory.create_monitor("checkpoint")  # made while off: starts off
    everything()
    late.record_checkpoint_save(0.1, 10)
    assert {p.name: len(read_records(p)) for p in log_dir.glob("*.log")} == written
    factory.enable()
    assert factory.is_enabled()
    assert type(llm) is kind
    everything()
    late.record_checkpoint_save(0.1, 10)
    assert {p.name: len(read_records(p)) for p in log_dir.glob("*.log")} == {
        "llm_metrics.log": 2, "tool_metrics.log": 2, "trace_metrics.log": 2, "session_metrics.log": 4,
        "checkpoint_metrics.log": 1}


def test_a_module_switched_off_in_the_configuration_stays_off_after_enable(make_factory: Any, log_dir: Path) -> None:
    factory = make_factory(modules={"tool": {"enabled": False}})
    tool = factory.create_monitor("tool")
    factory.disable()
    factory.enable()
    tool.record_tool_call("x", 0.1)
    assert not (log_dir / "tool_metrics.log").exists()
    assert factory.is_enabled()  # the process switch is back on


def test_a_sampled_family_keeps_an_exact_share_and_every_failure(make_factory: Any, log_dir: Path) -> None:
    """``sample_rate: 0.1`` keeps one success in ten, always the same ones, every failure; the kept
    records' ``sample_weight`` adds back up to the calls made."""
    def run(folder: Path) -> list[dict[str, Any]]:
        factory = make_factory(log_dir=str(folder), modules={"tool": {"sample_rate": 0.1}})
        tool = factory.create_monitor("tool")
        for i in range(1000):
            tool.record_tool_call("search", 0.01, True, seq=i)
            if i % 50 == 0:
                tool.record_tool_call("search", 0.01, False, seq=i, error_type="timeout")
        factory.shutdown()
        return read_records(folder / "tool_metrics.log")

    first = run(log_dir)
    successes = [r for r in first if r["success"]]
    failures = [r for r in first if not r["success"]]
    assert len(successes) == 100
    assert len(failures) == 20
    assert sum(r["sample_weight"] for r in first) == pytest.approx(1020)
    again = run(log_dir.parent / "again")
    assert [r["seq"] for r in again] == [r["seq"] for r in first]  # deterministic


def test_a_bad_sample_rate_names_the_key(make_factory: Any) -> None:
    from infrastructure.monitoring import ConfigError

    with pytest.raises(ConfigError, match=r"'logging.modules.tool.sample_rate'.*: 0; expected a share"):
        make_factory(modules={"tool": {"sample_rate": 0}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met")


MONITORING = str(Path(sys.executable).with_name("monitoring"))


def test_run_reloads_its_configuration_on_sighup(tmp_path: Path) -> None:
    """A real ``monitoring run``: SIGHUP with a broken file keeps the running configuration (and says
    so); SIGHUP with a good one switches to it (here: system samples go to another folder)."""
    config = tmp_path / "m.yaml"
    first, second = tmp_path / "first", tmp_path / "second"
    config.write_text(f"logging: {{log_dir: {first}}}\nsystem_metrics: {{enabled: true, interval_seconds: 0.2}}\n")
    proc = subprocess.Popen([MONITORING, "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    streams: dict[str, list[str]] = {"out": [], "err": []}
    refused = threading.Event()

    def drain(name: str, stream: Any) -> None:
        """Keep every line of one of the child's streams; note when the bad file was refused."""
        for line in stream:
            streams[name].append(line)
            if "the new configuration was refused" in line:
                refused.set()

    readers = [threading.Thread(target=drain, args=(name, stream), daemon=True)
               for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    try:
        _wait((first / "system_metrics.log").exists)
        config.write_text("logging: {strict: maybe}\n")
        proc.send_signal(signal.SIGHUP)
        assert refused.wait(30), "the broken configuration was not refused within 30 s: " + "".join(streams["err"])
        assert proc.poll() is None
        config.write_text(f"logging: {{log_dir: {second}}}\nsystem_metrics: {{enabled: true, interval_seconds: 0.2}}\n")
        proc.send_signal(signal.SIGHUP)
        _wait((second / "system_metrics.log").exists)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    out, err = "".join(streams["out"]), "".join(streams["err"])
    assert proc.returncode == 0, err
    assert "the new configuration was refused, the running one stays" in err
    assert "'logging.strict'" in err
    assert f"monitoring jobs running for {second}" in out


def test_serve_reloads_its_credentials_on_sighup(tmp_path: Path) -> None:
    """A real ``monitoring serve``: after SIGHUP with a file naming another token variable, the old token
    is refused and the new one accepted."""
    port = _free_port()
    config = tmp_path / "m.yaml"
    config.write_text(f"logging: {{log_dir: {tmp_path / 'logs'}}}\nserver: {{auth_token_env: TOKEN_A}}\n")
    (tmp_path / "logs").mkdir()
    env = {**os.environ, "TOKEN_A": "a" * 24, "TOKEN_B": "b" * 24}
    proc = subprocess.Popen([MONITORING, "serve", "--port", str(port), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)

    def status(token: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    try:
        _wait(lambda: status("a" * 24) == 200)
        assert status("b" * 24) == 401
        config.write_text(f"logging: {{log_dir: {tmp_path / 'logs'}}}\nserver: {{auth_token_env: TOKEN_B}}\n")
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: status("b" * 24) == 200)
        assert status("a" * 24) == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "reloaded the configuration" in err
