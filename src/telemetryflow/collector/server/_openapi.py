"""The OpenAPI 3.1 description of every HTTP endpoint, served at ``/openapi.json``."""

from __future__ import annotations

import copy
from typing import Any

from telemetryflow._version import __version__
from telemetryflow.collector.api._openapi import (
    OBSERVABILITY_PATHS,
    OBSERVABILITY_SCHEMAS,
)

__all__ = ["openapi_document"]

_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"


def _param(name: str, schema: dict[str, Any], doc: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": doc}  # fmt: skip


_STR = {"type": "string", "maxLength": 4096}
_INT = {"type": "integer", "minimum": 1}
_BOOL = {"type": "boolean"}
_WINDOW = "Length of the window ending at `until`: `30s`, `5m`, `1h`, `24h`, `7d`."
_TIME = "RFC 3339 time, Unix seconds, `now`, or a duration meaning that long ago (`2h`)."
_TAG_LIMITS = (
    " At most 32 tag filters; keys are 1-255 letters, digits or `_.:/@-`; no value may "
    "hold NUL or control characters."
)

_COMMON_TIME = [
    _param("since", _STR, "Start of the range. " + _TIME),
    _param("until", _STR, "End of the range (default now). " + _TIME),
]
_LOG_PARAMS = [
    _param("service", _STR, "Only records of this `service.name`."),
    _param("project_name", _STR, "Must be the caller's project (keys are scoped to one)."),
    _param("severity", {"enum": ["trace", "debug", "info", "warn", "error", "fatal"]},
           "Minimum severity."),
    _param("time_window", _STR, _WINDOW + " Default `24h`. Alias: `window`."),
    *_COMMON_TIME,
    _param("trace_id", {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
           "Only records of this trace (32 hex digits)."),
    _param("contains", {"type": "string", "maxLength": 1000},
           "Only records whose body contains this text (case-insensitive for ASCII; "
           "`%` and `_` match themselves)."),
    _param("limit", {**_INT, "maximum": 10000, "default": 500}, "At most this many, newest first."),
]  # fmt: skip
_METRIC_PARAMS = [
    _param("name", _STR, "Metric name (alias: `metric`).", required=True),
    _param("agg", {"type": "string", "default": "avg",
                   "examples": ["p50", "p90", "p95", "p99", "sum", "avg", "count", "min", "max",
                                "last", "rate"]},
           "Aggregation. Percentiles of histograms interpolate within buckets as Prometheus' "
           "histogram_quantile; percentiles of raw points are exact. `last`: the latest "
           "value; `rate`: increase per second (counters, cumulative and reset aware)."),
    _param("percentile", _STR, "Alternative to `agg`: a quantile such as `0.95`."),
    _param("tags", _STR, "Tag filter: `k:v,k2:v2` or a JSON object. Also `tag.KEY=value`. "
           "A key absent from a point's tags matches its resource attribute." + _TAG_LIMITS),
    _param("service", _STR, "Only points of this `service.name`."),
    _param("group_by", _STR, "Merge series by these tags or resource attributes only "
           "(`http.route,service.name`); at most 32."),
    _param("window", _STR, _WINDOW + " Default `1h`. Alias: `time_window`."),
    *_COMMON_TIME,
    _param("step", _STR, "Bucket width of the returned series (`1m`, `15m`, `1h`)."),
    _param("exemplars", {**_BOOL, "default": False}, "Add each series' `exemplars`: "
           "`[{time, time_unix_nano, value, trace_id, span_id}]`, measurements in the "
           "window with the trace and span they were recorded in; the newest 50, oldest "
           "first."),
]  # fmt: skip
_NAMES_PARAMS = [
    _param("service", _STR, "Only metrics with points of this `service.name`."),
    _param("prefix", _STR, "Only names starting with this text (`http.`)."),
    _param("limit", {**_INT, "maximum": 10000, "default": 1000}, "At most this many names."),
    _param("project_name", _STR, "Must be the caller's project (keys are scoped to one)."),
]  # fmt: skip
_NAMES = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "metrics": {"type": "array", "items": {"type": "object", "properties": {
            "name": _STR, "unit": _STR,
            "type": {"enum": ["counter", "updowncounter", "gauge", "histogram", "summary"]},
            "series": {"type": "integer"}, "points": {"type": "integer"},
            "last_seen": {"type": "string", "format": "date-time"},
            "last_seen_unix_nano": {"type": "integer"}}}},
    },
}  # fmt: skip
_TRACE_PARAMS = [
    _param("trace_id", {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
           "Return this trace (all spans, as a tree)."),
    _param("service", _STR, "Traces with a span of this `service.name`."),
    _param("name", _STR, "Traces with a span of this name (alias: `trace`)."),
    _param("min_duration", _STR, "Traces with a span at least this long (`250ms`)."),
    _param("error", _BOOL, "Traces with a span whose status is ERROR."),
    _param("time_window", _STR, _WINDOW + " Default `24h`. Alias: `window`."),
    *_COMMON_TIME,
    _param("detail", {**_BOOL, "default": True}, "Include the span tree of each trace."),
    _param("limit", {**_INT, "maximum": 1000, "default": 100}, "At most this many traces."),
]  # fmt: skip

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"}}}},
}  # fmt: skip
_POINT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "value"],
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "value": {"type": "number"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "type": {"enum": ["counter", "gauge", "timing", "distribution"], "default": "gauge"},
        "timestamp": {"type": ["string", "number"], "description": _TIME},
        "unit": {"type": "string"},
    },
}


