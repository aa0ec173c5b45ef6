"""``telemetryflow logs|metrics|traces``: query the collector, print tables or JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from telemetryflow.cli._render import (
    format_metric_names,
    format_series,
    format_table,
    format_trace_tree,
)
from telemetryflow.query._client import AGGREGATIONS

__all__ = ["format_table", "format_trace_tree", "register"]

_PERCENTILE = re.compile(r"p\d{1,2}(\.\d+)?|median")


def _agg(text: str) -> str:
    value = text.strip().lower()
    if value in AGGREGATIONS or _PERCENTILE.fullmatch(value):
        return value
    raise argparse.ArgumentTypeError(f"choose from {', '.join(AGGREGATIONS)} (or any pNN)")


def _common(p: argparse.ArgumentParser, default_window: str) -> None:
    p.add_argument("--endpoint", help="query API URL (env TELEMETRYFLOW_QUERY_ENDPOINT)")
    p.add_argument("--window", help=f"time window such as 5m, 1h, 24h (default {default_window})")
    p.add_argument("--since", help="start: RFC 3339, Unix seconds or a duration ago (2h)")
    p.add_argument("--until", help="end (default now)")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser("logs", help="show recent logs, newest first")
    _common(logs, "24h")
    logs.add_argument("--service", help="only this service.name")
    logs.add_argument("--severity", help="minimum severity: debug, info, warn, error, fatal")
    logs.add_argument("--trace-id", help="only records of this trace")
    logs.add_argument("--contains", help="only records whose body contains this text")
    logs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    logs.set_defaults(func=_run_logs)

    metrics = subparsers.add_parser(
        "metrics",
        help="list metric names, or aggregate one metric, one row per tag set",
        description="Without NAME: every metric name with its type, unit, series and when "
        "it was last seen. With NAME: the metric aggregated over the window.",
    )
    metrics.add_argument("name", nargs="?", help="metric name (omit to list the names)")
    _common(metrics, "1h")
    metrics.add_argument(
        "--agg",
        type=_agg,
        help="p50, p90, p95, p99 (any pNN), sum, avg, count, min, max, last (gauges), "
        "rate (counters, per second); default avg",
    )
    metrics.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only series with this tag (repeatable)",
    )
    metrics.add_argument("--service", help="only this service.name")
    metrics.add_argument("--step", help="bucket width (1m, 15m, 1h) for a time series")
    metrics.add_argument("--group-by", help="merge series by these tags (comma separated)")
    metrics.set_defaults(func=_run_metrics)  # fmt: skip

    traces = subparsers.add_parser("traces", help="list recent traces, or show one as a tree")
    traces.add_argument("trace_id", nargs="?", help="show this trace as an indented tree")
    _common(traces, "24h")
    traces.add_argument("--service", help="traces with a span of this service")
    traces.add_argument("--name", help="traces with a span of this name")
    traces.add_argument("--min-duration", help="traces with a span at least this long (250ms)")
    traces.add_argument("--errors", action="store_true", help="only traces with an error span")
    traces.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    traces.set_defaults(func=_run_traces)


def _call(args: argparse.Namespace, signal: str, ask: Callable[[Any], Any],
          render: Callable[[Any, TextIO], None]) -> int:  # fmt: skip
    """Run ``ask(client)`` and print its answer; every failure is one line on stderr."""
    import httpx

    from telemetryflow._configuration.errors import TelemetryFlowError
    from telemetryflow.query import QueryClient

    try:
        client = QueryClient(args.endpoint)
    except TelemetryFlowError as exc:
        print(f"telemetryflow {signal}: {exc}", file=sys.stderr)
        return 2
    endpoint = client.settings.endpoint
    try:
        with client:
            answer = ask(client)
    except _CommandError as exc:
        print(f"telemetryflow {signal}: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPStatusError as exc:
        message = _error_message(exc.response)
        print(f"telemetryflow {signal}: {exc.response.status_code} {message}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"telemetryflow {signal}: cannot reach the collector at {endpoint} "
              f"({_reason(exc)}); start one with 'telemetryflow collector' or point "
              "--endpoint / TELEMETRYFLOW_QUERY_ENDPOINT at its HTTP port",
              file=sys.stderr)  # fmt: skip
        return 1
    except ValueError:  # a 2xx answer that is not the JSON we expect: not a query API
        print(f"telemetryflow {signal}: {endpoint} did not answer like a TelemetryFlow "
              "collector's query API", file=sys.stderr)  # fmt: skip
        return 1
    if args.json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(answer, sys.stdout)
    return 0


def _reason(exc: Exception) -> str:
    """The last line of the cause, without httpx's class names or a traceback."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or "error"


