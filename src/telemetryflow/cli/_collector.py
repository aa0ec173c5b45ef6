"""``telemetryflow collector``: run the local collector until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetryflow._extras.flags import FlagSet
    from telemetryflow.collector import CollectorConfig

__all__ = ["parse_size", "register"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
            "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}  # fmt: skip


def parse_size(text: str) -> int:
    """``"16MiB"`` → 16777216; ``"1GB"`` → 10**9; a bare number is bytes."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 16MiB or 1GB)")
    unit = (match.group(2) or "").lower().removesuffix("b")
    if unit not in _FACTORS:
        raise argparse.ArgumentTypeError(f"unknown size unit in {text!r}")
    return int(float(match.group(1)) * _FACTORS[unit])


def _duration(text: str) -> float:
    from telemetryflow.collector.ingest._decode import BadRequestError
    from telemetryflow.collector.query._params import parse_duration

    try:
        return parse_duration(text, "duration")
    except BadRequestError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "collector",
        help="run the local OTLP collector (gRPC 4317, HTTP 4318) with an embedded database",
        description="Receive OTLP over gRPC and HTTP, store it in SQLite, answer queries.",
    )
    _network_arguments(p)
    _limit_arguments(p)
    _auth_arguments(p)
    _storage_arguments(p)
    _forward_arguments(p)
    p.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    p.set_defaults(func=_run)


def _network_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=os.environ.get("TELEMETRYFLOW_COLLECTOR_DB", "telemetryflow.db"),
        help="database file (env TELEMETRYFLOW_COLLECTOR_DB; default %(default)s)",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("TELEMETRYFLOW_COLLECTOR_STORE", ""),
        help="where data is kept: sqlite:///file.db (the default, at --db), chdb:///dir or "
        "clickhouse://user:password@host:8123/database, the tables the OpenTelemetry "
        "Collector's clickhouse exporter writes (env TELEMETRYFLOW_COLLECTOR_STORE; "
        "docs/scale.md; ClickHouse needs pip install 'telemetryflow[clickhouse]')",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address for both receivers (default %(default)s)"
    )
    p.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (0: any free)")
    p.add_argument(
        "--http-port", type=int, default=4318, help="OTLP/HTTP and query API port (0: any free)"
    )
    p.add_argument("--no-grpc", action="store_true", help="do not start the gRPC receiver")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding to an address other than loopback",
    )
    p.add_argument(
        "--max-body-size",
        type=parse_size,
        default=16 * 1024**2,
        help="largest request body, after decompression (default 16MiB)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=1000.0,
        help="requests per second per key, 0 for none (default %(default)s)",
    )


def _limit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-inflight-size",
        type=parse_size,
        default=64 * 1024**2,
        help="request bodies held in memory at once over HTTP; past it, 503 (default 64MiB)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        help="open connections per receiver, lowered to fit the open-file limit "
        "(default %(default)s)",
    )
    p.add_argument(
        "--header-timeout",
        type=_duration,
        default=10.0,
        help="time a client has to send a request's headers, in total (default 10s)",
    )
    p.add_argument(
        "--body-timeout",
        type=_duration,
        default=60.0,
        help="time a client has to send a request's body, in total (default 60s)",
    )


def _auth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY_ID:KEY_SECRET[@PROJECT]",
        help="accept this API key (repeatable; env TELEMETRYFLOW_COLLECTOR_KEYS)",
    )
    p.add_argument(
        "--keys-file", metavar="PATH", help="file of keys, one KEY_ID:KEY_SECRET[@PROJECT] per line"
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="accept requests without credentials (local use only)",
    )


def _storage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retention",
        type=_duration,
        default=7 * 86400.0,
        help="delete data older than this, 0 to keep (default 7d)",
    )
    p.add_argument(
        "--max-db-size",
        type=parse_size,
        default=1024**3,
        help="delete the oldest data past this size, 0 for no limit (default 1GiB)",
    )
    p.add_argument(
        "--sync-full",
        action="store_true",
        help="fsync every commit: survive power loss, not only a crash",
    )
    p.add_argument(
        "--flags",
        metavar="FILE",
        default=os.environ.get("TELEMETRYFLOW_COLLECTOR_FLAGS"),
        help="feature flags (JSON or YAML, the SDK's format) served at "
        "/v1/observability/flags/KEY (env TELEMETRYFLOW_COLLECTOR_FLAGS)",
    )


