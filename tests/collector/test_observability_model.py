"""The error/event model: SDK captures (over OTLP) and API posts land in the same groups.

A real collector receives what a real SDK client exports; the observability methods of
the collector's :class:`Pipeline` read and write the same store.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import KEY_A, KEY_B

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._extras.capture import fingerprint_stack_text
from telemetryflow._extras.flags import FlagSet
from telemetryflow.collector import ApiKey, Collector
from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.server._auth import Authenticator, Principal, RateLimiter
from telemetryflow.collector.store.sqlite._schema import SCHEMA_VERSION
from telemetryflow.collector.store.sqlite._store import Store

ALPHA = Principal(KEY_A.project, KEY_A.key_id)
BETA = Principal(KEY_B.project, KEY_B.key_id)
STACK = """Traceback (most recent call last):
  File "/srv/shop/billing/webhooks.py", line 88, in deliver
    response = post(url, payload)
  File "/srv/shop/billing/http.py", line 12, in post
    raise TimeoutError("timed out")
TimeoutError: timed out
"""


def pipeline_of(collector: Collector) -> Pipeline:
    return Pipeline(collector.store, Authenticator((KEY_A, KEY_B)), RateLimiter(0))


def sdk_client(
    collector: Collector,
    key: ApiKey = KEY_A,
    service: str = "shop",
    protocol: str = "http",
    **signals: bool,
) -> TelemetryFlowClient:
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(key.key_id, key.key_secret)
        .with_service(service, "1.0.0")
        .with_insecure()
        .with_global_providers(False)
    )
    if protocol == "grpc":
        builder = builder.with_endpoint(collector.grpc_endpoint or "").with_grpc()
    else:
        builder = builder.with_endpoint(collector.http_endpoint.split("://")[1]).with_http()
    if signals:
        builder = builder.with_signals(**signals)
    client = builder.build()
    client.initialize()
    return client


def groups_by_type(pipeline: Pipeline, principal: Principal = ALPHA) -> dict[str, Any]:
    return {g["type"]: g for g in pipeline.error_groups(principal, {})["groups"]}


def raise_value_error() -> None:
    raise ValueError("card 4242 declined")


# -- errors ------------------------------------------------------------------------------------
def test_posted_errors_group_by_code_and_message_with_numbers_masked(collector: Collector) -> None:
    pipeline = pipeline_of(collector)
    first = pipeline.capture_error(
        ALPHA,
        {"message": "payment webhook failed for order 1234", "code": "WEBHOOK_TIMEOUT",
         "tags": {"service": "billing"}},
    )  # fmt: skip
    second = pipeline.capture_error(
        ALPHA, {"message": "payment webhook failed for order 98", "code": "WEBHOOK_TIMEOUT"}
    )
    pipeline.capture_error(ALPHA, {"message": "payment webhook failed for order 5"})
    pipeline.capture_error(ALPHA, {"message": "inventory sync failed", "code": "WEBHOOK_TIMEOUT"})
    assert first["ok"] is True and re.fullmatch(r"[0-9a-f]{32}", first["error_id"])
    assert first["error_id"] != second["error_id"]
    listing = pipeline.error_groups(ALPHA, {})
    assert (listing["total_occurrences"], listing["total_groups"]) == (4, 3)
    counts = sorted((g["type"], g["count"]) for g in listing["groups"])
    assert counts == [("WEBHOOK_TIMEOUT", 1), ("WEBHOOK_TIMEOUT", 2), ("_OTHER", 1)]
    webhook = next(g for g in listing["groups"] if g["count"] == 2)
    assert webhook["sample"]["error_id"] == second["error_id"]  # the latest occurrence
    assert webhook["sample"]["source"] == "rest"
    assert webhook["first_seen"] < webhook["last_seen"]
    assert listing["groups"][0]["message"] == "inventory sync failed"  # last seen first
    assert pipeline.error_groups(BETA, {}) == {
        "groups": [], "total_occurrences": 0, "total_groups": 0,
    }  # fmt: skip


def test_a_posted_stack_gets_the_fingerprint_the_sdk_gives_it(collector: Collector) -> None:
    pipeline = pipeline_of(collector)
    for message in ("timed out", "timed out again"):
        pipeline.capture_error(ALPHA, {"message": message, "code": "E_TIMEOUT", "stack": STACK})
    (group,) = pipeline.error_groups(ALPHA, {})["groups"]
    assert group["count"] == 2
    assert group["fingerprint"] == fingerprint_stack_text("E_TIMEOUT", STACK)
    assert group["sample"]["stack"] == STACK


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_captures_and_posted_errors_share_groups_and_count_once(
    collector: Collector, protocol: str
) -> None:
    client = sdk_client(collector, protocol=protocol)
    with client.span("POST /webhook"):  # a log record and a span event for each capture
        sdk_error_id = client.capture_error("timed out", code="E_TIMEOUT", stack=STACK,
                                            tags={"tenant": "acme"})  # fmt: skip
        try:
            raise_value_error()
        except ValueError:
            exception_id = client.capture_exception()
    client.shutdown(timeout=10)
    pipeline = pipeline_of(collector)
    posted = pipeline.capture_error(
        ALPHA, {"message": "timed out", "code": "E_TIMEOUT", "stack": STACK}
    )
    groups = groups_by_type(pipeline)
    assert set(groups) == {"E_TIMEOUT", "ValueError"}
    timeout = groups["E_TIMEOUT"]
    assert timeout["count"] == 2  # one SDK capture (sent twice) + one post
    assert timeout["sample"]["error_id"] == posted["error_id"]
    value_error = groups["ValueError"]
    assert value_error["count"] == 1
    sample = value_error["sample"]
    assert sample["error_id"] == exception_id
    assert (sample["source"], sample["service"]) == ("otlp", "shop")
    assert sample["message"] == "card 4242 declined"
    assert "raise_value_error" in sample["stack"]
    assert re.fullmatch(r"[0-9a-f]{32}", sample["trace_id"])
    with collector.store.reader() as conn:
        stored = conn.execute(
            "SELECT tags, source FROM error_occurrences WHERE error_id = ?", (sdk_error_id,)
        ).fetchall()
        spans = conn.execute("SELECT name, events FROM spans").fetchall()
        logs = conn.execute("SELECT count(*) FROM logs WHERE severity_text = 'ERROR'").fetchone()
    assert len(stored) == 1 and json.loads(stored[0][0]) == {"tenant": "acme"}
    # both copies of each capture were stored in full: only the occurrence is deduplicated
    assert [(name, len(json.loads(events))) for name, events in spans] == [("POST /webhook", 2)]
    assert logs == (2,)


def test_an_error_sent_only_as_a_span_event_is_captured(collector: Collector) -> None:
    client = sdk_client(collector, metrics=False, logs=False, traces=True)
    with client.span("job"):
        try:
            raise_value_error()
        except ValueError:
            error_id = client.capture_exception()
    client.shutdown(timeout=10)
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (0,)
    group = groups_by_type(pipeline_of(collector))["ValueError"]
    assert (group["count"], group["sample"]["error_id"]) == (1, error_id)


def test_an_error_is_found_by_the_id_its_capture_answered(collector: Collector) -> None:
    pipeline = pipeline_of(collector)
    first = pipeline.capture_error(ALPHA, {"message": "quota 10 exceeded", "code": "QUOTA"})
    second = pipeline.capture_error(ALPHA, {"message": "quota 11 exceeded", "code": "QUOTA"})
    found = pipeline.error_by_id(ALPHA, first["error_id"])
    assert (found["error_id"], found["message"], found["group"]["count"]) == (
        first["error_id"], "quota 10 exceeded", 2,
    )  # fmt: skip
    assert pipeline.error_by_id(ALPHA, second["error_id"])["fingerprint"] == found["fingerprint"]
    with pytest.raises(BadRequestError) as caught:
        pipeline.error_by_id(BETA, first["error_id"])  # another project's error
    assert caught.value.status == 404


def test_error_listing_filters(collector: Collector) -> None:
    pipeline = pipeline_of(collector)
    pipeline.capture_error(ALPHA, {"message": "a", "code": "A", "tags": {"service.name": "api"}})
    pipeline.capture_error(ALPHA, {"message": "b", "code": "B", "tags": {"service": "worker"}})
    only_api = pipeline.error_groups(ALPHA, {"service": "api"})["groups"]
    assert [g["type"] for g in only_api] == ["A"]
    assert [g["type"] for g in pipeline.error_groups(ALPHA, {"type": "B"})["groups"]] == ["B"]
    assert pipeline.error_groups(ALPHA, {"since": "1h", "limit": "1"})["total_groups"] == 2
    assert len(pipeline.error_groups(ALPHA, {"limit": "1"})["groups"]) == 1
    assert pipeline.error_groups(ALPHA, {"until": "2h"})["groups"] == []


# -- product events ----------------------------------------------------------------------------
def test_sdk_and_posted_events_count_together_with_distinct_users(collector: Collector) -> None:
    client = sdk_client(collector)
    client.set_feature_flags({"new_checkout": True})
    client.track_event("checkout_completed", {"plan": "pro"}, distinct_id="u_1")
    client.track_event("checkout_completed", {"plan": "free"}, distinct_id="u_2")
    client.track_event("page_viewed")
    client.is_enabled("new_checkout", user_id="u_1")  # a feature_flag.evaluation event
    client.capture_error("boom")  # an exception event
    client.log_info("not an event")
    client.shutdown(timeout=10)
    pipeline = pipeline_of(collector)
    pipeline.track_event(ALPHA, {"event": "checkout_completed", "distinct_id": "u_1"})
    pipeline.track_event(
        ALPHA,
        {"event": "checkout_completed", "properties": {"plan": "pro", "amount_usd": 20},
         "distinct_id": 7},
    )  # fmt: skip
    events = {e["event"]: e for e in pipeline.event_counts(ALPHA, {})["events"]}
    assert set(events) == {"checkout_completed", "page_viewed"}
    checkout = events["checkout_completed"]
    assert (checkout["count"], checkout["distinct_ids"]) == (4, 3)
    assert (events["page_viewed"]["count"], events["page_viewed"]["distinct_ids"]) == (1, 0)
    only = pipeline.event_counts(ALPHA, {"event": "page_viewed"})["events"]
    assert [e["event"] for e in only] == ["page_viewed"]
    assert pipeline.event_counts(BETA, {})["events"] == []
    with collector.store.reader() as conn:
        props = conn.execute(
            "SELECT properties FROM product_events WHERE distinct_id = 'u_2'"
        ).fetchone()
    assert json.loads(props[0]) == {"plan": "free"}


# -- metrics -----------------------------------------------------------------------------------
def test_a_posted_metric_is_stored_as_the_report_endpoint_stores_it(collector: Collector) -> None:
    pipeline = pipeline_of(collector)
    assert pipeline.report_metric(
        ALPHA, {"name": "queue.depth", "value": 42, "tags": {"queue": "emails"}}
    ) == {"ok": True}
    answer = pipeline.query("metrics", ALPHA, {"name": "queue.depth", "agg": "max"})
    assert [(s["tags"], s["value"]) for s in answer["series"]] == [({"queue": "emails"}, 42)]
    assert pipeline.query("metrics", BETA, {"name": "queue.depth"})["series"] == []


# -- flags -------------------------------------------------------------------------------------
FLAGS = {
    "new_checkout": {"rollout": 30},
    "beta": {"enabled": False},
    "always": True,
    "vip": {"rollout": 0, "targets": {"u_7": True}},
    "button": {"variants": ["red", "blue"], "rollout": {"blue": 50}},
}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_flag_answers_match_the_sdk_for_the_same_users(
    collector: Collector, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"flags{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(FLAGS))
    else:
        import yaml

        path.write_text(yaml.safe_dump({"flags": FLAGS}))
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service("flags")
        .with_feature_flags(file=str(path))
        .build()
    )
    pipeline = pipeline_of(collector)
    pipeline.flags = FlagSet.from_file(path)
    seen: set[bool] = set()
    for i in range(300):
        user = f"u_{i}"
        for context in ("user_id", "distinct_id", "targeting_key"):
            for key in (*FLAGS, "unknown"):
                answer = pipeline.evaluate_flag(ALPHA, key, {context: user})
                assert answer["enabled"] is client.is_enabled(key, **{context: user}), (key, user)
        seen.add(pipeline.evaluate_flag(ALPHA, "new_checkout", {"user_id": user})["enabled"])
    assert seen == {True, False}  # the rollout splits these users, so the comparison can fail
    on = sum(pipeline.evaluate_flag(ALPHA, "new_checkout", {"user_id": f"u_{i}"})["enabled"]
             for i in range(300))  # fmt: skip
    assert 60 <= on <= 120  # about 30%
    assert pipeline.evaluate_flag(ALPHA, "vip", {"user_id": "u_7"})["enabled"] is True
    assert pipeline.evaluate_flag(ALPHA, "unknown", {})["error"] == "flag_not_found"
    button = pipeline.evaluate_flag(ALPHA, "button", {"user_id": "u_1"})
    assert (button["enabled"], button["error"]) == (False, "type_mismatch")
    assert button["variant"] in ("red", "blue")
    # targeting_key wins over user_id, as in the SDK
    both = {"targeting_key": "u_1", "user_id": "u_2"}
    assert pipeline.evaluate_flag(ALPHA, "new_checkout", both)["enabled"] is client.is_enabled(
        "new_checkout", **both
    )


# -- retention ---------------------------------------------------------------------------------
def test_age_limit_removes_errors_and_events(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(retention_seconds=3600.0, retention_interval=3600.0)
    pipeline = pipeline_of(collector)
    pipeline.capture_error(ALPHA, {"message": "old"})
    pipeline.track_event(ALPHA, {"event": "signed_up", "distinct_id": "u_1"})
    assert collector.store.usage_by_project()["alpha"] > 0
    collector.store.apply_retention(now_ns=time.time_ns() + 2 * 3600 * 10**9)
    assert pipeline.error_groups(ALPHA, {})["total_occurrences"] == 0
    assert pipeline.event_counts(ALPHA, {})["events"] == []
    assert collector.store.usage_by_project().get("alpha", 0) == 0


def test_size_limit_trims_errors_of_the_largest_project_only(
    make_collector: Callable[..., Collector],
) -> None:
    mib = 1024 * 1024
    collector = make_collector(max_db_bytes=mib, retention_seconds=0.0, retention_interval=3600.0)
    pipeline = pipeline_of(collector)
    for i in range(30):
        pipeline.capture_error(BETA, {"message": f"quiet {i}", "stack": "s" * 1000})
    sent = 0
    for _ in range(6):  # alpha floods: about 2 MiB of errors
        for i in range(300):
            pipeline.capture_error(ALPHA, {"message": f"flood {i}", "stack": "x" * 1200})
            sent += 1
        pipeline.track_event(ALPHA, {"event": "flooding", "properties": {"pad": "y" * 2000}})
    collector.store.apply_retention()
    assert collector.store.live_bytes() <= mib
    assert pipeline.error_groups(BETA, {})["total_occurrences"] == 30
    assert pipeline.error_groups(ALPHA, {})["total_occurrences"] < sent


# -- schema ------------------------------------------------------------------------------------
def test_a_version_2_file_gains_the_tables_and_keeps_its_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "v2.db")
    store = Store(path)
    store.close()
    with sqlite3.connect(path) as conn:  # make it what version 2 wrote
        conn.execute("DROP TABLE error_occurrences")
        conn.execute("DROP TABLE product_events")
        conn.execute(
            "INSERT INTO logs (project, service, time_ns, observed_ns, "
            "severity_number, severity_text, body, trace_id, span_id, attributes, "
            "resource, scope, received_ns) "
            "VALUES ('alpha', 's', 1, 1, 9, 'INFO', 'kept', '', '', '{}', '', '', 1)"
        )
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = Store(path)
    try:
        pipeline = Pipeline(store, Authenticator((KEY_A,)), RateLimiter(0))
        pipeline.capture_error(ALPHA, {"message": "after the upgrade"})
        assert pipeline.error_groups(ALPHA, {})["total_occurrences"] == 1
        with store.reader() as conn:
            assert conn.execute("SELECT body FROM logs").fetchall() == [("kept",)]
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            assert version.fetchone() == (str(SCHEMA_VERSION),)
    finally:
        store.close()
