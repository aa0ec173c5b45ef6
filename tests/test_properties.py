"""Property-based tests of every recording call, the builder, the environment and the
scrubber.

The contract: any input either records, is dropped with a counted warning, or (for
configuration only) raises the documented ``ConfigError``/``CredentialsError`` with a
message that names the field; never another exception, never a hang (each example has
a deadline). Inputs that once broke the contract are pinned at the end of this module
as regression tests.
"""

from __future__ import annotations

import datetime
import enum
import math
import re
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetryflow import (
    ConfigError,
    CredentialsError,
    Protocol,
    SeverityLevel,
    SpanKind,
    TelemetryConfig,
    TelemetryFlowBuilder,
)
from telemetryflow._configuration.settings import SETTINGS
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow._scrubbing.rules import scrub_text
from telemetryflow._scrubbing.scrubber import REDACTED, Scrubber, set_any_value
from telemetryflow.testing import TelemetryCapture, capture

PROPERTY = settings(
    max_examples=200,
    deadline=datetime.timedelta(seconds=5),  # a hang fails the example, not the run
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- strategies ----------------------------------------------------------------------------
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
"""Any text but lone surrogates (see test_lone_surrogate_* below)."""
INT64 = st.integers(-(2**63), 2**63 - 1)
"""Integers OTLP can carry (see test_integer_beyond_int64_* below)."""


class Color(enum.Enum):
    RED = 1


ODD = st.sampled_from(
    [
        object(),
        Decimal("1.5"),
        complex(1, 2),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        datetime.timedelta(seconds=3),
        Color.RED,
        SpanKind.SERVER,
        PurePosixPath("/tmp/x"),
        frozenset({1}),
        {1, 2},
        b"\x00\xff",
        bytearray(b"ab"),
        ValueError("inner"),
        type,
        len,
        Ellipsis,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.binary(max_size=16),
)
VALUES = st.recursive(
    st.one_of(SCALARS, ODD),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(TEXT, inner, max_size=3),
    ),
    max_leaves=8,
)
KEYS = st.one_of(TEXT.filter(bool), INT64, st.none(), st.booleans(), st.tuples(TEXT))
"""Attribute keys; never empty (see test_empty_attribute_key_is_handled_quietly below)."""
ATTRIBUTES = st.one_of(
    st.none(),
    st.dictionaries(KEYS, VALUES, max_size=6),
    VALUES.filter(lambda value: not (isinstance(value, dict) and "" in value)),
)
INSTRUMENT_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-/]{0,40}", fullmatch=True)
"""Names OpenTelemetry accepts (see test_metric_name_opentelemetry_rejects_* below)."""
METRIC_NAMES = st.one_of(INSTRUMENT_NAMES, st.just(""), st.none(), INT64, st.binary(max_size=4))
METRIC_VALUES = st.one_of(
    st.integers(-(2**40), 2**40),  # sums of these stay far inside int64
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    TEXT,
    st.sampled_from([Decimal("2"), complex(1, 1), "3"]),
)
SEVERITIES = st.one_of(st.sampled_from(list(SeverityLevel)), VALUES)
KINDS = st.one_of(st.sampled_from(list(SpanKind)), VALUES)


@pytest.fixture(scope="module")
def cap() -> Iterator[TelemetryCapture]:
    """One in-memory client for the whole module: the real pipeline minus the wire."""
    with capture() as captured:
        yield captured


def _signal(cap: TelemetryCapture, signal: str) -> dict[str, Any]:
    return dict(cap.client.health()["signals"][signal])


def _invalid(cap: TelemetryCapture, signal: str) -> int:
    return int(_signal(cap, signal)["dropped_by_reason"].get("invalid", 0))


