"""The OpenAPI description of the observability API (``api._observability``).

Kept apart from ``server/_openapi.py`` so the field bounds come straight from
:data:`LIMITS`: the document cannot promise a bound the validation does not keep.
"""

from __future__ import annotations

from typing import Any

from telemetryflow.collector.api._observability import LIMITS

__all__ = ["OBSERVABILITY_PATHS", "OBSERVABILITY_SCHEMAS"]

_JSON = "application/json"
_TAG = "observability"
_STR = {"type": "string"}
_REF_ERROR = {"$ref": "#/components/schemas/Error"}
_OK = {"type": "boolean", "const": True}


def _text(limit: str, doc: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": LIMITS[limit], "description": doc}


def _tags(doc: str) -> dict[str, Any]:
    return {
        "type": "object",
        "maxProperties": LIMITS["tags"],
        "additionalProperties": {"type": "string", "maxLength": LIMITS["tag_value"]},
        "description": doc,
    }


_ERROR_BODY = {
    "type": "object",
    "required": ["message"],
    "additionalProperties": False,
    "properties": {
        "message": _text("message", "Human-readable error message."),
        "code": _text("code", "Application error code; groups with the stack (`_OTHER` if none)."),
        "stack": _text("stack", "Stack trace. A Python traceback groups exactly as the SDK "
                       "groups it; otherwise the message, numbers masked, stands in."),
        "tags": _tags("Key/value tags; `service.name` (or `service`) names the service."),
    },
}  # fmt: skip
_EVENT_BODY = {
    "type": "object",
    "required": ["event"],
    "additionalProperties": False,
    "properties": {
        "event": _text("event", "Event name."),
        "properties": {"type": "object", "maxProperties": LIMITS["properties"],
                       "description": "Arbitrary event properties (at most "
                       f"{LIMITS['properties_bytes']} bytes of JSON)."},
        "distinct_id": {"type": ["string", "integer"], "maxLength": LIMITS["distinct_id"],
                        "description": "Stable id of the acting user."},
    },
}  # fmt: skip
_METRIC_BODY = {
    "type": "object",
    "required": ["name", "value"],
    "properties": {
        "name": {"type": "string", "maxLength": 255, "description": "Metric name."},
        "value": {"type": "number", "description": "Numeric metric value."},
        "tags": _tags("Key/value tags for grouping."),
        "type": {"enum": ["counter", "gauge", "timing", "distribution"], "default": "gauge"},
        "timestamp": {"type": ["string", "number"]},
        "unit": _STR,
        "idempotency_key": _STR,
    },
}
_SAMPLE = {
    "type": "object",
    "properties": {
        **dict.fromkeys(("error_id", "service", "type", "code", "message", "stack",
                         "trace_id", "span_id", "time"), _STR),
        "tags": {"type": "object"},
        "source": {"enum": ["rest", "otlp"]},
    },
}  # fmt: skip
_GROUPS = {
    "type": "object",
    "properties": {
        "groups": {"type": "array", "items": {"type": "object", "properties": {
            "fingerprint": _STR, "type": _STR, "message": _STR,
            "count": {"type": "integer"}, "first_seen": _STR, "last_seen": _STR,
            "sample": {"$ref": "#/components/schemas/ErrorOccurrence"}}}},
        "total_occurrences": {"type": "integer"},
        "total_groups": {"type": "integer"},
    },
}  # fmt: skip
_EVENTS = {
    "type": "object",
    "properties": {"events": {"type": "array", "items": {"type": "object", "properties": {
        "event": _STR, "count": {"type": "integer"},
        "distinct_ids": {"type": "integer", "description": "How many different users."},
        "first_seen": _STR, "last_seen": _STR}}}},
}  # fmt: skip
_FLAG = {
    "type": "object",
    "required": ["enabled"],
    "properties": {
        "enabled": {"type": "boolean"},
        "key": _STR,
        "variant": {"type": ["string", "null"]},
        "reason": {"enum": ["static", "default", "targeting_match", "split", "disabled", "error"]},
        "error": {"enum": ["flag_not_found", "type_mismatch"]},
    },
}

OBSERVABILITY_SCHEMAS: dict[str, Any] = {
    "ErrorCapture": _ERROR_BODY,
    "ProductEvent": _EVENT_BODY,
    "ErrorOccurrence": _SAMPLE,
}


def _responses(ok: dict[str, Any], body: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {_JSON: {"schema": ok}}}}
    problems = [
        ("400", "A required field or parameter is missing, the JSON is malformed, or a "
         "field is unknown; the message names it"),
        ("401", "Missing or invalid API key"),
        ("429", "Rate limited; see Retry-After"),
        ("503", "Overloaded or the disk is full; see Retry-After"),
    ]  # fmt: skip
    if body:
        problems += [
            ("413", "Body too large (after decompression)"),
            ("415", "Content-Type must be application/json"),
            ("422", "A field has the wrong type or is past its bound; the message names it"),
        ]
    for code, text in problems:
        out[code] = {"description": text, "content": {_JSON: {"schema": _REF_ERROR}}}
    return out


