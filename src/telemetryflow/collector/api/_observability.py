"""The observability REST API: capture an error, track an event, report a metric, read a flag.

``POST /v1/observability/errors|events|metrics`` and ``GET /v1/observability/flags/{key}``
let any language use what the SDK offers as Python calls; the listings
``GET /v1/observability/errors|events`` read the same model the SDK's captures fill
(``_errors_events.py``). This module turns request bodies into rows, bounded: a missing
required field is a 400, a wrong type or a value past its bound a 422, each naming the
field. :class:`ObservabilityAPI` is the part of the :class:`Pipeline` that serves it.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from telemetryflow._extras.capture import fingerprint_reported
from telemetryflow._extras.flags import EMPTY_FLAGS, ERROR, FlagSet, targeting_key_of
from telemetryflow._recording.attributes import clean_value
from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._otlp import compact_json
from telemetryflow.collector.query._params import Params
from telemetryflow.collector.server._auth import Principal
from telemetryflow.collector.store._backend import Backend

if TYPE_CHECKING:
    from telemetryflow.collector.forward import Forwarder

__all__ = ["LIMITS", "ObservabilityAPI", "error_row", "event_row", "flag_answer"]

LIMITS: Mapping[str, int] = {
    "message": 8192,
    "code": 256,
    "stack": 65_536,
    "tags": 64,
    "tag_key": 256,
    "tag_value": 1024,
    "event": 256,
    "distinct_id": 256,
    "properties": 128,
    "properties_bytes": 32_768,
    "flag_key": 256,
}
"""Largest accepted value of each field (characters, entries or bytes of JSON)."""

_ERROR_FIELDS = ("message", "code", "stack", "tags")
_EVENT_FIELDS = ("event", "properties", "distinct_id")
_METRIC_FIELDS = ("name", "value", "tags", "type", "timestamp", "unit", "idempotency_key")
_FLAG_CONTEXT = ("targeting_key", "user_id", "distinct_id")
_OTHER = "_OTHER"

Row = tuple[Any, ...]


def _missing(name: str) -> BadRequestError:
    return BadRequestError(400, f"{name} is required")


def _invalid(name: str, what: str) -> BadRequestError:
    return BadRequestError(422, f"{name} {what}")


def _object(body: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError(400, "body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        shown = ", ".join(name[:64] for name in unknown[:10])
        raise BadRequestError(400, f"unknown field(s): {shown}; known: {', '.join(fields)}")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string field within its bound; ``None`` when optional and absent or null."""
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    if required and not value.strip():
        raise _missing(name)
    limit = LIMITS[name]
    if len(value) > limit:
        raise _invalid(name, f"is too long (at most {limit} characters)")
    return value


def _tags(body: dict[str, Any]) -> dict[str, str]:
    """``tags``: at most 64 string values (numbers and booleans read as their JSON text)."""
    value = body.get("tags")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("tags", "must be an object of string values")
    if len(value) > LIMITS["tags"]:
        raise _invalid("tags", f"has too many entries (at most {LIMITS['tags']})")
    out: dict[str, str] = {}
    for key, tag in value.items():
        name = f"tags.{key[:64]}"
        if not key or len(key) > LIMITS["tag_key"]:
            raise _invalid(name, f"key must be 1 to {LIMITS['tag_key']} characters")
        if isinstance(tag, (dict, list)) or tag is None:
            raise _invalid(name, "must be a string")
        text = tag if isinstance(tag, str) else compact_json(tag)
        if len(text) > LIMITS["tag_value"]:
            raise _invalid(name, f"is too long (at most {LIMITS['tag_value']} characters)")
        out[key] = text
    return out


def error_row(body: Any, project: str, received_ns: int) -> tuple[Row, str]:
    """``POST /v1/observability/errors``: the occurrence row and its new ``error_id``.

    The fingerprint is the SDK's (:func:`fingerprint_reported`): the code (``_OTHER``
    without one) and the innermost application frame of a Python ``stack``, else the
    message with its numbers masked.
    """
    fields = _object(body, _ERROR_FIELDS)
    message = _text(fields, "message", required=True)
    assert message is not None
    code = _text(fields, "code")
    stack = _text(fields, "stack")
    tags = _tags(fields)
    error_type = clean_value(code) if code else _OTHER
    error_id = uuid.uuid4().hex
    service = tags.get("service.name") or tags.get("service") or ""
    row = (
        project, service, error_id, fingerprint_reported(error_type, stack, message),
        error_type, code or "", message, stack or "", compact_json(tags), "", "", "rest",
        received_ns, received_ns,
    )  # fmt: skip
    return row, error_id