def _forward_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="URL",
        help="also send everything accepted to this OTLP endpoint: grpc:// or http:// "
        "(plaintext), grpcs:// or https:// (TLS); repeatable "
        "(env TELEMETRYFLOW_COLLECTOR_FORWARD, comma-separated)",
    )
    p.add_argument(
        "--forward-header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="header sent to every upstream, e.g. an API key; repeatable "
        "(env TELEMETRYFLOW_COLLECTOR_FORWARD_HEADERS)",
    )
    p.add_argument(
        "--forward-buffer-size",
        type=parse_size,
        default=os.environ.get("TELEMETRYFLOW_COLLECTOR_FORWARD_BUFFER", "1GiB"),
        help="disk kept per upstream for data it has not taken yet; past it, new data "
        "for it is dropped and counted (env TELEMETRYFLOW_COLLECTOR_FORWARD_BUFFER; "
        "default 1GiB)",
    )


def _flags(path: str | None) -> FlagSet:
    """The flag set of ``--flags`` (empty without one); ``ConfigError`` if unusable."""
    from telemetryflow._extras.flags import EMPTY_FLAGS, FlagSet

    return FlagSet.from_file(path) if path else EMPTY_FLAGS


def _run(args: argparse.Namespace) -> int:
    from telemetryflow._configuration.errors import ConfigError
    from telemetryflow.collector import Collector, CollectorConfig, resolve_keys
    from telemetryflow.collector.forward import LinkLimits, resolve_forward
    from telemetryflow.collector.store._open import StoreOpenError, store_url

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        keys = () if args.no_auth else resolve_keys(args.key, args.keys_file)
        forward = resolve_forward(
            args.forward, args.forward_header,
            limits=LinkLimits(spool_bytes=args.forward_buffer_size),
        )  # fmt: skip
        config = CollectorConfig(
            db_path=args.db, store=args.store, grpc_host=args.host, http_host=args.host,
            grpc_port=None if args.no_grpc else args.grpc_port, http_port=args.http_port,
            keys=keys, auth=not args.no_auth, allow_remote=args.allow_remote,
            max_body_bytes=args.max_body_size, rate_limit=args.rate_limit,
            retention_seconds=args.retention, max_db_bytes=args.max_db_size,
            sync_full=args.sync_full, max_inflight_bytes=args.max_inflight_size,
            max_connections=args.max_connections, header_timeout=args.header_timeout,
            body_timeout=args.body_timeout, feature_flags=_flags(args.flags),
            forward=forward,
        )  # fmt: skip
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"telemetryflow collector: {problem}", file=sys.stderr)
        return 2
    collector = Collector(config)
    try:
        collector.start()
    except (ImportError, StoreOpenError) as exc:  # the extra is missing, or ClickHouse is
        print(f"telemetryflow collector: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"telemetryflow collector: cannot listen: {exc}", file=sys.stderr)
        return 1
    auth = f"{len(keys)} key(s)" if config.auth else "OFF (--no-auth)"
    url = store_url(config.store, config.db_path)  # printed masked: never the password
    where = f"database   {url.path}" if url.kind == "sqlite" else f"store      {url.masked()}"
    flags = f"  flags      {len(config.feature_flags)} from {args.flags}\n" if args.flags else ""
    print(
        "TelemetryFlow collector\n"
        f"  OTLP/gRPC  {collector.grpc_endpoint or 'disabled'}\n"
        f"  OTLP/HTTP  {collector.http_endpoint}  (query API; OpenAPI at /openapi.json)\n"
        f"  web view   {collector.http_endpoint}/ui\n"
        f"  {where}\n"
        f"  auth       {auth}\n"
        f"{flags}"
        f"{_forward_banner(config)}"
        "Press Ctrl+C to stop.",
        file=sys.stderr,
        flush=True,
    )
    collector.serve_forever()
    return 0


def _forward_banner(config: CollectorConfig) -> str:
    """One line per upstream, credentials masked; header names only, never values."""
    lines = [f"  forward    {u.display}\n" for u in config.forward.upstreams]
    if lines and config.forward.headers:
        names = ", ".join(sorted(config.forward.headers))
        lines.append(f"             headers: {names} (values hidden)\n")
    return "".join(lines)
