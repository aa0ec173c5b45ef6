"""Turn query answers into what the pages draw, without a second query path.

Every figure comes from :meth:`Pipeline.query`; this module only reshapes: a trace's
span tree becomes a flat list in display order (depth and subtree size let the page
collapse subtrees and draw only the rows on screen), times become offsets from the
trace start, and exceptions recorded as span events are lifted out for the detail panel.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["flat_spans", "flat_trace", "list_row", "log_row"]

_EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace")


def list_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One row of the trace list."""
    return {
        "trace_id": summary["trace_id"],
        "root_name": summary["root_name"],
        "service": summary["service"],
        "services": summary["services"],
        "start": summary["start"],
        "duration_ms": summary["duration_ms"],
        "span_count": summary["span_count"],
        "error": summary["error"],
    }


def _exception(span: dict[str, Any]) -> dict[str, str] | None:
    for event in span["events"]:
        attrs = event.get("attributes") or {}
        if event.get("name") == "exception" or "exception.type" in attrs:
            return {key.split(".", 1)[1]: str(attrs.get(key, "")) for key in _EXCEPTION_KEYS}
    return None


def _event(event: dict[str, Any], trace_start: int) -> dict[str, Any]:
    time_ns = int(event.get("time_unix_nano") or 0)
    return {
        "name": event.get("name", ""),
        "offset_ms": max(0, time_ns - trace_start) / 1e6 if time_ns else None,
        "attributes": event.get("attributes") or {},
    }


class _Interner:
    """Each distinct value once in :attr:`values`; spans refer to it by index.

    Thousands of spans share a handful of resources and scopes: sent once each, a
    5,000-span trace is a fraction of the size.
    """

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[str, int] = {}

    def add(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True, default=str)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.values)
            self.values.append(value)
        return index


def flat_trace(roots: list[dict[str, Any]], trace_start: int) -> dict[str, Any]:
    """``spans`` in display order; ``resources`` and ``scopes`` they refer to by index."""
    resources, scopes = _Interner(), _Interner()
    spans = flat_spans(roots, trace_start)
    for span in spans:
        span["resource"] = resources.add(span["resource"])
        span["scope"] = scopes.add(span["scope"])
    return {"spans": spans, "resources": resources.values, "scopes": scopes.values}


def flat_spans(roots: list[dict[str, Any]], trace_start: int) -> list[dict[str, Any]]:
    """Spans in depth-first display order, each with ``depth`` and ``descendants``.

    Iterative, so a 5,000-deep chain of spans does not hit the recursion limit.
    """
    out: list[dict[str, Any]] = []
    # (span, depth, index of its parent row in ``out`` or -1)
    stack: list[tuple[dict[str, Any], int, int]] = [(r, 0, -1) for r in reversed(roots)]
    parents: list[int] = []
    while stack:
        span, depth, parent = stack.pop()
        index = len(out)
        out.append(_span_row(span, depth, parent, trace_start))
        parents.append(parent)
        stack.extend((child, depth + 1, index) for child in reversed(span["children"]))
    for index in range(len(out) - 1, -1, -1):
        parent = parents[index]
        if parent >= 0:
            out[parent]["descendants"] += out[index]["descendants"] + 1
    return out


def _span_row(span: dict[str, Any], depth: int, parent: int, trace_start: int) -> dict[str, Any]:
    return {
        "span_id": span["span_id"],
        "parent_span_id": span["parent_span_id"],
        "parent_index": parent,
        "name": span["name"],
        "service": span["service"],
        "kind": span["kind"],
        "start": span["start"],
        "offset_ms": max(0, span["start_unix_nano"] - trace_start) / 1e6,
        "duration_ms": span["duration_ms"],
        "status": span["status"],
        "status_message": span["status_message"],
        "attributes": span["attributes"],
        "events": [_event(e, trace_start) for e in span["events"]],
        "links": span["links"],
        "trace_state": span["trace_state"],
        "resource": span["resource"],
        "scope": span["scope"],
        "exception": _exception(span),
        "depth": depth,
        "descendants": 0,
    }


def log_row(record: dict[str, Any], trace_start: int | None = None) -> dict[str, Any]:
    """A log record as the pages show it; ``offset_ms`` when shown inside a trace."""
    row = {
        "time": record["time"],
        "time_unix_nano": record["time_unix_nano"],
        "service": record["service"],
        "severity": record["severity"],
        "severity_number": record["severity_number"],
        "body": record["body"],
        "trace_id": record["trace_id"],
        "span_id": record["span_id"],
        "attributes": record["attributes"],
        "resource": record["resource"],
        "scope": record["scope"],
    }
    if trace_start is not None:
        row["offset_ms"] = (record["time_unix_nano"] - trace_start) / 1e6
    return row