def event_row(body: Any, project: str, received_ns: int) -> Row:
    """``POST /v1/observability/events``: a product event row."""
    fields = _object(body, _EVENT_FIELDS)
    event = _text(fields, "event", required=True)
    distinct = fields.get("distinct_id")
    if isinstance(distinct, int) and not isinstance(distinct, bool):
        fields = {**fields, "distinct_id": str(distinct)}  # numeric user ids are common
    distinct_id = _text(fields, "distinct_id") or ""
    properties = fields.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _invalid("properties", "must be an object")
    if len(properties) > LIMITS["properties"]:
        raise _invalid("properties", f"has too many entries (at most {LIMITS['properties']})")
    encoded = compact_json(properties)
    if len(encoded.encode()) > LIMITS["properties_bytes"]:
        raise _invalid(
            "properties", f"is too large (at most {LIMITS['properties_bytes']} bytes of JSON)"
        )
    return (project, "", event, distinct_id, encoded, "", "", "rest", received_ns, received_ns)


def _metric_body(body: Any) -> dict[str, Any]:
    """The required fields of a metric point checked here, the rest by the 001 report."""
    fields = _object(body, _METRIC_FIELDS)
    for name in ("name", "value"):
        if fields.get(name) is None:
            raise _missing(name)
    if not isinstance(fields["name"], str):
        raise _invalid("name", "must be a string")
    value = fields["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid("value", "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid("value", "must be a finite number")
    _tags(fields)
    return fields


def flag_answer(flags: FlagSet, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/observability/flags/{key}``: what the SDK's ``is_enabled`` answers.

    The same definitions and rollout hashing as the SDK (``telemetryflow._extras.flags``), the
    same targeting key (``targeting_key``, else ``user_id``, else ``distinct_id``), so
    a user gets the same answer from both. Unknown flags, and flags with variants other
    than on/off, are off; ``variant`` and ``reason`` say why.
    """
    if not key or len(key) > LIMITS["flag_key"]:
        raise BadRequestError(400, f"key must be 1 to {LIMITS['flag_key']} characters")
    p = Params(params, _FLAG_CONTEXT)
    context = {name: p.text(name) for name in _FLAG_CONTEXT}
    result = flags.evaluate(key, targeting_key_of(context))
    answer: dict[str, Any] = {"enabled": False, "key": key, "variant": result.variant,
                              "reason": result.reason}  # fmt: skip
    if result.error_type is not None:
        answer["error"] = result.error_type
    elif isinstance(result.value, bool):
        answer["enabled"] = result.value
    else:
        answer.update(reason=ERROR, error="type_mismatch")
    return answer


class ObservabilityAPI:
    """The observability endpoints as :class:`Pipeline` methods, one per route."""

    backend: Backend
    forwarder: Forwarder | None = None
    """Stored errors and events are offered to it, to send on as OTLP (``--forward``)."""
    flags: FlagSet = EMPTY_FLAGS
    """The definitions ``GET /v1/observability/flags/{key}`` reads (``--flags FILE``)."""

    def report(self, principal: Principal, body: Any) -> dict[str, Any]:
        raise NotImplementedError  # the 001 report, provided by Pipeline

    def capture_error(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Store one error occurrence; answer ``{"ok": true, "error_id": ...}``."""
        row, error_id = error_row(body, principal.project, time.time_ns())
        self.backend.submit(self.backend.captures_batch([row], []))
        if self.forwarder is not None:
            self.forwarder.offer_captures([row], [])
        return {"ok": True, "error_id": error_id}

    def track_event(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Store one product event; answer ``{"ok": true}``."""
        row = event_row(body, principal.project, time.time_ns())
        self.backend.submit(self.backend.captures_batch([], [row]))
        if self.forwarder is not None:
            self.forwarder.offer_captures([], [row])
        return {"ok": True}

    def report_metric(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Store one metric point exactly as ``POST /v1/metrics/report`` does."""
        self.report(principal, _metric_body(body))
        return {"ok": True}

    def evaluate_flag(
        self, principal: Principal, key: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Evaluate flag ``key`` for the targeting key in ``params`` (any project)."""
        return flag_answer(self.flags, key, params)

    def error_groups(self, principal: Principal, params: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /v1/observability/errors``: this project's error groups."""
        return self.backend.error_groups(principal.project, params)

    def error_by_id(self, principal: Principal, error_id: str) -> dict[str, Any]:
        """``GET /v1/observability/errors/{error_id}``: the occurrence a capture answered.

        Raises:
            BadRequestError: 404 when this project has no such error.
        """
        found = self.backend.find_error(principal.project, error_id)
        if found is None:
            raise BadRequestError(404, "no error with this error_id in this project")
        return found

    def event_counts(self, principal: Principal, params: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /v1/observability/events``: this project's events by name."""
        return self.backend.event_counts(principal.project, params)