def _param(name: str, doc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema or _STR, "description": doc}


_LIST = [
    _param("service", "Only this service."),
    _param("since", "Start of the range: RFC 3339, Unix seconds, or a duration ago (`2h`)."),
    _param("until", "End of the range (default now)."),
    _param("window", "Length of the range ending at `until` (`24h`)."),
    _param("limit", "At most this many entries.",
           {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
]  # fmt: skip
_FLAG_PARAMS = [
    {"name": "key", "in": "path", "required": True,
     "schema": {"type": "string", "maxLength": LIMITS["flag_key"]},
     "description": "Feature flag key."},
    _param("targeting_key", "The key rollouts hash (wins over the next two)."),
    _param("user_id", "The acting user (used when there is no `targeting_key`)."),
    _param("distinct_id", "The acting user (used when there is neither of the above)."),
]  # fmt: skip


def _post(summary: str, schema: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "tags": [_TAG],
        "summary": summary,
        "requestBody": {"required": True, "content": {_JSON: {"schema": schema}}},
        "responses": _responses(ok, body=True),
    }


def _get(summary: str, params: list[dict[str, Any]], ok: dict[str, Any]) -> dict[str, Any]:
    return {"tags": [_TAG], "summary": summary, "parameters": params,
            "responses": _responses(ok, body=False)}  # fmt: skip


OBSERVABILITY_PATHS: dict[str, Any] = {
    "/v1/observability/errors": {
        "post": _post(
            "Capture an error; grouped by the SDK's fingerprint",
            {"$ref": "#/components/schemas/ErrorCapture"},
            {"type": "object", "properties": {"ok": _OK, "error_id": _STR}},
        ),
        "get": _get(
            "Error groups, most recently seen first (SDK captures and posted errors)",
            [*_LIST, _param("fingerprint", "Only this group."), _param("type", "Only this type.")],
            _GROUPS,
        ),
    },
    "/v1/observability/errors/{error_id}": {
        "get": {
            **_get(
                "One error occurrence by the error_id its capture answered, with its group",
                [{"name": "error_id", "in": "path", "required": True, "schema": _STR}],
                {"$ref": "#/components/schemas/ErrorOccurrence"},
            ),
            "responses": {
                **_responses({"$ref": "#/components/schemas/ErrorOccurrence"}, body=False),
                "404": {
                    "description": "No such error in this key's project",
                    "content": {_JSON: {"schema": _REF_ERROR}},
                },
            },
        },
    },
    "/v1/observability/events": {
        "post": _post(
            "Track a product event",
            {"$ref": "#/components/schemas/ProductEvent"},
            {"type": "object", "properties": {"ok": _OK}},
        ),
        "get": _get(
            "Count and distinct users per event name, most frequent first",
            [*_LIST, _param("event", "Only this event name.")],
            _EVENTS,
        ),
    },
    "/v1/observability/metrics": {
        "post": _post(
            "Report one metric point (stored as /v1/metrics/report stores it)",
            _METRIC_BODY,
            {"type": "object", "properties": {"ok": _OK}},
        ),
    },
    "/v1/observability/flags/{key}": {
        "get": _get(
            "Evaluate a feature flag of the collector's --flags file, as the SDK would",
            _FLAG_PARAMS,
            _FLAG,
        ),
    },
}
