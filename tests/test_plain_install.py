"""What a new user meets after ``pip install telemetryflow`` with no extras.

The package registers a pytest plugin, so it is loaded by every test run of every
project in the environment: it must import without the extras' packages. Each
console command must answer ``--help`` and, against a collector that is not there,
say so in one line and exit non-zero (no traceback).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
INSTALL_TIMEOUT = 240  # seconds; the install takes ~15 s from pip's cache
COMMAND_TIMEOUT = 60

UNRELATED_TEST = "def test_arithmetic():\n    assert 1 + 1 == 2\n"
FIXTURE_TEST = textwrap.dedent(
    """
    def test_my_own_telemetry(telemetry):
        telemetry.client.increment_counter("orders")
        telemetry.client.flush(timeout=5)
        assert telemetry.find_metric("orders") is not None
    """
)


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a user who configured nothing (no keys, no endpoints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRYFLOW_", "OTEL_"))}
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A fresh virtualenv with ``pip install <repo>`` (no extras) and pytest."""
    base = tmp_path_factory.mktemp("plain-install")
    source = base / "source"  # a copy, so the build leaves nothing in the work tree
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "__pycache__", "build", "*.egg-info")
    )
    venv = base / "venv"
    env = _clean_env(base / "home")
    (base / "home").mkdir()
    subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], check=True, timeout=COMMAND_TIMEOUT, env=env
    )
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source), "pytest"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=env,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv, env


@pytest.mark.slow
def test_plain_install_has_no_extras(plain_install: tuple[Path, dict]) -> None:
    venv, env = plain_install
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('cryptography', 'flask') if u.find_spec(m)])"
    )
    result = _run([str(venv / "bin" / "python"), "-c", probe], env, venv)
    assert result.stdout.strip() == "[]"  # what the other tests rely on


@pytest.mark.slow
def test_an_unrelated_project_runs_under_pytest(
    plain_install: tuple[Path, dict], tmp_path: Path
) -> None:
    venv, env = plain_install
    (tmp_path / "test_unrelated.py").write_text(UNRELATED_TEST)
    result = _run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                  env, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "Error while loading plugin" not in result.stdout + result.stderr


@pytest.mark.slow
def test_the_telemetry_fixture_works_on_a_plain_install(
    plain_install: tuple[Path, dict], tmp_path: Path
) -> None:
    venv, env = plain_install
    (tmp_path / "test_mine.py").write_text(FIXTURE_TEST)
    result = _run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                  env, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.slow
def test_every_command_answers_help(plain_install: tuple[Path, dict]) -> None:
    venv, env = plain_install
    tool = str(venv / "bin" / "telemetryflow")
    listing = _run([tool, "--help"], env, venv)
    assert listing.returncode == 0, listing.stderr
    commands = ["collector", "logs", "metrics", "traces", "status", "demo", "setup", "show-key"]
    for command in commands:
        assert command in listing.stdout
        result = _run([tool, command, "--help"], env, venv)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: telemetryflow {command}"), command


@pytest.mark.slow
def test_every_command_explains_a_dead_endpoint_in_one_line(
    plain_install: tuple[Path, dict],
) -> None:
    venv, env = plain_install
    tool = str(venv / "bin" / "telemetryflow")
    dead = f"http://127.0.0.1:{_dead_port()}"
    cases = [
        ["logs", "--endpoint", dead],
        ["metrics", "--endpoint", dead],
        ["metrics", "http.server.request.duration", "--endpoint", dead],
        ["traces", "--endpoint", dead],
        ["traces", "5b8efff798038103d269b633813fc60c", "--endpoint", dead],
        ["status", "--endpoint", dead, "--timeout", "2"],
        ["demo"],  # needs the flask extra: says which
        ["show-key"],
        ["setup"],
    ]
    for argv in cases:
        result = _run([tool, *argv], {**env, "TELEMETRYFLOW_QUERY_ENDPOINT": dead}, venv)
        text = result.stdout + result.stderr
        assert result.returncode != 0, (argv, text)
        assert "Traceback" not in text, (argv, text)
        assert result.stderr.strip() or result.stdout.strip(), argv
        if argv[0] in ("logs", "metrics", "traces"):
            [line] = result.stderr.strip().splitlines()
            assert "cannot reach the collector" in line and dead in line, line
    demo = _run([tool, "demo"], env, venv)
    assert "telemetryflow[flask]" in demo.stderr


def test_testing_imports_without_cryptography(tmp_path: Path) -> None:
    """The plugin and ``telemetryflow.testing`` load when ``cryptography`` is absent;
    asking for certificates then says which extra to install."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["cryptography"] = None  # as on a plain install
        import telemetryflow.testing.pytest_plugin
        from telemetryflow.testing import OTLPReceiver, make_test_certificates
        try:
            make_test_certificates(sys.argv[1])
        except ImportError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "telemetryflow[testing]"' in result.stdout


def test_loading_the_plugin_does_not_import_cryptography() -> None:
    """Even where it is installed: only the TLS helpers need it."""
    script = (
        "import sys; import telemetryflow.testing.pytest_plugin; "
        "print('cryptography' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert result.stdout.strip() == "False", result.stderr


def test_importing_the_package_leaves_the_export_path_for_initialize() -> None:
    """``import telemetryflow`` stays light: the export path (pipeline, transports,
    the SDK's metric and log providers, gRPC) loads when a client is initialized."""
    heavy = [
        "telemetryflow._exporting.pipeline",
        "telemetryflow._exporting.transport",
        "opentelemetry.sdk.metrics",
        "opentelemetry.sdk._logs",
        "grpc",
    ]
    script = f"import sys, telemetryflow; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded on import: {result.stdout.strip()}"