def _valid_metric(kind: str, name: Any, value: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return not (kind == "increment_counter" and value < 0)


# -- recording calls -------------------------------------------------------------------------
@PROPERTY
@given(
    kind=st.sampled_from(
        ["increment_counter", "record_gauge", "record_histogram", "record_metric"]
    ),
    name=METRIC_NAMES,
    value=METRIC_VALUES,
    unit=st.one_of(st.just(""), st.sampled_from(["s", "ms", "By", "{request}"]), st.none()),
    attributes=ATTRIBUTES,
)
def test_metric_calls_record_or_count_a_drop(
    cap: TelemetryCapture, kind: str, name: Any, value: Any, unit: Any, attributes: Any
) -> None:
    before = _invalid(cap, "metrics")
    method = getattr(cap.client, kind)
    if kind == "increment_counter" or kind == "record_gauge":
        method(name, value, attributes)
    else:
        method(name, value, unit, attributes)
    dropped = _invalid(cap, "metrics") - before
    assert dropped == (0 if _valid_metric(kind, name, value) else 1)


def test_metric_export_survives_the_generated_inputs(cap: TelemetryCapture) -> None:
    """Runs after the property above: whatever was recorded, metrics still export."""
    cap.client.increment_counter("sentinel.after.fuzz", 1)
    assert cap.find_metric("sentinel.after.fuzz") is not None


@PROPERTY
@given(message=VALUES, severity=SEVERITIES, attributes=ATTRIBUTES)
def test_log_calls_always_record_and_export(
    cap: TelemetryCapture, message: Any, severity: Any, attributes: Any
) -> None:
    before = _signal(cap, "logs")
    cap.client.log(message, severity, attributes)
    cap.client.log_warn(message, attributes)
    cap.flush()
    after = _signal(cap, "logs")
    assert after["recorded"] - before["recorded"] == 2
    assert after["exported"] - before["exported"] == 2
    assert after["dropped"] == before["dropped"]


@PROPERTY
@given(
    name=VALUES,
    kind=KINDS,
    attributes=ATTRIBUTES,
    event_name=VALUES,
    event_attributes=ATTRIBUTES,
    error=st.one_of(st.none(), st.builds(RuntimeError, TEXT), VALUES),
    bogus_id=VALUES,
)
def test_span_calls_never_raise_and_spans_export(
    cap: TelemetryCapture,
    name: Any,
    kind: Any,
    attributes: Any,
    event_name: Any,
    event_attributes: Any,
    error: Any,
    bogus_id: Any,
) -> None:
    client = cap.client
    before = _signal(cap, "traces")
    span_id = client.start_span(name, kind, attributes)
    assert re.fullmatch(r"[0-9a-f]{16}", span_id)
    client.add_span_event(span_id, event_name, event_attributes)
    if isinstance(bogus_id, str) and re.fullmatch(r"[0-9a-f]{16}", bogus_id):
        bogus_id = "not-an-id"  # never hit a live span by chance
    client.add_span_event(bogus_id, event_name, event_attributes)
    client.end_span(bogus_id)
    client.end_span(span_id, error)
    client.end_span(span_id)  # twice: a warning, not an error
    cap.flush()
    after = _signal(cap, "traces")
    assert after["recorded"] - before["recorded"] == 1
    assert after["exported"] - before["exported"] == 1


@PROPERTY
@given(name=VALUES, kind=KINDS, attributes=ATTRIBUTES, message=TEXT)
def test_span_block_propagates_the_very_same_exception(
    cap: TelemetryCapture, name: Any, kind: Any, attributes: Any, message: str
) -> None:
    error = LookupError(message)
    with pytest.raises(LookupError) as info:
        _raise_inside(cap.client.span(name, kind, attributes), error)
    assert info.value is error


def _raise_inside(scope: Any, error: BaseException) -> None:
    with scope as span_id:
        assert len(span_id) == 16
        raise error


@PROPERTY
@given(
    name=VALUES,
    properties=ATTRIBUTES,
    distinct_id=VALUES,
    message=VALUES,
    code=VALUES,
    stack=st.one_of(st.none(), TEXT),
    tags=ATTRIBUTES,
    flag_key=VALUES,
    default=VALUES,
    context=st.dictionaries(
        st.sampled_from(["targeting_key", "user_id", "distinct_id", "plan"]), VALUES, max_size=3
    ),
)
def test_convenience_calls_never_raise(
    cap: TelemetryCapture,
    name: Any,
    properties: Any,
    distinct_id: Any,
    message: Any,
    code: Any,
    stack: Any,
    tags: Any,
    flag_key: Any,
    default: Any,
    context: dict[str, Any],
) -> None:
    client = cap.client
    assert isinstance(client.track_event(name, properties, distinct_id), bool)
    assert isinstance(client.capture_error(message, code, stack, tags), str)
    assert isinstance(client.capture_exception(ValueError(message), tags), str)
    client.event(name, "failed", payload=message)
    client.trace(name if isinstance(name, str) else "k", message)
    with client.track("tracked-block"):
        pass
    client.evaluate_flag(flag_key, default, **context)
    assert isinstance(client.is_enabled(flag_key, False, **context), bool)
    client.get_variant(flag_key, None, **context)


# -- configuration ---------------------------------------------------------------------------
ARGS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.floats(),
    TEXT,
    st.timedeltas(min_value=datetime.timedelta(days=-2), max_value=datetime.timedelta(days=2)),
    st.sampled_from(list(Protocol)),
)
MAPPINGS = st.dictionaries(TEXT, st.one_of(TEXT, st.none(), st.integers()), max_size=3)
METHODS: dict[str, Any] = {
    "with_api_key": st.tuples(ARGS, ARGS),
    "with_endpoint": st.tuples(ARGS),
    "with_service": st.tuples(ARGS, ARGS),
    "with_service_namespace": st.tuples(ARGS),
    "with_environment": st.tuples(ARGS),
    "with_collector_id": st.tuples(ARGS),
    "with_custom_attribute": st.tuples(ARGS, ARGS),
    "with_custom_attributes": st.tuples(st.one_of(MAPPINGS, ARGS, st.lists(TEXT, max_size=2))),
    "with_headers": st.tuples(st.one_of(MAPPINGS, ARGS, st.lists(TEXT, max_size=2))),
    "with_protocol": st.tuples(ARGS),
    "with_insecure": st.tuples(ARGS),
    "with_tls": st.tuples(ARGS, ARGS, ARGS),
    "with_plaintext_credentials_allowed": st.tuples(ARGS),
    "with_timeout": st.tuples(ARGS),
    "with_compression": st.tuples(ARGS),
    "with_retry": st.tuples(ARGS, ARGS, ARGS),
    "with_batch_settings": st.tuples(ARGS, ARGS),
    "with_queue_size": st.tuples(ARGS),
    "with_queue_bytes": st.tuples(ARGS),
    "with_max_request_size": st.tuples(ARGS),
    "with_retry_max_backoff": st.tuples(ARGS),
    "with_rate_limit": st.tuples(ARGS),
    "with_signals": st.tuples(ARGS, ARGS, ARGS),
    "with_exemplars": st.tuples(ARGS),
    "with_cardinality_limit": st.tuples(ARGS),
    "with_scrubbing": st.tuples(ARGS, st.one_of(ARGS, st.lists(TEXT, max_size=3))),
    "with_global_providers": st.tuples(ARGS),
}
CALLS = st.lists(
    st.sampled_from(sorted(METHODS)).flatmap(lambda m: st.tuples(st.just(m), METHODS[m])),
    max_size=6,
)


