"""``telemetryflow setup`` and ``telemetryflow show-key``: the user config file.

``setup`` asks for the API key (the secret without echo, or from stdin when piped,
never from the command line where ``ps`` would show it) and stores it, owner-only,
where ``with_auto_configuration()`` finds it. ``show-key`` says which key id is in
effect and where it comes from, masked.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from telemetryflow._configuration.credentials import Credentials, mask_key_id
from telemetryflow._configuration.errors import CredentialsError
from telemetryflow._configuration.user_config import (
    load_user_config,
    save_user_config,
    user_config_path,
)

__all__ = ["add_setup_parser", "add_show_key_parser", "register", "run_setup", "run_show_key"]

_KEY_ID_ENV = "TELEMETRYFLOW_API_KEY_ID"


def register(subparsers: Any) -> None:
    """Add both subcommands (the hook ``telemetryflow.cli`` discovers)."""
    add_setup_parser(subparsers)
    add_show_key_parser(subparsers)


def add_setup_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "setup",
        help="store the API key in the user config file (owner-only)",
        description="Store the API key (and optionally the endpoint) in the user config "
        "file. The secret is prompted for without echo, or read from stdin when piped.",
    )
    parser.add_argument("--key-id", help="API key id (tfk_...); prompted for if omitted")
    parser.add_argument("--endpoint", help="collector endpoint, host:port or URL")
    parser.add_argument(
        "--config-file", type=Path, help="file to write (default: the user config file)"
    )
    parser.set_defaults(func=run_setup)
    return parser


def add_show_key_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "show-key", help="print the API key id in effect, masked, and where it comes from"
    )
    parser.add_argument(
        "--config-file", type=Path, help="file to read (default: the user config file)"
    )
    parser.set_defaults(func=run_show_key)
    return parser


def _environ(config_file: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if config_file is not None:
        env["TELEMETRYFLOW_CONFIG_FILE"] = str(config_file)
    return env


def _read_secret() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("API key secret (tfs_..., not echoed): ")
    return sys.stdin.readline().strip()


def run_setup(args: argparse.Namespace) -> int:
    """Validate the key, then write it; exit status 0 on success, 2 on bad input."""
    key_id = args.key_id
    if not key_id:
        if not sys.stdin.isatty():
            print("setup: pass --key-id when stdin is not a terminal", file=sys.stderr)
            return 2
        key_id = input("API key id (tfk_...): ").strip()
    secret = _read_secret()
    try:
        credentials = Credentials.create(key_id, secret)
    except CredentialsError as exc:
        print(f"setup: {exc}", file=sys.stderr)  # names the field, never the secret
        return 2
    values = {"key_id": credentials.key_id, "key_secret": credentials.key_secret}
    if args.endpoint:
        from telemetryflow._configuration.config import parse_endpoint

        try:
            parse_endpoint(args.endpoint)
        except ValueError as exc:
            print(f"setup: endpoint: {exc}", file=sys.stderr)
            return 2
        values["endpoint"] = args.endpoint.strip()
    path = args.config_file or user_config_path()
    try:
        written = save_user_config(values, path)
    except OSError as exc:
        print(f"setup: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"Saved {credentials.masked_key_id} to {written} (readable by you only).")
    if os.environ.get(_KEY_ID_ENV):
        print(f"Note: {_KEY_ID_ENV} is set in this shell and takes precedence over the file.")
    return 0


def run_show_key(args: argparse.Namespace) -> int:
    """Print the key id in effect (environment first), masked; 1 if there is none."""
    env = _environ(args.config_file)
    from_env = env.get(_KEY_ID_ENV, "").strip()
    if from_env:
        print(f"{mask_key_id(from_env)}  (from {_KEY_ID_ENV})")
        return 0
    key_id = load_user_config(env).get("key_id")
    if key_id:
        print(f"{mask_key_id(key_id)}  (from {user_config_path(env)})")
        return 0
    print(f"no API key configured; run 'telemetryflow setup' or set {_KEY_ID_ENV}", file=sys.stderr)
    return 1
