"""Security: nothing outside the log folder is touched, no secret reaches the disk, files are
created private, and the config is parsed with a safe loader (see test_fuzz) — proven here."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.instrumentation import bind, observe_tool_call, trace_span
from infrastructure.monitoring.instrumentation.tracing import Tracer

from .conftest import age

SECRETS = {
    "openai": "sk-proj-Q2hhbmdlVGhpc0lzQUZha2VLZXlGb3JUZXN0czAx",
    "anthropic": "sk-ant-api03-ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2Vr",
    "github": "ghp_" + "Zx9" * 12,
    "aws": "AKIAIOSFODNN7EXAMPL3",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlc2lnbmF0dXJl",
    "password": "correct horse battery staple 42",
    "token": "tok_live_1234567890abcdef",
}


def test_no_secret_reaches_the_disk_through_any_path(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    factory = PerformanceMonitorFactory.get_instance()
    llm = factory.create_monitor("llm")
    # 1. monitor arguments and extras: by key, by shape, nested, inside messages
    llm.record_llm_call("gpt-4o", "openai", 1.0, 10, 5, success=False,
                        error_type=f"AuthenticationError: Incorrect API key provided: {SECRETS['openai']}",
                        api_key=SECRETS["anthropic"], headers={"Authorization": f"Bearer {SECRETS['bearer']}"},
                        request={"url": f"https://api.example.com/v1?access_token={SECRETS['token']}"})
    factory.create_monitor("tool").record_tool_call("git", 0.1, True, env={"GITHUB_TOKEN": SECRETS["github"]},
                                                    cmd=f"aws --key {SECRETS['aws']}")

    # 2. decorators, with bound context
    @observe_tool_call("deploy")
    def deploy(password: str) -> str:
        return "ok"

    with bind(session_id="s1", db_password=SECRETS["password"]):
        deploy(SECRETS["password"])

    # 3. spans: attributes, events, status messages
    tracer = Tracer(sample_rate=1.0)

    @trace_span("login")
    def login() -> None:
        with tracer.start_as_current_span("check", attributes={"token": SECRETS["token"]}) as span:
            span.add_event("sent", authorization=f"Bearer {SECRETS['bearer']}")
            span.set_status("error", f"rejected key {SECRETS['openai']}")

    login()
    # 4. the application's own logs, through the stdlib and structlog bridges
    app_log = logging.getLogger("app.security-test")
    app_log.addHandler(factory.logging_handler("app"))
    app_log.setLevel(logging.INFO)
    app_log.info("calling with key %s", SECRETS["anthropic"], extra={"password": SECRETS["password"]})
    factory.configure_structlog("app")
    structlog.get_logger().info("connect", dsn=f"postgres://u:{SECRETS['password']}@db/x", api_key=SECRETS["aws"])
    structlog.reset_defaults()
    factory.shutdown()

    raw = b"".join(p.read_bytes() for p in log_dir.iterdir() if p.is_file())
    assert raw.count(b"\n") >= 7
    for name, secret in SECRETS.items():
        assert secret.encode() not in raw, f"the {name} secret reached the disk"
    assert b"[REDACTED]" in raw


def test_log_and_state_files_are_private(make_factory: Any, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0)  # even a permissive umask does not open them up
    try:
        factory = make_factory(extra={"alerts": {"rules": [{"name": "busy", "module": "llm", "expr": "count > 0"}]}})
        factory.create_monitor("llm").record_llm_call("m", "p", 0.1, 1, 1)
        factory.get_alert_evaluator().evaluate()
        factory.force_log_cleanup()
        private = make_factory(file_mode="0600")
        private.get_writer("secret").log_event("x")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in log_dir.iterdir() if p.is_file()}
    assert modes["llm_metrics.log"] == 0o640
    assert modes["alerts.log"] == 0o640
    assert modes["secret_metrics.log"] == 0o600  # logging.file_mode
    hidden = {name: mode for name, mode in modes.items() if name.startswith(".")}
    assert hidden  # control files, locks, state
    assert set(hidden.values()) == {0o600}, hidden
    assert ".alerts_state.json" in hidden


def test_a_file_swapped_for_a_symlink_mid_run_never_redirects_a_delete(make_factory: Any, log_dir: Path,
                                                                        tmp_path: Path) -> None:
    """A thread keeps replacing an old rotated file by a symlink to a file outside the folder (and
    back) while the cleaner deletes old files: the outside file is never touched."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    factory = make_factory(cleanup={"retention_days": 1, "compress_after_days": 0.5})
    factory.get_writer("llm").log_event("x")
    target = log_dir / "llm_metrics.log.3"
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        while not stop.is_set():
            tmp = log_dir / ".swap"
            try:
                if swaps % 2:
                    tmp.write_text('{"timestamp": 1}\n')
                    age(tmp, 10)
                else:
                    tmp.symlink_to(outside)
                os.replace(tmp, target)
            except OSError:
                pass
            swaps += 1

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        deadline = time.monotonic() + 3
        runs = 0
        while time.monotonic() < deadline:
            factory.force_log_cleanup()
            runs += 1
    finally:
        stop.set()
        thread.join()
    assert swaps > 100
    assert runs > 10
    assert outside.read_text() == "keep me"
    assert not (tmp_path / "precious.txt.gz").exists()
