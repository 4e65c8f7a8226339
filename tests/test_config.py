"""Configuration: defaults without a file, the YAML, the environment, and loud errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.monitoring import ConfigError, PerformanceMonitorFactory, load_settings
from infrastructure.monitoring.config import DEFAULT_CONFIG_PATH
from infrastructure.monitoring.query import LogParser
from infrastructure.monitoring.query.reports import build_report

from .conftest import REPO_ROOT, read_records


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no config file the documented defaults apply, log_dir resolved against the working directory."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.source == "<defaults>"
    assert settings.enabled is True
    assert settings.logging.log_dir == tmp_path / "logs"
    rotation = settings.logging.rotation
    assert (rotation.max_bytes, rotation.backup_count, rotation.when) == (52_428_800, 10, None)
    assert settings.logging.modules["llm"].file == "llm_metrics.log"
    assert {"api_key", "authorization", "password", "token", "secret"} <= set(settings.logging.redact_keys)
    assert settings.logging.strict is False
    cleanup = settings.log_cleanup
    assert (cleanup.enabled, cleanup.retention_days, cleanup.dry_run, cleanup.check_interval_hours) == (
        True, 30, False, 24)
    assert cleanup.log_patterns == ("logs/*.log", "logs/*.log.*")


def test_shipped_yaml_matches_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/monitoring_logging.yaml loads cleanly and is picked up from the repository root."""
    monkeypatch.chdir(REPO_ROOT)
    settings = load_settings(environ={})
    assert settings.source == str(DEFAULT_CONFIG_PATH)
    assert settings.logging.rotation.max_bytes == 52_428_800
    assert settings.logging.file_mode == 0o640
    assert "logs/*_metrics.log.*" in settings.log_cleanup.log_patterns
    assert settings.log_cleanup.max_total_size is None
    assert settings.log_cleanup.compress_after_days is None
    assert settings.system_metrics.enabled is False


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_yaml_values_and_sizes(tmp_path: Path) -> None:
    """Sizes accept '10 MiB'; modules can be renamed or switched off; time rotation is validated."""
    path = write_yaml(tmp_path, """
logging:
  log_dir: elsewhere
  rotation: {max_bytes: "10 MiB", backup_count: 3, when: midnight}
  modules: {llm: {file: models.log}, tool: {enabled: false}, vision: {}}
log_cleanup: {retention_days: 7}
""")
    settings = load_settings(path, environ={})
    log = settings.logging
    assert log.rotation.max_bytes == 10 * 1024 * 1024
    assert log.rotation.when == "midnight"
    assert log.modules["llm"].file == "models.log"
    assert log.modules["tool"].enabled is False
    assert log.modules["vision"].file == "vision_metrics.log"
    assert settings.log_cleanup.retention_days == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("logging: {max_byte: 10}", r"^unknown key 'logging\.max_byte' in .*m\.yaml \(value 10\); valid keys: "
                                     r"one of .*"),
        ("logging: {rotation: {max_byte: 10}}", r"did you mean 'max_bytes'\?"),
        ("logging: {rotation: {backup_count: 0}}", r"^invalid value for 'logging\.rotation\.backup_count' in "
                                                   r".*m\.yaml: 0; expected an integer >= 1$"),
        ("logging: {rotation: {when: weekly}}", r"'logging\.rotation\.when'.*'weekly'; expected null or one of 'S'"),
        ("logging: {rotation: {max_bytes: lots}}", r"'logging\.rotation\.max_bytes'.*'lots'; expected a size"),
        ("logging: {strict: maybe}", r"'logging\.strict'.*'maybe'; expected true or false"),
        ("logging: {modules: {llm: {file: ../../etc/passwd}}}", r"'logging\.modules\.llm\.file'.*no '/'"),
        ("logging: {modules: {llm: {file: llm.jsonl}}}", r"'logging\.modules\.llm\.file'.*'llm\.jsonl'.*'\.log'"),
        ("logging: {file_mode: '0200'}", r"'logging\.file_mode'.*owner read and write"),
        ("log_cleanup: {retention_days: -1}", r"'log_cleanup\.retention_days'.*-1; expected a number > 0"),
        ("log_cleanup: {retention_dayz: 3}", r"'log_cleanup\.retention_dayz'.*did you mean 'retention_days'"),
        ("log_cleanup: {max_total_size: huge}", r"'log_cleanup\.max_total_size'.*'huge'; expected a size"),
        ("log_cleanup: {compress_after_days: -2}", r"'log_cleanup\.compress_after_days'.*-2; expected a number >= 0"),
        ("log_cleanup: {log_patterns: ['logs/../secrets/*']}", r"'log_cleanup\.log_patterns'.*'logs/\.\./secrets/\*'"),
        ("log_cleanup: {log_patterns: '*.log'}", r"'log_cleanup\.log_patterns'.*a list of non-empty strings"),
        ("system_metrics: {interval_seconds: 0}", r"'system_metrics\.interval_seconds'.*0; expected a number >= 0\.05"),
        ("system_metrics: {enable: true}", r"did you mean 'enabled'\?"),
        ("enable: false", r"unknown key 'enable'.*did you mean 'enabled'\?"),
        ("- just\n- a list", r"a YAML mapping at the top level"),
        ("logging: [unclosed", r"valid YAML"),
        ("logging: !!python/object/apply:os.system ['true']", r"valid YAML"),
    ],
)
def test_bad_config_fails_loudly(tmp_path: Path, text: str, message: str) -> None:
    """Each bad key or value names the key, quotes the value and says what is valid."""
    with pytest.raises(ConfigError, match=message):
        load_settings(write_yaml(tmp_path, text), environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    """MONITORING_CONFIG, MONITORING_LOG_DIR and MONITORING_ENABLED override the YAML."""
    path = write_yaml(tmp_path, "enabled: true\nlogging: {log_dir: from_yaml}\n")
    settings = load_settings(environ={"MONITORING_CONFIG": str(path), "MONITORING_LOG_DIR": str(tmp_path / "env"),
                                      "MONITORING_ENABLED": "off"})
    assert settings.source == str(path)
    assert settings.logging.log_dir == tmp_path / "env"
    assert settings.enabled is False


def test_missing_config_path_is_an_error(tmp_path: Path) -> None:
    """A MONITORING_CONFIG that points nowhere is a configuration error, not a silent default."""
    expected = r"^invalid value for .MONITORING_CONFIG.: .*nope\.yaml.; expected the path of an existing YAML file$"
    with pytest.raises(ConfigError, match=expected):
        load_settings(environ={"MONITORING_CONFIG": str(tmp_path / "nope.yaml")})


def test_bad_environment_value_warns_and_keeps_the_config(caplog: pytest.LogCaptureFixture) -> None:
    """An unparsable MONITORING_ENABLED is reported and ignored, so the application still starts."""
    problems: list[str] = []
    settings = load_settings(environ={"MONITORING_ENABLED": "perhaps"}, problems=problems)
    assert settings.enabled is True
    assert problems == ["ignoring environment variable MONITORING_ENABLED='perhaps': cannot parse boolean "
                        "'perhaps'; use true/false, 1/0, yes/no or on/off"]


def test_singleton_reads_config_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process-wide factory uses MONITORING_CONFIG, and a renamed module file is honoured."""
    log_dir = tmp_path / "logs"
    path = write_yaml(tmp_path, f"logging: {{log_dir: {log_dir}, modules: {{llm: {{file: models.log}}}}}}\n")
    monkeypatch.setenv("MONITORING_CONFIG", str(path))
    factory = PerformanceMonitorFactory.get_instance()
    factory.create_monitor("llm").record_llm_call("gpt-4", "openai", 1.0, 1, 2)
    (record,) = read_records(log_dir / "models.log")
    assert record["total_tokens"] == 3


def test_a_renamed_file_is_read_as_its_module_without_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``modules.llm.file: models.log`` is still module ``llm`` to a reader that never saw the config
    (the command line on another shell, the shipper): the query, the report and the cleaner agree."""
    log_dir = tmp_path / "logs"
    path = write_yaml(tmp_path, f"logging: {{log_dir: {log_dir}, modules: {{llm: {{file: models.log}}}}}}\n")
    monkeypatch.setenv("MONITORING_CONFIG", str(path))
    factory = PerformanceMonitorFactory.get_instance()
    factory.create_monitor("llm").record_llm_call("gpt-4", "openai", 1.0, 1, 2)
    factory.create_monitor("tool").record_tool_call("search", 0.5, success=True)
    PerformanceMonitorFactory.reset_instance()
    monkeypatch.delenv("MONITORING_CONFIG")
    parser = LogParser(log_dir)
    assert parser.modules() == ["llm", "tool"]
    assert parser.query("llm", aggs=["count", "sum:total_tokens"]).rows == [{"count": 1, "sum_total_tokens": 3}]
    llm = build_report(parser, hours=1).section("llm")
    assert llm is not None
    assert [r["model"] for r in llm.rows] == ["gpt-4"]


def test_bad_config_fails_at_first_use_and_shutdown_stays_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken YAML raises ConfigError from create_monitor; shutting the factory down afterwards does not raise."""
    monkeypatch.setenv("MONITORING_CONFIG", str(write_yaml(tmp_path, "logging: {strict: maybe}\n")))
    factory = PerformanceMonitorFactory.get_instance()
    with pytest.raises(ConfigError, match=r"'logging\.strict'"):
        factory.create_monitor("llm")
    PerformanceMonitorFactory.reset_instance()
