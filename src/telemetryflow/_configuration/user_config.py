"""The per-user config file written by ``telemetryflow setup``.

Developers should not have to export secrets in every shell: ``setup`` stores the
API key (and optionally the endpoint) once, readable by the owner only, and
``with_auto_configuration()`` falls back to it for whatever the environment does not
set. Precedence stays: explicit builder call, then environment, then this file,
then the default.

Location: ``$TELEMETRYFLOW_CONFIG_FILE`` if set, else
``$XDG_CONFIG_HOME/telemetryflow/config.json`` (``~/.config/...`` by default). The
file is a JSON object whose keys are configuration field names::

    {"key_id": "tfk_...", "key_secret": "tfs_...", "endpoint": "collector.example.com:4317"}
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from telemetryflow._recording.diagnostics import warn_throttled

__all__ = [
    "CONFIG_FILE_ENV",
    "USER_CONFIG_FIELDS",
    "fallback_settings",
    "load_user_config",
    "save_user_config",
    "user_config_path",
]

CONFIG_FILE_ENV = "TELEMETRYFLOW_CONFIG_FILE"
"""Path of the user config file, overriding the default location."""

USER_CONFIG_FIELDS = ("key_id", "key_secret", "endpoint")
"""The configuration fields the file may set."""

_CREDENTIAL_VARIABLES = ("TELEMETRYFLOW_API_KEY_ID", "TELEMETRYFLOW_API_KEY_SECRET")


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user config file lives for this environment."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_FILE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".config"
    return root / "telemetryflow" / "config.json"


def _too_open(path: Path) -> bool:
    if os.name != "posix":
        return False
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def load_user_config(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The fields set in the user config file; ``{}`` if there is none.

    Never raises: an unreadable or malformed file is warned about and ignored, so a
    broken file in a home directory cannot stop a service from starting.
    """
    path = user_config_path(environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        warn_throttled("user-config-read", "ignoring %s: %s", path, exc.strerror)
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        warn_throttled("user-config-json", "ignoring %s: not valid JSON", path)
        return {}
    if not isinstance(data, dict):
        warn_throttled("user-config-json", "ignoring %s: expected a JSON object", path)
        return {}
    if _too_open(path):
        warn_throttled(
            "user-config-mode", "%s is readable by other users; run: chmod 600 %s", path, path
        )
    return {
        k: data[k].strip()
        for k in USER_CONFIG_FIELDS
        if isinstance(data.get(k), str) and data[k].strip()
    }


def fallback_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The file's values for the builder to use after the environment.

    The key id and secret are a pair: if the environment sets either, the file's
    credentials are left out, so an id from one place is never sent with a secret
    from another.
    """
    env = os.environ if environ is None else environ
    values = load_user_config(env)
    if any(env.get(name, "").strip() for name in _CREDENTIAL_VARIABLES):
        values.pop("key_id", None)
        values.pop("key_secret", None)
    return values


def save_user_config(values: Mapping[str, str], path: Path | None = None) -> Path:
    """Merge ``values`` into the user config file, written atomically, mode 0600.

    The directory is created with mode 0700. The file is written to a temporary
    file created owner-only from the start and renamed over the old one, so the
    secret is never readable by others, not even for a moment.

    Raises:
        OSError: the file cannot be written.
    """
    target = path or user_config_path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    current: dict[str, str] = {}
    try:
        loaded = json.loads(target.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            current = {k: v for k, v in loaded.items() if isinstance(v, str)}
    except (OSError, ValueError):
        pass
    current.update({k: v for k, v in values.items() if k in USER_CONFIG_FIELDS and v})
    fd, temp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=target.parent)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(current, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
