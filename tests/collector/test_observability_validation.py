"""Bad input to the observability API: a 4xx naming the field, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from collector_helpers import KEY_A

from telemetryflow.collector import Collector
from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.api._observability import LIMITS
from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.server._auth import Authenticator, Principal, RateLimiter

ALPHA = Principal(KEY_A.project, KEY_A.key_id)

# (path, body, status, text the message must contain)
BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("errors", {}, 400, "message is required"),
    ("errors", {"message": None}, 400, "message is required"),
    ("errors", {"message": "  "}, 400, "message is required"),
    ("errors", {"code": "E1"}, 400, "message is required"),
    ("errors", {"message": 42}, 422, "message must be a string"),
    ("errors", {"message": "m", "code": 7}, 422, "code must be a string"),
    ("errors", {"message": "m", "stack": ["a"]}, 422, "stack must be a string"),
    ("errors", {"message": "m", "tags": "service=billing"}, 422, "tags must be an object"),
    ("errors", {"message": "m", "tags": {"service": {"a": 1}}}, 422, "tags.service must be"),
    ("errors", {"message": "m", "tags": {"service": None}}, 422, "tags.service must be"),
    ("errors", {"message": "x" * (LIMITS["message"] + 1)}, 422, "message is too long"),
    ("errors", {"message": "m", "stack": "s" * (LIMITS["stack"] + 1)}, 422, "stack is too long"),
    ("errors", {"message": "m", "code": "c" * (LIMITS["code"] + 1)}, 422, "code is too long"),
    ("errors", {"message": "m", "tags": {f"k{i}": "v" for i in range(LIMITS["tags"] + 1)}},
     422, "tags has too many entries"),
    ("errors", {"message": "m", "tags": {"k": "v" * (LIMITS["tag_value"] + 1)}},
     422, "tags.k is too long"),
    ("errors", {"message": "m", "tags": {"": "v"}}, 422, "key must be 1 to"),
    ("errors", {"message": "m", "msg": "typo"}, 400, "unknown field(s): msg"),
    ("errors", ["message"], 400, "body must be a JSON object"),
    ("events", {}, 400, "event is required"),
    ("events", {"properties": {"plan": "pro"}}, 400, "event is required"),
    ("events", {"event": 1}, 422, "event must be a string"),
    ("events", {"event": "e", "properties": [1]}, 422, "properties must be an object"),
    ("events", {"event": "e", "distinct_id": True}, 422, "distinct_id must be a string"),
    ("events", {"event": "e", "distinct_id": {"id": 1}}, 422, "distinct_id must be a string"),
    ("events", {"event": "e" * (LIMITS["event"] + 1)}, 422, "event is too long"),
    ("events", {"event": "e", "properties": {f"p{i}": i for i in range(LIMITS["properties"] + 1)}},
     422, "properties has too many entries"),
    ("events", {"event": "e", "properties": {"pad": "x" * LIMITS["properties_bytes"]}},
     422, "properties is too large"),
    ("events", {"event": "e", "distinct_id": "u" * (LIMITS["distinct_id"] + 1)},
     422, "distinct_id is too long"),
    ("metrics", {"value": 1}, 400, "name is required"),
    ("metrics", {"name": "queue.depth"}, 400, "value is required"),
    ("metrics", {"name": 5, "value": 1}, 422, "name must be a string"),
    ("metrics", {"name": "q", "value": "42"}, 422, "value must be a number"),
    ("metrics", {"name": "q", "value": True}, 422, "value must be a number"),
    ("metrics", {"name": "q", "value": 1, "tags": ["a"]}, 422, "tags must be an object"),
    ("metrics", {"name": "q", "value": 1, "extra": 1}, 400, "unknown field(s): extra"),
]  # fmt: skip


def _call(pipeline: Pipeline, path: str, body: Any) -> dict[str, Any]:
    method = {"errors": pipeline.capture_error, "events": pipeline.track_event,
              "metrics": pipeline.report_metric}[path]  # fmt: skip
    return method(ALPHA, body)


@pytest.mark.parametrize(("path", "body", "status", "text"), BAD_BODIES)
def test_bad_bodies_are_refused_naming_the_field(
    collector: Collector, path: str, body: Any, status: int, text: str
) -> None:
    pipeline = Pipeline(collector.store, Authenticator((KEY_A,)), RateLimiter(0))
    with pytest.raises(BadRequestError) as caught:
        _call(pipeline, path, body)
    assert (caught.value.status, text in caught.value.message) == (status, True), (
        caught.value.message
    )
    with collector.store.reader() as conn:
        stored = [
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("error_occurrences", "product_events", "metric_points")
        ]
    assert stored == [0, 0, 0]


def test_values_at_their_bounds_are_accepted(collector: Collector) -> None:
    pipeline = Pipeline(collector.store, Authenticator((KEY_A,)), RateLimiter(0))
    tags = {f"k{i}": "v" * LIMITS["tag_value"] for i in range(LIMITS["tags"])}
    pipeline.capture_error(
        ALPHA, {"message": "x" * LIMITS["message"], "code": "c" * LIMITS["code"],
                "stack": "s" * LIMITS["stack"], "tags": tags},
    )  # fmt: skip
    pipeline.track_event(
        ALPHA, {"event": "e" * LIMITS["event"], "distinct_id": "u" * LIMITS["distinct_id"],
                "properties": {f"p{i}": i for i in range(LIMITS["properties"])}},
    )  # fmt: skip
    assert pipeline.error_groups(ALPHA, {})["total_occurrences"] == 1
    assert pipeline.event_counts(ALPHA, {})["events"][0]["count"] == 1


@pytest.mark.parametrize(
    ("key", "params", "text"),
    [
        ("k" * (LIMITS["flag_key"] + 1), {}, "key must be 1 to"),
        ("new_checkout", {"user": "u_1"}, "unknown parameter(s): user"),
    ],
)
def test_bad_flag_requests_are_refused(
    collector: Collector, key: str, params: dict[str, Any], text: str
) -> None:
    pipeline = Pipeline(collector.store, Authenticator((KEY_A,)), RateLimiter(0))
    with pytest.raises(BadRequestError) as caught:
        pipeline.evaluate_flag(ALPHA, key, params)
    assert caught.value.status == 400 and text in caught.value.message


@pytest.mark.parametrize(
    ("params", "text"),
    [({"limit": "0"}, "limit must be between"), ({"since": "yesterday"}, "since"),
     ({"colour": "red"}, "unknown parameter(s): colour")],
)  # fmt: skip
def test_bad_listing_parameters_are_refused(
    collector: Collector, params: dict[str, Any], text: str
) -> None:
    pipeline = Pipeline(collector.store, Authenticator((KEY_A,)), RateLimiter(0))
    for listing in (pipeline.error_groups, pipeline.event_counts):
        with pytest.raises(BadRequestError) as caught:
            listing(ALPHA, params)
        assert caught.value.status == 400 and text in caught.value.message