def _window(args: argparse.Namespace, params: dict[str, Any], key: str) -> dict[str, Any]:
    params.update({key: args.window, "since": args.since, "until": args.until})
    return params


def _run_logs(args: argparse.Namespace) -> int:
    params = _window(args, {"service": args.service, "severity": args.severity,
                            "trace_id": args.trace_id, "contains": args.contains,
                            "limit": args.limit}, "time_window")  # fmt: skip

    def render(answer: Any, out: TextIO) -> None:
        rows = [(r["time"], r["severity"], r["service"], r["body"], r["trace_id"] or None)
                for r in answer["logs"]]  # fmt: skip
        out.write(format_table(("TIME", "SEVERITY", "SERVICE", "BODY", "TRACE_ID"), rows) + "\n")
        out.write(f"{answer['count']} record(s)\n")

    return _call(args, "logs", lambda client: client.logs.query(**params), render)


def _run_metrics(args: argparse.Namespace) -> int:
    if not args.name:
        return _call(args, "metrics", _ask_names, _render_names)
    tags: dict[str, str] = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"telemetryflow metrics: --tag wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        tags[key] = value
    params = _window(args, {"name": args.name, "agg": args.agg or "avg", "tags": tags or None,
                            "service": args.service, "step": args.step,
                            "group_by": args.group_by}, "window")  # fmt: skip

    def ask(client: Any) -> Any:
        answer = client.metrics.query(**params)
        if isinstance(answer, dict) and "unit" not in answer:
            answer["unit"] = _unit_of(client, args.name)
        return answer

    def render(answer: Any, out: TextIO) -> None:
        out.write(format_series(answer, answer.get("unit")) + "\n")

    return _call(args, "metrics", ask, render)


def _ask_names(client: Any) -> Any:
    import httpx

    try:
        return {"metrics": client.list_metrics()}
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
        raise _CommandError(
            "this collector cannot list metric names (an older version); "
            "name the metric: telemetryflow metrics NAME"
        ) from None


class _CommandError(Exception):
    """A failure whose message is the whole story (printed as is, exit status 1)."""


def _render_names(answer: Any, out: TextIO) -> None:
    out.write(format_metric_names(answer["metrics"]) + "\n")


def _unit_of(client: Any, name: str) -> str | None:
    """The metric's unit from the name listing; None when the collector has no listing."""
    import httpx

    try:
        listing = client.list_metrics()
    except (httpx.HTTPError, ValueError):
        return None
    for metric in listing:
        if metric.get("name") == name:
            return metric.get("unit") or None
    return None


def _run_traces(args: argparse.Namespace) -> int:
    params = _window(args, {"trace_id": args.trace_id, "service": args.service,
                            "name": args.name, "min_duration": args.min_duration,
                            "error": True if args.errors else None, "limit": args.limit,
                            "detail": bool(args.trace_id)}, "time_window")  # fmt: skip

    def render(answer: Any, out: TextIO) -> None:
        if args.trace_id:
            if not answer["traces"]:
                out.write(f"trace {args.trace_id} not found\n")
            for trace in answer["traces"]:
                out.write(f"trace {trace['trace_id']}  {trace['duration_ms']:.2f} ms  "
                          f"{trace['span_count']} span(s)\n")  # fmt: skip
                out.write("\n".join(format_trace_tree(trace["spans"])) + "\n")
            return
        rows = [(t["trace_id"], t["start"], t["duration_ms"], t["span_count"],
                 "yes" if t["error"] else "", t["service"], t["root_name"])
                for t in answer["traces"]]  # fmt: skip
        headers = ("TRACE_ID", "START", "DURATION_MS", "SPANS", "ERROR", "SERVICE", "ROOT")
        out.write(format_table(headers, rows) + "\n")
        out.write(f"{answer['count']} trace(s)\n")

    return _call(args, "traces", lambda client: client.traces.query(**params), render)