def _assert_documented(error: ConfigError | CredentialsError) -> None:
    assert str(error).strip()
    assert error.field, "the error names the field it is about"


@settings(PROPERTY, max_examples=500)
@given(calls=CALLS)
def test_builder_either_builds_or_raises_a_documented_error(calls: list[tuple[str, Any]]) -> None:
    builder = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_prop0001", "tfs_prop-secret")
        .with_service("props")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_global_providers(False)
    )
    try:
        for method, args in calls:
            getattr(builder, method)(*args)
        config = builder.build_config()
    except (ConfigError, CredentialsError) as error:
        _assert_documented(error)
        return
    assert isinstance(config, TelemetryConfig)
    assert "tfs_prop-secret" not in repr(config) + config.describe()


ENV_NAMES = sorted({variable for setting in SETTINGS for variable in setting.env})
ENV_VALUES = st.one_of(
    TEXT,
    st.sampled_from(
        ["true", "0", "grpc", "http/protobuf", "gzip", "1000", "-1", "nan", "inf", "1e400",
         "k=v,x=%0A", "k=%ZZ", "=", "127.0.0.1:4317", "https://h:1/p", "tfk_abcd", "tfs_abcd",
         " "]
    ),
)  # fmt: skip


@settings(PROPERTY, max_examples=500)
@given(environ=st.dictionaries(st.sampled_from(ENV_NAMES), ENV_VALUES, max_size=8))
def test_environment_either_configures_or_raises_a_documented_error(
    environ: dict[str, str],
) -> None:
    builder = TelemetryFlowBuilder().with_environ(environ).with_auto_configuration()
    try:
        config = builder.build_config()
    except (ConfigError, CredentialsError) as error:
        _assert_documented(error)
    else:
        assert config.service_name and config.endpoint


