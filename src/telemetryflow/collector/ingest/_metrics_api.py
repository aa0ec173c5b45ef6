"""The plain-JSON metric ingestion of the 001 document: report one point, or a batch.

A point is ``{"name", "value", "tags"?, "type"?, "timestamp"?}`` with ``type`` one of
``counter`` (a delta to add), ``gauge``, ``timing`` or ``distribution`` (raw values
aggregated exactly). Tag ``service.name`` fills the point's service.

An idempotency key is stored with a fingerprint of what it was sent with, so a retry
of the same request is answered as a duplicate while a different request reusing the
key is refused (409) instead of being silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._otlp import compact_json
from telemetryflow.collector.query._params import parse_instant

__all__ = [
    "FINGERPRINT",
    "MAX_BATCH_POINTS",
    "PointError",
    "batch_rows",
    "check_replay",
    "fingerprint",
    "point_row",
    "report_row",
]

MAX_BATCH_POINTS = 10_000
_MAX_TAGS = 64
_TYPES = {"counter": ("sum", 1, 1), "gauge": ("gauge", 0, 0),
          "timing": ("gauge", 0, 0), "distribution": ("gauge", 0, 0),
          "histogram": ("gauge", 0, 0)}  # fmt: skip
_POINT_FIELDS = frozenset({"name", "value", "tags", "type", "timestamp", "unit"})

Row = tuple[Any, ...]
FINGERPRINT = "_fingerprint"
"""Key of the request fingerprint inside a stored idempotent answer (never returned)."""


class PointError(ValueError):
    """A point that cannot be stored; ``field`` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def point_row(point: Any, project: str, received_ns: int) -> Row:
    """One JSON metric point as a database row; :class:`PointError` says what is wrong."""
    if not isinstance(point, dict):
        raise PointError("point", "a point must be an object")
    unknown = set(point) - _POINT_FIELDS
    if unknown:
        raise PointError(sorted(unknown)[0], f"unknown field(s): {', '.join(sorted(unknown))}")
    name = point.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255 or "\0" in name:
        raise PointError("name", "name must be a non-empty string of at most 255 characters")
    value = point.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise PointError("value", "value must be a finite number")
    kind, monotonic, temporality = _TYPES.get(str(point.get("type", "gauge")), (None, 0, 0))
    if kind is None:
        raise PointError("type", "type must be counter, gauge, timing or distribution")
    tags = _tags(point.get("tags"))
    service = tags.pop("service.name", "")
    when = received_ns
    if point.get("timestamp") not in (None, ""):
        try:
            when = parse_instant(point["timestamp"], "timestamp", received_ns)
        except BadRequestError as exc:
            raise PointError("timestamp", exc.message) from None
    unit = point.get("unit", "")
    if not isinstance(unit, str):
        raise PointError("unit", "unit must be a string")
    return (project, service, name, kind, monotonic, temporality, unit, compact_json(tags),
            when, 0, float(value), None, None, None, None, None, None, received_ns,
            "{}", None, None, None)  # fmt: skip


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a double
        return False


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > _MAX_TAGS:
        raise PointError("tags", f"tags must be an object of at most {_MAX_TAGS} string values")
    out: dict[str, str] = {}
    for key, tag in value.items():
        if isinstance(tag, (dict, list)) or tag is None:
            raise PointError("tags", f"tag {key!r} must be a string")
        out[str(key)] = tag if isinstance(tag, str) else compact_json(tag)
    return out


def _idempotency_key(body: dict[str, Any]) -> str | None:
    key = body.get("idempotency_key")
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= 255:
        raise BadRequestError(400, "idempotency_key must be a string of 1 to 255 characters")
    return key


def fingerprint(content: Any) -> str:
    """A digest of what a request asked to store, to tell a retry from a different request."""
    return hashlib.sha256(compact_json(content).encode()).hexdigest()


def check_replay(previous: dict[str, Any], expected: str, key: str) -> dict[str, Any]:
    """The stored answer of a repeated key, once sure it was sent with the same content.

    Raises:
        BadRequestError: 409, the key was first used for different points.
    """
    answer = dict(previous)
    stored = answer.pop(FINGERPRINT, None)
    if stored is not None and stored != expected:
        raise BadRequestError(
            409,
            f"idempotency_key {key!r} was already used for different points; "
            "use a new key for new data",
        )
    return answer


def report_row(body: Any, project: str) -> tuple[Row, str | None]:
    """``POST /v1/metrics/report``: the row and the idempotency key, if any."""
    if not isinstance(body, dict):
        raise BadRequestError(400, "body must be a JSON object")
    key = _idempotency_key(body)
    point = {k: v for k, v in body.items() if k != "idempotency_key"}
    try:
        return point_row(point, project, time.time_ns()), key
    except PointError as exc:
        raise BadRequestError(400, f"{exc.field}: {exc}") from None


def batch_rows(body: Any, project: str) -> tuple[list[Row], list[dict[str, Any]], str | None]:
    """``POST /v1/metrics/batch``: valid rows, per-point errors, and the idempotency key."""
    if not isinstance(body, dict) or not isinstance(body.get("points"), list):
        raise BadRequestError(400, 'body must be {"points": [...], "idempotency_key"?: "..."}')
    points = body["points"]
    if len(points) > MAX_BATCH_POINTS:
        raise BadRequestError(413, f"a batch holds at most {MAX_BATCH_POINTS} points")
    unknown = set(body) - {"points", "idempotency_key"}
    if unknown:
        raise BadRequestError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    key = _idempotency_key(body)
    received = time.time_ns()
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    for index, point in enumerate(points):
        try:
            rows.append(point_row(point, project, received))
        except PointError as exc:
            errors.append({"index": index, "field": exc.field, "error": str(exc)})
    return rows, errors, key
