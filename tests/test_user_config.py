"""The user config file, ``telemetryflow setup`` / ``show-key``, and its precedence."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._configuration.user_config import (
    load_user_config,
    save_user_config,
    user_config_path,
)
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.cli import main

KEY_ID = "tfk_user_config_1234"
SECRET = "tfs_never_print_this_5678"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every lookup at a fresh file and keep real credentials out."""
    path = tmp_path / "home" / "telemetryflow" / "config.json"
    monkeypatch.setenv("TELEMETRYFLOW_CONFIG_FILE", str(path))
    monkeypatch.delenv("TELEMETRYFLOW_API_KEY_ID", raising=False)
    monkeypatch.delenv("TELEMETRYFLOW_API_KEY_SECRET", raising=False)
    reset_throttle()
    return path


def pipe_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


# -- the file ------------------------------------------------------------------------------
def test_location_follows_the_variable_then_xdg(tmp_path: Path) -> None:
    explicit = {"TELEMETRYFLOW_CONFIG_FILE": str(tmp_path / "c.json")}
    assert user_config_path(explicit) == tmp_path / "c.json"
    xdg = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert user_config_path(xdg) == tmp_path / "telemetryflow" / "config.json"
    assert user_config_path({}).parts[-3:] == (".config", "telemetryflow", "config.json")


@posix_only
def test_save_is_owner_only_and_merges(config_file: Path) -> None:
    save_user_config({"key_id": KEY_ID, "key_secret": SECRET}, config_file)
    assert mode(config_file) == 0o600
    assert mode(config_file.parent) == 0o700
    save_user_config({"endpoint": "collector.example.com:4317", "unknown": "x"}, config_file)
    assert mode(config_file) == 0o600
    assert json.loads(config_file.read_text()) == {
        "key_id": KEY_ID,
        "key_secret": SECRET,
        "endpoint": "collector.example.com:4317",
    }
    assert [p.name for p in config_file.parent.iterdir()] == ["config.json"]  # no temp left


def test_load_reads_known_fields_and_never_raises(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_user_config() == {}  # no file
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({"key_id": f" {KEY_ID} ", "key_secret": 5, "other": "x"}))
    config_file.chmod(0o600)
    assert load_user_config() == {"key_id": KEY_ID}
    config_file.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="telemetryflow"):
        assert load_user_config() == {}
    assert "not valid JSON" in caplog.text


@posix_only
def test_load_warns_when_others_can_read_the_file(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_user_config({"key_id": KEY_ID, "key_secret": SECRET}, config_file)
    config_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="telemetryflow"):
        assert load_user_config()["key_secret"] == SECRET
    assert "chmod 600" in caplog.text


# -- the commands --------------------------------------------------------------------------
@posix_only
def test_setup_reads_the_secret_from_stdin_and_writes_an_owner_only_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe_stdin(monkeypatch, SECRET + "\n")
    status = main(["setup", "--key-id", KEY_ID, "--endpoint", "collector.example.com:4317"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert mode(config_file) == 0o600
    assert load_user_config() == {
        "key_id": KEY_ID,
        "key_secret": SECRET,
        "endpoint": "collector.example.com:4317",
    }
    assert "tfk_…1234" in out
    assert SECRET not in out + err and KEY_ID not in out + err


def test_setup_rejects_a_bad_key_without_echoing_it(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe_stdin(monkeypatch, "not-a-secret-xyz\n")
    assert main(["setup", "--key-id", KEY_ID]) == 2
    out, err = capsys.readouterr()
    assert "key_secret" in err and "not-a-secret-xyz" not in out + err
    assert not config_file.exists()
    pipe_stdin(monkeypatch, SECRET + "\n")
    assert main(["setup", "--key-id", KEY_ID, "--endpoint", "bad host"]) == 2
    pipe_stdin(monkeypatch, SECRET + "\n")
    assert main(["setup"]) == 2  # no key id and no terminal to ask on
    assert not config_file.exists()


def test_show_key_prefers_the_environment_and_masks(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show-key"]) == 1
    assert "telemetryflow setup" in capsys.readouterr().err
    save_user_config({"key_id": KEY_ID, "key_secret": SECRET}, config_file)
    assert main(["show-key"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tfk_…1234") and str(config_file) in out
    assert KEY_ID not in out
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_ID", "tfk_from_environment_9999")
    assert main(["show-key"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tfk_…9999") and "TELEMETRYFLOW_API_KEY_ID" in out


def test_show_key_with_an_explicit_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.json"
    save_user_config({"key_id": KEY_ID, "key_secret": SECRET}, path)
    assert main(["show-key", "--config-file", str(path)]) == 0
    assert "tfk_…1234" in capsys.readouterr().out


# -- precedence in the builder (needs the builder/settings patch) -------------------------
needs_patch = pytest.mark.skipif(
    not hasattr(TelemetryFlowBuilder, "with_feature_flags"),
    reason="needs the user-config fallback in TelemetryFlowBuilder.build_config",
)


@needs_patch
def test_auto_configuration_falls_back_to_the_file(config_file: Path) -> None:
    save_user_config(
        {"key_id": KEY_ID, "key_secret": SECRET, "endpoint": "127.0.0.1:4318"}, config_file
    )
    environ = {"TELEMETRYFLOW_CONFIG_FILE": str(config_file), "TELEMETRYFLOW_SERVICE_NAME": "svc"}
    config = TelemetryFlowBuilder().with_auto_configuration().with_environ(environ).build_config()
    assert config.credentials.key_id == KEY_ID
    assert config.endpoint == "127.0.0.1:4318"
    assert config.sources["credentials"].startswith("file:")


@needs_patch
def test_environment_and_explicit_calls_win_over_the_file(config_file: Path) -> None:
    save_user_config(
        {"key_id": KEY_ID, "key_secret": SECRET, "endpoint": "127.0.0.1:4318"}, config_file
    )
    environ = {
        "TELEMETRYFLOW_CONFIG_FILE": str(config_file),
        "TELEMETRYFLOW_SERVICE_NAME": "svc",
        "TELEMETRYFLOW_API_KEY_ID": "tfk_env_key",
        "TELEMETRYFLOW_API_KEY_SECRET": "tfs_env_secret",
    }
    builder = TelemetryFlowBuilder().with_auto_configuration().with_environ(environ)
    config = builder.with_endpoint("127.0.0.1:4317").build_config()
    assert config.credentials.key_id == "tfk_env_key"
    assert config.endpoint == "127.0.0.1:4317"


@needs_patch
def test_the_file_is_read_only_with_auto_configuration(config_file: Path) -> None:
    from telemetryflow import BuilderError

    save_user_config({"key_id": KEY_ID, "key_secret": SECRET}, config_file)
    with pytest.raises(BuilderError, match="credentials"):
        TelemetryFlowBuilder().with_service("svc").with_environ({}).build_config()


def test_credentials_from_the_file_are_a_pair(config_file: Path) -> None:
    from telemetryflow._configuration.user_config import fallback_settings

    save_user_config({"key_id": KEY_ID, "key_secret": SECRET, "endpoint": "h:1"}, config_file)
    environ = {"TELEMETRYFLOW_CONFIG_FILE": str(config_file)}
    assert fallback_settings(environ) == {"key_id": KEY_ID, "key_secret": SECRET, "endpoint": "h:1"}
    environ["TELEMETRYFLOW_API_KEY_ID"] = "tfk_env"  # a half-set environment
    assert fallback_settings(environ) == {"endpoint": "h:1"}