# -- the scrubber ----------------------------------------------------------------------------
@PROPERTY
@given(text=st.text(max_size=200))
def test_scrub_text_is_total_and_idempotent(text: str) -> None:
    once = scrub_text(text)
    assert isinstance(once, str)
    assert scrub_text(once) == once


@PROPERTY
@given(
    before=st.text(max_size=30),
    secret=st.from_regex(r"[A-Za-z0-9]{6,30}", fullmatch=True),
    after=st.text(max_size=30),
    template=st.sampled_from(
        [
            "{} tfs_{} {}",
            "{} password={} {}",
            '{} {{"token": "{}"}} {}',
            "{} Bearer {}0a {}",
            "{} https://x/y?api_key={}&z=1 {}",
            "{}\nAuthorization: Basic {}9=\n{}",
        ]
    ),
)
def test_scrub_text_removes_seeded_secrets(
    before: str, secret: str, after: str, template: str
) -> None:
    text = template.format(before, secret, after)
    assert secret not in scrub_text(text).replace(before, "").replace(after, "")


@PROPERTY
@given(attributes=st.dictionaries(TEXT, VALUES, max_size=6), body=VALUES)
def test_scrubber_walks_any_request_without_raising(attributes: dict[str, Any], body: Any) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    for key, value in attributes.items():
        set_any_value(record.attributes.add(key=key).value, value)
    set_any_value(record.body, body)
    Scrubber(callback=lambda key, value: value)("logs", request)
    Scrubber()("logs", request)
    request.SerializeToString()
    if "password" in attributes:
        password = record.attributes[list(attributes).index("password")].value
        assert password.WhichOneof("value") in (None, "bool_value") or (
            password.string_value in ("", REDACTED)
        )


# -- inputs that break the contract today ---------------------------------------------------
@pytest.fixture
def fresh() -> Iterator[TelemetryCapture]:
    reset_throttle()
    with capture() as captured:
        yield captured


