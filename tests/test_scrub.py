"""Scrubbing: the key, value and URL rules, the OTLP walk, and secrets seeded everywhere
never reaching a real receiver while innocent look-alikes arrive untouched."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import SeverityLevel, SpanKind, TelemetryConfig
from telemetryflow._configuration.credentials import Credentials
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow._scrubbing.rules import (
    is_card_number,
    is_sensitive_key,
    scrub_query,
    scrub_text,
    scrub_url,
)
from telemetryflow._scrubbing.scrubber import (
    REDACTED,
    Scrubber,
    make_scrubber,
    set_any_value,
    to_python,
)
from telemetryflow.testing import OTLPReceiver, attrs

PROTOCOLS = ["grpc", "http"]
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
CARD = "4111 1111 1111 1111"


# -- key rules ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "password", "db.password", "user.password_hash", "passwd", "PWD", "secret",
        "client_secret", "token", "access_token", "refreshToken", "id_token", "api_key",
        "apiKey", "X-Api-Key", "APIKEY", "authorization", "Authorization", "auth",
        "proxy-authorization", "http.request.header.authorization", "cookie", "Set-Cookie",
        "http.response.header.set-cookie", "session", "session.id", "sessionid", "jwt",
        "private_key", "aws.secret_access_key", "credentials", "signature", "sig", "ssn",
        "card_number", "creditCard", "cvv", "csrf_token", "user.session.token",
    ],
)  # fmt: skip
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "auth_types", "auth.type", "auth.method", "token_count", "gen_ai.usage.input_tokens",
        "llm.usage.total_tokens", "session.duration", "session_count", "password.length",
        "token_bucket", "author", "authors.count", "oauth.provider", "secret.name",
        "cache.key", "key", "http.method", "http.route", "user.id", "keyboard.layout",
        "signal", "design", "passenger.count", "cookie.name", "sessions",
    ],
)  # fmt: skip
def test_innocent_keys(key: str) -> None:
    assert not is_sensitive_key(key)


# -- value rules -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login failed password=hunter2 user=bob", f"login failed password={REDACTED} user=bob"),
        ('{"password":"hun\\"ter2","user":"x"}', f'{{"password":"{REDACTED}","user":"x"}}'),
        ("{'api_key': 'abc123', 'n': 1}", f"{{'api_key': '{REDACTED}', 'n': 1}}"),
        ("Authorization: Bearer abc.def.ghi\nHost: x", f"Authorization: {REDACTED}\nHost: x"),
        ("Cookie: a=1; b=2", f"Cookie: {REDACTED}"),
        ("sent Bearer abcdef123456 upstream", f"sent Bearer {REDACTED} upstream"),
        ("header Basic dXNlcjpwYXNz", f"header Basic {REDACTED}"),
        (f"token is {JWT}", f"token is {REDACTED}"),
        (f"key {KEY_ID}:{KEY_SECRET}", f"key tfk_…0001:{REDACTED}"),
        (f"paid with {CARD}", f"paid with {REDACTED}"),
        ("paid with 5555-5555-5555-4444", f"paid with {REDACTED}"),
        ("amex 378282246310005", f"amex {REDACTED}"),
        ("postgres://app:s3cret@db:5432/app", "postgres://db:5432/app"),
        # URL-encoded, as a server may echo a request back
        (f"rejected Bearer%20{KEY_ID}%3A{KEY_SECRET}", f"rejected Bearer {REDACTED}"),
        (f"unknown key {KEY_ID.replace('_', '%5F')}", "unknown key tfk_…0001"),
        (
            "GET https://bob:pw@example.com/p?token=abc&page=2#access_token=q&x=1 failed",
            f"GET https://example.com/p?token={REDACTED}&page=2#access_token={REDACTED}&x=1 failed",
        ),
    ],
)
def test_value_rules_replace_secrets(text: str, expected: str) -> None:
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "nothing to see here",
        "token_count=5 auth_types=basic,oauth",
        "Basic authentication failed for the bearer of bad news",
        "ts=1700000000000 trace=4bf92f3577b34da6a3ce929d0e0e4736",
        "card ending 4111111111111112",  # fails the Luhn check
        "1234567890123456",  # no known issuer
        "https://example.com/search?q=shoes&page=2",
        "https://example.com/search?q=red%20shoes&page=2",
        "password reset requested",
    ],
)
def test_value_rules_leave_innocent_text(text: str) -> None:
    assert scrub_text(text) is text


def test_a_sensitive_key_before_a_colon_is_enough_even_in_prose() -> None:
    """The documented price of catching ``token: abc``: prose shaped the same way loses
    one word."""
    assert scrub_text("session: expired after 30s") == f"session: {REDACTED} after 30s"


def test_card_numbers_need_issuer_length_and_luhn() -> None:
    for number in ("4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"):
        assert is_card_number(number)
    assert not is_card_number("4111111111111112")
    assert not is_card_number("1700000000000000000")  # a nanosecond timestamp
    assert not is_card_number("41111111111")


def test_urls_lose_userinfo_and_sensitive_parameters() -> None:
    assert scrub_url("https://u:p@h/x") == "https://h/x"
    assert scrub_url("https://h/x?Signature=a&X-Amz-Signature=b&sig=c&code=d&state=e") == (
        f"https://h/x?Signature={REDACTED}&X-Amz-Signature={REDACTED}&sig={REDACTED}"
        f"&code={REDACTED}&state=e"
    )
    assert scrub_url("/relative?api%5Fkey=v&q=1") == f"/relative?api%5Fkey={REDACTED}&q=1"
    assert scrub_url("https://h/plain") == "https://h/plain"
    assert scrub_query("token=a&token_count=3&key=z") == (
        f"token={REDACTED}&token_count=3&key={REDACTED}"
    )


# -- the OTLP walk -----------------------------------------------------------------------
def _kv(target: Any, key: str, value: Any) -> None:
    set_any_value(target.add(key=key).value, value)


def _trace_request() -> Any:
    request = ExportTraceServiceRequest()
    block = request.resource_spans.add()
    _kv(block.resource.attributes, "service.name", "svc-password=kept")
    _kv(block.resource.attributes, "db.password", "hunter2")
    scoped = block.scope_spans.add()
    span = scoped.spans.add(name="op")
    _kv(span.attributes, "password", "hunter2")
    _kv(span.attributes, "token_count", 12)
    _kv(span.attributes, "auth_types", ["basic", "oauth"])
    _kv(span.attributes, "auth.enabled", True)
    _kv(span.attributes, "password_set", True)  # booleans cannot carry a secret
    _kv(span.attributes, "pin.code", 1234)
    _kv(span.attributes, "order.card", 4111111111111111)
    _kv(span.attributes, "url.full", "https://u:p@h/x?token=t&q=1")
    _kv(span.attributes, "http.target", "/login?password=p")
    _kv(span.attributes, "url.query", "sig=s&page=1")
    _kv(span.attributes, "http.request.header.cookie", ["a=1", "b=2"])
    _kv(span.attributes, "user", {"name": "ann", "api_key": "k", "deep": {"secret": "s"}})
    event = span.events.add(name="exception")
    _kv(event.attributes, "exception.message", f"login failed password=p1 {KEY_SECRET}")
    _kv(event.attributes, "exception.stacktrace", 'File "x.py"\n  token = "tok-abcdef-123"')
    link = span.links.add()
    _kv(link.attributes, "authorization", "Bearer zzz")
    span.status.message = f"ValueError: bad token {JWT}"
    return request


def test_traces_are_scrubbed_in_place() -> None:
    request = _trace_request()
    Scrubber()("traces", request)
    block = request.resource_spans[0]
    assert attrs(block.resource.attributes) == {
        "service.name": "svc-password=kept",  # identity keys are never touched
        "db.password": REDACTED,
    }
    span = block.scope_spans[0].spans[0]
    assert attrs(span.attributes) == {
        "password": REDACTED,
        "token_count": 12,
        "auth_types": ["basic", "oauth"],
        "auth.enabled": True,
        "password_set": True,
        "pin.code": 1234,
        "order.card": REDACTED,
        "url.full": f"https://h/x?token={REDACTED}&q=1",
        "http.target": f"/login?password={REDACTED}",
        "url.query": f"sig={REDACTED}&page=1",
        "http.request.header.cookie": [REDACTED, REDACTED],  # list shape kept
        "user": {"name": "ann", "api_key": REDACTED, "deep": {"secret": REDACTED}},
    }
    event = attrs(span.events[0].attributes)
    assert event["exception.message"] == f"login failed password={REDACTED} {REDACTED}"
    assert event["exception.stacktrace"] == f'File "x.py"\n  token = "{REDACTED}"'
    assert attrs(span.links[0].attributes) == {"authorization": REDACTED}
    assert span.status.message == f"ValueError: bad token {REDACTED}"


def test_logs_are_scrubbed_in_place() -> None:
    request = ExportLogsServiceRequest()
    scoped = request.resource_logs.add().scope_logs.add()
    text = scoped.log_records.add()
    text.body.string_value = f"calling with Authorization: Bearer {KEY_SECRET}"
    _kv(text.attributes, "session.id", "abc")
    _kv(text.attributes, "feature_flag.context", {"user.password": "x", "plan": "pro"})
    structured = scoped.log_records.add()
    set_any_value(structured.body, {"msg": "hi", "token": "t", "items": ["password=1"]})
    listed = scoped.log_records.add()
    set_any_value(listed.body, ["ok", f"card {CARD}"])
    empty = scoped.log_records.add()
    Scrubber()("logs", request)
    records = request.resource_logs[0].scope_logs[0].log_records
    assert records[0].body.string_value == f"calling with Authorization: {REDACTED}"
    assert attrs(records[0].attributes) == {
        "session.id": REDACTED,
        "feature_flag.context": {"user.password": REDACTED, "plan": "pro"},
    }
    assert to_python(records[1].body) == {
        "msg": "hi",
        "token": REDACTED,
        "items": [f"password={REDACTED}"],
    }
    assert to_python(records[2].body) == ["ok", f"card {REDACTED}"]
    assert not records[3].HasField("body") and empty is not None


def test_metrics_points_and_exemplars_are_scrubbed_in_place() -> None:
    request = ExportMetricsServiceRequest()
    scoped = request.resource_metrics.add().scope_metrics.add()
    kinds = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
    for kind in kinds:
        metric = scoped.metrics.add(name=kind)
        point = getattr(metric, kind).data_points.add()
        _kv(point.attributes, "api_key", "k")
        _kv(point.attributes, "route", "/a?token=x")
        if kind != "summary":
            _kv(point.exemplars.add().filtered_attributes, "session", "s")
    scoped.metrics.add(name="no-data")
    Scrubber()("metrics", request)
    for metric in scoped.metrics[: len(kinds)]:
        point = getattr(metric, metric.name).data_points[0]
        assert attrs(point.attributes) == {"api_key": REDACTED, "route": f"/a?token={REDACTED}"}
        if metric.name != "summary":
            assert attrs(point.exemplars[0].filtered_attributes) == {"session": REDACTED}


def test_safe_keys_are_never_scrubbed() -> None:
    request = _trace_request()
    Scrubber(safe_keys=["Password", "url.full"])("traces", request)
    span = attrs(request.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert span["password"] == "hunter2"
    assert span["url.full"] == "https://u:p@h/x?token=t&q=1"
    assert span["http.target"] == f"/login?password={REDACTED}"


def test_callback_runs_after_the_rules_and_may_replace_or_drop() -> None:
    seen: dict[str, Any] = {}

    def callback(key: str, value: Any) -> Any:
        seen[key] = value
        if key == "user.email":
            return "<email>"
        if key == "drop.me":
            return None
        if key == "log.body":
            return value.replace("alice", "<name>")
        return value

    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    for key, value in (("user.email", "a@b.c"), ("drop.me", 1), ("password", "p"), ("n", 2)):
        _kv(span.attributes, key, value)
    scrub = Scrubber(callback=callback)
    scrub("traces", traces)
    assert attrs(span.attributes) == {"user.email": "<email>", "password": REDACTED, "n": 2}
    assert seen["password"] == REDACTED  # the callback sees the built-in result
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "hello alice"
    scrub("logs", logs)
    assert record.body.string_value == "hello <name>"


def test_callback_can_return_any_attribute_shape() -> None:
    values = {"a": [1, 2], "b": {"x": 1.5}, "c": b"raw", "d": object(), "e": 2**70}
    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    for key in values:
        _kv(span.attributes, key, "orig")
    Scrubber(callback=lambda key, _: values[key])("traces", traces)
    out = attrs(span.attributes)
    assert out["a"] == [1, 2] and out["b"] == {"x": 1.5} and out["c"] == b"raw"
    assert out["d"].startswith("<object object") and out["e"] == str(2**70)


def test_failing_callback_keeps_the_scrubbed_value_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reset_throttle()

    def callback(key: str, value: Any) -> Any:
        raise RuntimeError(f"boom {value}")

    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    _kv(span.attributes, "password", "hunter2")
    _kv(span.attributes, "plain", "v")
    with caplog.at_level(logging.WARNING, logger="telemetryflow"):
        Scrubber(callback=callback)("traces", traces)
    assert attrs(span.attributes) == {"password": REDACTED, "plain": "v"}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "scrub callback failed" in warnings[0]
    assert "hunter2" not in warnings[0] and "boom" not in warnings[0]


def test_a_rule_failure_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr("telemetryflow._scrubbing.scrubber.scrub_text", broken)
    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    _kv(span.attributes, "note", "could be anything")
    span.status.message = "could be anything"
    Scrubber()("traces", traces)
    assert attrs(span.attributes) == {"note": REDACTED}
    assert span.status.message == REDACTED


def test_deep_nesting_is_bounded() -> None:
    value = AnyValue()
    cursor = value
    for _ in range(40):
        cursor = cursor.kvlist_value.values.add(key="k").value
    cursor.string_value = "leaf"
    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    span.attributes.add(key="nested").value.CopyFrom(value)
    Scrubber()("traces", traces)
    assert REDACTED in str(span.attributes[0].value)
    assert "leaf" not in str(span.attributes[0].value)


def test_decision_caches_stay_bounded() -> None:
    scrub = Scrubber()
    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="op")
    for i in range(10_000):
        _kv(span.attributes, f"k{i}", f"value {i}")
    scrub("traces", traces)
    assert len(scrub._kinds) <= 4096 and len(scrub._clean) <= 4096


def test_configured_secret_is_removed_whatever_its_shape() -> None:
    scrub = Scrubber(secrets=["opaque-secret-value"])
    assert scrub.text("x opaque-secret-value y") == f"x {REDACTED} y"


def test_make_scrubber_follows_the_configuration() -> None:
    credentials = Credentials(KEY_ID, KEY_SECRET)
    config = TelemetryConfig(credentials=credentials, endpoint="127.0.0.1:4317", service_name="s")
    assert isinstance(make_scrubber(config), Scrubber)
    assert make_scrubber(config.with_changes(scrub_enabled=False)) is None


def test_unknown_signal_is_ignored() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.attributes.add(key="password").value.string_value = "hunter2"
    Scrubber()("profiles", request)  # not a signal it knows: left exactly as it was
    assert record.attributes[0].value.string_value == "hunter2"


def test_a_full_batch_scrubs_quickly() -> None:
    request = ExportTraceServiceRequest()
    scoped = request.resource_spans.add().scope_spans.add()
    for i in range(512):
        span = scoped.spans.add(name="GET /users/{id}")
        for key, value in (
            ("http.request.method", "GET"),
            ("url.full", f"https://api.example.com/users/{i}?page=2"),
            ("user.id", f"user-{i}"),
            ("db.statement", "SELECT * FROM users WHERE id = $1"),
            ("http.response.status_code", 200),
        ):
            _kv(span.attributes, key, value)
    started = time.perf_counter()
    Scrubber()("traces", request)
    assert time.perf_counter() - started < 1.0  # about 10 ms on a laptop


# -- end to end --------------------------------------------------------------------------
SEEDED = [
    "hunter2-span",
    "hunter2-event",
    "tok-link-1234567",
    "hunter2-log",
    "pw-metric-987",
    "resource-db-pass",
    KEY_SECRET,
    JWT,
    "4111111111111111",
    "urltoken-abc",
    "userinfo-pass",
    "exc-pass-555",
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_seeded_secrets_never_reach_the_receiver(receiver: OTLPReceiver, protocol: str) -> None:
    client = builder_for(receiver, protocol).with_custom_attributes(
        {"db.password": "resource-db-pass", "team": "payments"}
    )
    with client.build() as c:
        span_id = c.start_span(
            "checkout",
            SpanKind.SERVER,
            {
                "password": "hunter2-span",
                "url.full": "https://bob:userinfo-pass@shop.example/pay?token=urltoken-abc&x=1",
                "auth_types": "basic,oauth",
                "token_count": 42,
                "card": 4111111111111111,
            },
        )
        c.add_span_event(span_id, "login", {"api_key": "hunter2-event", "step": 2})
        c.end_span(span_id, error=ValueError("login failed: password=exc-pass-555"))
        tracer = c.tracer
        assert tracer is not None
        parent = tracer.start_span("parent")
        from opentelemetry.trace import Link

        linked = tracer.start_span(
            "child", links=[Link(parent.get_span_context(), {"session.id": "tok-link-1234567"})]
        )
        linked.end()
        parent.end()
        c.log(
            f"auth with {KEY_ID}:{KEY_SECRET} bearer {JWT}",
            SeverityLevel.ERROR,
            {"authorization": "Bearer hunter2-log", "auth_types": "basic"},
        )
        c.increment_counter("logins", 1, {"db.password": "pw-metric-987", "auth_types": "oauth"})
        c.flush(5)
    assert receiver.wait_for_spans(3) and receiver.wait_for_logs(1)
    assert receiver.wait_for_metric("logins") is not None
    for request in receiver.requests:
        wire = request.message.SerializeToString()
        for secret in SEEDED:
            assert secret.encode() not in wire, (request.signal, secret)
    checkout = next(s for s in receiver.spans() if s.name == "checkout")
    assert checkout.attributes["auth_types"] == "basic,oauth"
    assert checkout.attributes["token_count"] == 42
    assert checkout.attributes["password"] == REDACTED
    assert checkout.attributes["url.full"] == f"https://shop.example/pay?token={REDACTED}&x=1"
    events = {e.name: attrs(e.attributes) for e in checkout.span.events}
    assert events["login"] == {"api_key": REDACTED, "step": 2}
    assert events["exception"]["exception.message"] == f"login failed: password={REDACTED}"
    log = receiver.logs()[0]
    assert log.attributes == {"authorization": REDACTED, "auth_types": "basic"}
    assert log.body == f"auth with tfk_…0001:{REDACTED} bearer {REDACTED}"
    resource = receiver.resource_attributes("traces")
    assert resource["db.password"] == REDACTED and resource["team"] == "payments"
    assert resource["service.name"] == "test-service"
    point = receiver.find_metric("logins").sum.data_points[0]
    assert attrs(point.attributes) == {"db.password": REDACTED, "auth_types": "oauth"}


def test_scrubbing_can_be_turned_off_or_relaxed(receiver: OTLPReceiver) -> None:
    def mask_email(key: str, value: Any) -> Any:
        return "<email>" if key == "user.email" else value

    relaxed = builder_for(receiver).with_scrubbing(safe_keys=["session.id"], callback=mask_email)
    with relaxed.build() as client:
        client.log_info("hi", {"session.id": "s-1", "password": "p", "user.email": "a@b.c"})
    assert receiver.wait_for_logs(1)
    assert receiver.logs()[0].attributes == {
        "session.id": "s-1",
        "password": REDACTED,
        "user.email": "<email>",
    }
    receiver.clear()
    with builder_for(receiver).with_scrubbing(enabled=False).build() as client:
        client.log_info("hi", {"password": "p"})
    assert receiver.wait_for_logs(1)
    assert receiver.logs()[0].attributes == {"password": "p"}