def _responses(ok: dict[str, Any], content: str = _JSON) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {content: {"schema": ok}}}}
    for code, text in (("400", "Malformed input"), ("401", "Missing or invalid API key"),
                       ("409", "idempotency_key reused for different points"),
                       ("413", "Body too large (after decompression)"),
                       ("415", "Unsupported Content-Type or Content-Encoding"),
                       ("422", "Metric query too large: narrow since/until or add tags"),
                       ("429", "Rate limited; see Retry-After"),
                       ("503", "OverloadedError; see Retry-After")):  # fmt: skip
        out[code] = {"description": text, "content": {_JSON: {"schema": _ERROR}}}
    return out


def _query_op(summary: str, params: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    body = {"type": "object", "properties": {p["name"]: p["schema"] for p in params}}
    obj = {"type": "object"}
    return {
        "get": {"tags": [tag], "summary": summary, "parameters": params,
                "responses": _responses(obj)},
        "post": {"tags": [tag], "summary": summary + " (parameters as a JSON body)",
                 "requestBody": {"content": {_JSON: {"schema": body}}},
                 "responses": _responses(obj)},
    }  # fmt: skip


def _otlp_op(signal: str) -> dict[str, Any]:
    schema = {"type": "string", "format": "binary"}
    return {"post": {
        "tags": ["otlp"],
        "summary": f"OTLP/HTTP export of {signal} (protobuf or JSON, optionally gzip)",
        "requestBody": {"required": True, "content": {
            _PROTOBUF: {"schema": schema}, _JSON: {"schema": {"type": "object"}}}},
        "responses": _responses(schema, _PROTOBUF),
    }}  # fmt: skip


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "TelemetryFlow local collector",
        "version": __version__,
        "description": "OTLP receiver, metric report/batch API and query API. Every "
        "endpoint but /health and /openapi.json needs `Authorization: Bearer "
        "KEY_ID:KEY_SECRET` (or X-TelemetryFlow-Key-ID/-Secret) unless the collector "
        "runs with --no-auth. A key reads and writes only its own project's data.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"MetricPoint": _POINT, "Error": _ERROR, **OBSERVABILITY_SCHEMAS},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/traces": _otlp_op("traces"),
        "/v1/metrics": _otlp_op("metrics"),
        "/v1/logs": _otlp_op("logs"),
        "/v1/metrics/report": {
            "post": {
                "tags": ["metrics"],
                "summary": "Report one metric point",
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                **_POINT,
                                "properties": {
                                    **_POINT["properties"],
                                    "idempotency_key": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": _responses(
                    {"type": "object", "properties": {"ok": _BOOL, "duplicate": _BOOL}}
                ),
            }
        },
        "/v1/metrics/batch": {
            "post": {
                "tags": ["metrics"],
                "summary": "Report a batch of points; `ok` is true when every point was "
                "accepted. A repeated idempotency_key stores nothing and returns the first "
                "answer; reused for different points it gets 409",
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["points"],
                                "properties": {
                                    "points": {
                                        "type": "array",
                                        "maxItems": 10000,
                                        "items": {"$ref": "#/components/schemas/MetricPoint"},
                                    },
                                    "idempotency_key": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": _responses(
                    {
                        "type": "object",
                        "properties": {
                            "ok": _BOOL,
                            "accepted": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "duplicate": _BOOL,
                            "errors": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "index": {"type": "integer"},
                                        "field": _STR,
                                        "error": _STR,
                                    },
                                },
                            },
                        },
                    }
                ),
            }
        },
        "/v1/metrics/query": _query_op(
            "Aggregate a metric, one series per tag set", _METRIC_PARAMS, "metrics"
        ),
        "/v1/metrics/names": {
            "get": {
                "tags": ["metrics"],
                "summary": "The metric catalogue: name, type, unit, series, points, last seen",
                "parameters": _NAMES_PARAMS,
                "responses": _responses(_NAMES),
            }
        },
        "/v1/logs/query": _query_op("Query logs, newest first", _LOG_PARAMS, "logs"),
        "/v1/traces/query": _query_op("Query traces or one trace by id", _TRACE_PARAMS, "traces"),
        **OBSERVABILITY_PATHS,
        "/v1/status": {
            "get": {
                "tags": ["status"],
                "summary": "What this key's project sent in the last 15 minutes",
                "responses": _responses({"type": "object"}),
            }
        },
        "/health": {
            "get": {
                "tags": ["status"],
                "summary": "Liveness (no auth)",
                "security": [],
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["status"],
                "summary": "This document (no auth)",
                "security": [],
                "responses": {"200": {"description": "OK"}},
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_DOCUMENT)
