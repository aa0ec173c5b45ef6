"""``telemetryflow logs|metrics|traces``: query the collector, print tables or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["format_table", "format_trace_tree", "register"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 60) -> str:
    """Plain left-aligned columns; cells longer than ``width`` are cut with an ellipsis."""
    cells = [[_cell(v, width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]  # fmt: skip
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_trace_tree(spans: Sequence[dict[str, Any]], depth: int = 0) -> list[str]:
    """One line per span, indented under its parent: name, service, duration, status."""
    lines: list[str] = []
    for span in spans:
        flag = "  ERROR" if span.get("status") == "ERROR" else ""
        service = f" [{span['service']}]" if span.get("service") else ""
        lines.append(f"{'  ' * depth}{span['name']}{service} {span['duration_ms']:.2f} ms{flag}")
        lines.extend(format_trace_tree(span.get("children", []), depth + 1))
    return lines


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

    metrics = subparsers.add_parser("metrics", help="aggregate a metric, one row per tag set")
    metrics.add_argument("name", help="metric name")
    _common(metrics, "1h")
    metrics.add_argument(
        "--agg", default="avg", help="p50, p90, p95, p99, sum, avg, count, min, max (default avg)"
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


def _call(args: argparse.Namespace, signal: str, params: dict[str, Any],
          render: Callable[[Any, TextIO], None]) -> int:  # fmt: skip
    import httpx

    from telemetryflow._errors import TelemetryFlowError
    from telemetryflow.query import QueryClient

    params.update(window=args.window, since=args.since, until=args.until)
    if signal != "metrics" and params.get("window") is not None:
        params["time_window"] = params.pop("window")
    try:
        with QueryClient(args.endpoint) as client:
            answer = getattr(client, signal).query(**params)
    except TelemetryFlowError as exc:
        print(f"telemetryflow {signal}: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPStatusError as exc:
        message = _error_message(exc.response)
        print(f"telemetryflow {signal}: {exc.response.status_code} {message}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"telemetryflow {signal}: cannot reach the collector: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(answer, sys.stdout)
    return 0


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or "error"


def _run_logs(args: argparse.Namespace) -> int:
    params = {"service": args.service, "severity": args.severity, "trace_id": args.trace_id,
              "contains": args.contains, "limit": args.limit}  # fmt: skip

    def render(answer: Any, out: TextIO) -> None:
        rows = [(r["time"], r["severity"], r["service"], r["body"], r["trace_id"] or None)
                for r in answer["logs"]]  # fmt: skip
        out.write(format_table(("TIME", "SEVERITY", "SERVICE", "BODY", "TRACE_ID"), rows) + "\n")
        out.write(f"{answer['count']} record(s)\n")

    return _call(args, "logs", params, render)


def _run_metrics(args: argparse.Namespace) -> int:
    tags: dict[str, str] = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"telemetryflow metrics: --tag wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        tags[key] = value
    params = {"name": args.name, "agg": args.agg, "tags": tags or None,
              "service": args.service, "step": args.step, "group_by": args.group_by}  # fmt: skip

    def render(answer: Any, out: TextIO) -> None:
        label = answer["agg"]
        if answer.get("step"):
            rows = [(_tags(s["tags"]), p["time"], p["value"])
                    for s in answer["series"] for p in s["points"]]  # fmt: skip
            out.write(format_table(("TAGS", "TIME", label.upper()), rows) + "\n")
        else:
            flat = [(_tags(s["tags"]), s["value"]) for s in answer["series"]]
            out.write(format_table(("TAGS", label.upper()), flat) + "\n")
        out.write(f"{len(answer['series'])} series of {answer['name']}\n")

    return _call(args, "metrics", params, render)


def _tags(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "(none)"


def _run_traces(args: argparse.Namespace) -> int:
    params = {"trace_id": args.trace_id, "service": args.service, "name": args.name,
              "min_duration": args.min_duration, "error": True if args.errors else None,
              "limit": args.limit, "detail": bool(args.trace_id)}  # fmt: skip

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

    return _call(args, "traces", params, render)
