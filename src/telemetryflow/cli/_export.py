"""``telemetryflow export --html FILE``: traces as one HTML file that opens with no server.

The collector and key are found like the query commands find them (``--endpoint`` or
``TELEMETRYFLOW_QUERY_ENDPOINT``; ``--api-key`` or the SDK's key variables).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_TRACES = 200
"""At most this many traces in one file (``--since`` takes the newest)."""


def register(subparsers: Any) -> None:
    # the collector package is imported when the command runs, not for every --help
    p = subparsers.add_parser(
        "export",
        help="write traces to one self-contained HTML file (waterfall, details, logs)",
        description="Write one HTML file holding the web view's waterfall, span details and "
        "logs of the chosen traces. It opens from disk with no server and fetches nothing.",
    )
    p.add_argument("--html", required=True, metavar="FILE", help="the file to write")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trace", action="append", metavar="TRACE_ID", help="this trace "
                       "(repeatable)")  # fmt: skip
    which.add_argument("--since", help="every recent trace: a duration ago (1h) or RFC 3339")
    p.add_argument("--limit", type=int, default=50,
                   help=f"with --since, at most this many, newest first (default 50, "
                   f"at most {MAX_TRACES})")  # fmt: skip
    p.add_argument("--endpoint", "--url", dest="endpoint",
                   help="the collector's HTTP URL (env TELEMETRYFLOW_QUERY_ENDPOINT)")  # fmt: skip
    p.add_argument("--api-key", help="KEY_ID:KEY_SECRET (default: TELEMETRYFLOW_API_KEY_ID/"
                   "TELEMETRYFLOW_API_KEY_SECRET)")  # fmt: skip
    p.set_defaults(func=_run)


def _fail(message: str, status: int = 1) -> int:
    print(f"telemetryflow export: {message}", file=sys.stderr)
    return status


def _run(args: argparse.Namespace) -> int:
    import httpx

    from telemetryflow._configuration.errors import TelemetryFlowError
    from telemetryflow.collector.web._export import (
        ExportError,
        build_html,
        fetch_recent,
        fetch_trace,
    )
    from telemetryflow.query._client import resolve_settings

    bad = [t for t in args.trace or [] if not _TRACE_ID.match(t)]
    if bad:
        return _fail("--trace wants 32 hexadecimal characters", 2)
    if not 1 <= args.limit <= MAX_TRACES:
        return _fail(f"--limit must be between 1 and {MAX_TRACES}", 2)
    try:
        settings = resolve_settings(args.endpoint, api_key=args.api_key)
    except TelemetryFlowError as exc:
        return _fail(str(exc), 2)
    try:
        with httpx.Client(base_url=settings.endpoint, headers=settings.headers(),
                          timeout=settings.timeout) as http:  # fmt: skip
            if args.trace:
                traces = [fetch_trace(http, t) for t in args.trace]
            else:
                traces = list(fetch_recent(http, args.since, args.limit))
    except ExportError as exc:
        return _fail(str(exc))
    except httpx.HTTPError:
        return _fail(f"cannot reach the collector at {settings.endpoint}; start one with "
                     "'telemetryflow collector' or point --endpoint at its HTTP port")  # fmt: skip
    except ValueError:
        return _fail(f"{settings.endpoint} did not answer like a TelemetryFlow collector")
    if not traces:
        return _fail(f"no traces since {args.since}")
    path = Path(args.html)
    path.write_text(build_html(traces), encoding="utf-8")
    spans = sum(len(t["spans"]) for t in traces)
    print(f"wrote {path}: {len(traces)} trace(s), {spans} span(s)")
    return 0