def test_an_invalid_metric_value_is_counted_and_warned(
    fresh: TelemetryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    fresh.client.increment_counter("orders", -1)
    assert _invalid(fresh, "metrics") == 1
    assert any("dropped a metric value" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["http requests", "1st", "x" * 300, "caf\u00e9"])
def test_metric_name_opentelemetry_rejects_is_a_counted_drop(
    fresh: TelemetryCapture, name: str
) -> None:
    fresh.client.increment_counter(name, 1)
    assert _invalid(fresh, "metrics") == 1


def test_unhashable_metric_name_is_a_counted_drop(fresh: TelemetryCapture) -> None:
    fresh.client.record_gauge(["not", "a", "name"], 1.0)  # type: ignore[arg-type]
    assert _invalid(fresh, "metrics") == 1


def test_integer_beyond_int64_does_not_poison_metric_export(fresh: TelemetryCapture) -> None:
    fresh.client.increment_counter("huge", 2**64)
    fresh.client.increment_counter("innocent", 1)
    assert fresh.find_metric("innocent") is not None


def test_counter_sum_overflowing_int64_does_not_poison_metric_export(
    fresh: TelemetryCapture,
) -> None:
    fresh.client.increment_counter("sum", 2**63 - 1)
    fresh.client.increment_counter("sum", 2**63 - 1)
    fresh.client.increment_counter("innocent", 1)
    assert fresh.find_metric("innocent") is not None


def test_integer_beyond_int64_in_attributes_is_kept(fresh: TelemetryCapture) -> None:
    fresh.client.log_info("big", {"n": 2**80, "m": 1})
    (entry,) = fresh.logs()
    assert entry.attributes.get("n") in (2**80, str(2**80), float(2**80))


@pytest.mark.parametrize("where", ["log body", "span name"])
def test_lone_surrogate_does_not_drop_the_batch(fresh: TelemetryCapture, where: str) -> None:
    bad = "bad \udc80 text"
    client = fresh.client
    client.log_info("innocent")
    with client.span("innocent"):
        pass
    if where == "log body":
        client.log_info(bad)
    else:
        with client.span(bad):
            pass
    assert "innocent" in [entry.body for entry in fresh.logs()]
    assert "innocent" in fresh.span_names()


def test_lone_surrogate_in_an_attribute_is_kept(fresh: TelemetryCapture) -> None:
    fresh.client.log_info("attr", {"path": "bad \udc80 text"})
    (entry,) = fresh.logs()
    assert "path" in entry.attributes


@pytest.mark.parametrize("value", ["inf", "1e400", "Infinity"])
def test_infinite_timeout_in_environment(value: str) -> None:
    environ = {"OTEL_EXPORTER_OTLP_TIMEOUT": value}
    builder = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_prop0001", "tfs_prop-secret")
        .with_service("props")
        .with_environ(environ)
        .with_auto_configuration()
    )
    assert builder.build_config().timeout == datetime.timedelta(seconds=10)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("with_custom_attributes", (None,)),
        ("with_custom_attributes", (["a"],)),
        ("with_headers", (None,)),
        ("with_headers", (["ab"],)),
        ("with_scrubbing", (True, True)),
    ],
)
def test_builder_mapping_arguments_of_the_wrong_type(method: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigError):
        getattr(TelemetryFlowBuilder(), method)(*args)


def test_empty_attribute_key_is_handled_quietly(fresh: TelemetryCapture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.client.log_info("m", {"": 1, "k": 2})
    (entry,) = fresh.logs()
    assert entry.attributes.get("k") == 2


class Hostile:
    """An object whose every conversion fails: str, repr, hash, eq, bool, format."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    __repr__ = __str__

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")


H = Hostile()
HOSTILE_CALLS = {
    "increment_counter(name)": lambda c: c.increment_counter(H, 1),
    "increment_counter(name, value)": lambda c: c.increment_counter(H, "x"),
    "log(message)": lambda c: c.log(H),
    "log(severity)": lambda c: c.log("x", H),
    "start_span(name)": lambda c: c.start_span(H),
    "start_span(kind)": lambda c: c.start_span("x", H),
    "end_span(span_id)": lambda c: c.end_span(H),
    "add_span_event(span_id)": lambda c: c.add_span_event(H, "e"),
    "span(name)": lambda c: c.span(H).__enter__(),
    "evaluate_flag(key)": lambda c: c.evaluate_flag(H),
    "trace(key)": lambda c: c.trace(H, 1),
    "record_histogram(unit)": lambda c: c.record_histogram("h", 1.0, H),
    "log(attributes value)": lambda c: c.log("x", attributes={"k": H}),
    "event(name)": lambda c: c.event(H),
}
# A mapping with a hostile *key* cannot even be built by the caller ({H: 1} hashes H),
# so there is no call of ours to guard for that case.


@pytest.mark.parametrize("call", list(HOSTILE_CALLS.values()), ids=list(HOSTILE_CALLS))
def test_hostile_objects_never_escape_a_recording_call(fresh: TelemetryCapture, call: Any) -> None:
    call(fresh.client)
    fresh.client.log_info("still recording")  # the client is unharmed
    assert "still recording" in [entry.body for entry in fresh.logs()]
