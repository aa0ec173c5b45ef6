"""``track``, ``trace`` and ``event``: asserted on the spans, metrics and logs exported."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace as otel_trace
from opentelemetry.attributes import BoundedAttributes

import telemetryflow
from _support import builder_for
from telemetryflow import set_default_client
from telemetryflow._extras import conveniences as _conveniences
from telemetryflow._extras import default as _default
from telemetryflow._extras import track as _track
from telemetryflow._extras.track import DURATION_METRIC, take_metadata
from telemetryflow.testing import OTLPReceiver, TelemetryCapture, attrs, capture

STATUS_ERROR = 2  # opentelemetry.proto Status.STATUS_CODE_ERROR


@pytest.fixture
def cap() -> Iterator[TelemetryCapture]:
    take_metadata()  # nothing pending from an earlier test
    with capture() as captured:
        yield captured
    take_metadata()


@pytest.fixture
def no_default_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """No default client, whatever other tests left running."""
    monkeypatch.setattr(_default, "_latest", None)
    monkeypatch.setattr(_default, "_explicit", None)


@pytest.fixture
def api() -> Any:
    """The module-level functions: ``telemetryflow`` once it exports them, else the
    module that defines them (the same objects)."""
    return telemetryflow if hasattr(telemetryflow, "track") else _conveniences


def durations(cap: TelemetryCapture) -> dict[tuple[tuple[str, Any], ...], int]:
    """Histogram point counts by sorted attribute items."""
    metric = cap.find_metric(DURATION_METRIC)
    assert metric is not None and metric.unit == "ms"
    return {
        tuple(sorted(attrs(p.attributes).items())): p.count for p in metric.histogram.data_points
    }


def spans_named(cap: TelemetryCapture, name: str) -> list[Any]:
    return [s for s in cap.spans() if s.name == name]


# -- decorator keeps the function's identity -------------------------------------------
def test_sync_decorator_keeps_identity_and_records_a_span_and_a_duration(
    cap: TelemetryCapture,
) -> None:
    """The wrapper is indistinguishable from the function, and each call is observed."""

    def add(x: int, y: int = 2, *, scale: float = 1.0) -> float:
        """Add two numbers."""
        return (x + y) * scale

    tracked = cap.client.track("add")(add)
    assert tracked.__name__ == "add"
    assert tracked.__doc__ == "Add two numbers."
    assert tracked.__qualname__ == add.__qualname__
    assert inspect.signature(tracked) == inspect.signature(add)
    assert tracked(1) == 3.0 and tracked(1, 3, scale=2) == 8.0

    spans = spans_named(cap, "add")
    assert len(spans) == 2
    assert all(s.attributes["track.status"] == "completed" for s in spans)
    assert all(s.span.status.code != STATUS_ERROR for s in spans)
    key = (("track.name", "add"), ("track.status", "completed"))
    assert durations(cap)[key] == 2


def test_bare_decorator_uses_the_qualified_name(cap: TelemetryCapture) -> None:
    @cap.client.track
    def nightly_sync() -> str:
        return "ok"

    assert nightly_sync() == "ok"
    assert cap.span_names() == [nightly_sync.__qualname__]


def test_async_function(cap: TelemetryCapture) -> None:
    @cap.client.track("fetch_prices")
    async def fetch_prices(symbol: str) -> dict[str, float]:
        """Fetch."""
        await asyncio.sleep(0)
        return {symbol: 1.5}

    assert inspect.iscoroutinefunction(fetch_prices)
    assert fetch_prices.__name__ == "fetch_prices" and fetch_prices.__doc__ == "Fetch."
    assert list(inspect.signature(fetch_prices).parameters) == ["symbol"]
    assert asyncio.run(fetch_prices("ACME")) == {"ACME": 1.5}
    (span,) = spans_named(cap, "fetch_prices")
    assert span.attributes["track.status"] == "completed"


def test_generator_values_return_value_send_and_early_close(cap: TelemetryCapture) -> None:
    @cap.client.track("numbers")
    def numbers(n: int) -> Generator[int, int | None, str]:
        """Count."""
        for i in range(n):
            received = yield i
            if received is not None:
                yield received * 10
        return "done"

    assert inspect.isgeneratorfunction(numbers)
    assert numbers.__doc__ == "Count." and list(inspect.signature(numbers).parameters) == ["n"]
    assert list(numbers(3)) == [0, 1, 2]

    def delegate() -> Generator[int, int | None, None]:
        result = yield from numbers(1)
        assert result == "done"

    assert list(delegate()) == [0]

    gen = numbers(5)
    assert next(gen) == 0
    assert gen.send(7) == 70  # send() reaches the wrapped generator
    gen.close()  # the consumer stopped early: not a failure

    spans = spans_named(cap, "numbers")
    assert len(spans) == 3
    assert [s.attributes["track.status"] for s in spans] == ["completed"] * 3


def test_generator_span_is_current_only_inside_the_generator(cap: TelemetryCapture) -> None:
    """The consumer's work between items is not attributed to the generator's span."""
    inside: list[int] = []

    @cap.client.track("rows")
    def rows() -> Iterator[int]:
        for i in range(2):
            inside.append(otel_trace.get_current_span().get_span_context().span_id)
            yield i

    outside: list[int] = []
    for _ in rows():
        outside.append(otel_trace.get_current_span().get_span_context().span_id)

    (span,) = spans_named(cap, "rows")
    span_id = int.from_bytes(span.span.span_id, "big")
    assert inside == [span_id, span_id]
    assert span_id not in outside


def test_async_generator(cap: TelemetryCapture) -> None:
    @cap.client.track("stream")
    async def stream(n: int) -> AsyncIterator[str]:
        """Stream."""
        for i in range(n):
            await asyncio.sleep(0)
            yield f"item-{i}"

    assert inspect.isasyncgenfunction(stream)
    assert stream.__name__ == "stream" and stream.__doc__ == "Stream."

    async def consume() -> list[str]:
        return [item async for item in stream(3)]

    assert asyncio.run(consume()) == ["item-0", "item-1", "item-2"]
    (span,) = spans_named(cap, "stream")
    assert span.attributes["track.status"] == "completed"


# -- failures ---------------------------------------------------------------------------
def test_failure_reraises_the_same_exception_and_records_type_and_message(
    cap: TelemetryCapture,
) -> None:
    error = ValueError("card declined")

    @cap.client.track("charge")
    def charge() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        charge()
    assert caught.value is error

    (span,) = spans_named(cap, "charge")
    assert span.attributes["track.status"] == "failed"
    assert span.attributes["error.type"] == "ValueError"
    assert span.span.status.code == STATUS_ERROR
    assert "card declined" in span.span.status.message
    (exception_event,) = [e for e in span.span.events if e.name == "exception"]
    event_attrs = attrs(exception_event.attributes)
    assert event_attrs["exception.type"] == "ValueError"
    assert event_attrs["exception.message"] == "card declined"
    key = (("error.type", "ValueError"), ("track.name", "charge"), ("track.status", "failed"))
    assert durations(cap)[key] == 1


def test_failures_in_async_generator_and_block_forms(cap: TelemetryCapture) -> None:
    error = KeyError("missing")

    @cap.client.track("async_fail")
    async def async_fail() -> None:
        raise error

    @cap.client.track("gen_fail")
    def gen_fail() -> Iterator[int]:
        yield 1
        raise error

    with pytest.raises(KeyError) as caught:
        asyncio.run(async_fail())
    assert caught.value is error
    with pytest.raises(KeyError) as caught:
        list(gen_fail())
    assert caught.value is error
    with pytest.raises(KeyError) as caught, cap.client.track("block_fail"):
        raise error
    assert caught.value is error

    by_name = {s.name: s for s in cap.spans()}
    for name in ("async_fail", "gen_fail", "block_fail"):
        assert by_name[name].attributes["track.status"] == "failed"
        assert by_name[name].attributes["error.type"] == "KeyError"
        assert by_name[name].span.status.code == STATUS_ERROR


# -- the context manager --------------------------------------------------------------
def test_context_manager_is_the_parent_of_spans_inside_it(cap: TelemetryCapture) -> None:
    with cap.client.track("batch_import"), cap.client.span("validate"):
        pass
    spans = {s.name: s.span for s in cap.spans()}
    assert spans["validate"].parent_span_id == spans["batch_import"].span_id
    assert spans["validate"].trace_id == spans["batch_import"].trace_id


def test_tracked_call_inside_a_span_is_its_child(cap: TelemetryCapture) -> None:
    @cap.client.track("step")
    def step() -> None:
        return None

    with cap.client.span("request"):
        step()
    spans = {s.name: s.span for s in cap.spans()}
    assert spans["step"].parent_span_id == spans["request"].span_id


# -- trace(): metadata for the next tracked call ---------------------------------------
def test_trace_metadata_goes_to_the_next_call_only_and_is_serialised(
    cap: TelemetryCapture,
) -> None:
    class Bucket:
        def __str__(self) -> str:
            return "s3://my-bucket"

    @cap.client.track("nightly_sync")
    def sync() -> None:
        return None

    cap.client.trace("records_processed", 500)
    cap.client.trace("source", Bucket())
    cap.client.trace("options", {"dry_run": False, "tables": ["a", "b"]})
    cap.client.trace("ids", [1, 2, 3])
    cap.client.trace("tags", {"b", "a"})
    sync()
    sync()
    first, second = spans_named(cap, "nightly_sync")
    assert first.attributes == {
        "records_processed": 500,
        "source": "s3://my-bucket",
        "options": '{"dry_run":false,"tables":["a","b"]}',
        "ids": [1, 2, 3],
        "tags": '["a","b"]',
        "track.status": "completed",
    }
    assert second.attributes == {"track.status": "completed"}


def test_trace_metadata_is_isolated_between_threads(cap: TelemetryCapture) -> None:
    @cap.client.track("job")
    def job() -> None:
        return None

    cap.client.trace("who", "main")  # pending in the main thread only
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        cap.client.trace("who", f"worker-{n}")
        barrier.wait()  # every thread has set its metadata before any call
        job()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job()
    seen = sorted(s.attributes["who"] for s in spans_named(cap, "job"))
    assert seen == ["main", "worker-0", "worker-1", "worker-2", "worker-3"]


def test_trace_metadata_is_isolated_between_concurrent_tasks(cap: TelemetryCapture) -> None:
    @cap.client.track("handle")
    async def handle() -> None:
        await asyncio.sleep(0)

    async def request(n: int) -> None:
        cap.client.trace("request", n)
        await asyncio.sleep(0)  # let every other task set its own metadata
        await asyncio.sleep(0)
        await handle()

    async def main() -> None:
        await asyncio.gather(*(request(n) for n in range(10)))

    asyncio.run(main())
    seen = sorted(s.attributes.get("request") for s in spans_named(cap, "handle"))
    assert seen == list(range(10))


def test_a_task_created_for_a_tracked_call_consumes_the_parents_metadata(
    cap: TelemetryCapture,
) -> None:
    @cap.client.track("background")
    async def background() -> None:
        return None

    async def main() -> None:
        cap.client.trace("batch", 7)
        await asyncio.create_task(background())
        await background()  # the metadata was used by the task: not seen twice

    asyncio.run(main())
    first, second = spans_named(cap, "background")
    assert first.attributes.get("batch") == 7
    assert "batch" not in second.attributes


# -- event() ----------------------------------------------------------------------------
def test_event_is_an_opentelemetry_event_with_its_metadata(cap: TelemetryCapture) -> None:
    cap.client.event("payment_received", amount=99.99, currency="USD")
    cap.client.event("webhook_failed", status="failed", endpoint="/stripe", name="stripe")
    with cap.client.span("deploy"):
        cap.client.event("deployment_complete")
    logs = {entry.log.event_name: entry for entry in cap.logs()}
    paid = logs["payment_received"]
    assert paid.attributes == {"amount": 99.99, "currency": "USD", "event.status": "completed"}
    assert paid.log.severity_text == "INFO"
    failed = logs["webhook_failed"]
    assert failed.attributes["event.status"] == "failed"
    assert failed.attributes["name"] == "stripe"  # "name" can be metadata too
    assert failed.log.severity_text == "ERROR"
    (deploy,) = spans_named(cap, "deploy")
    assert logs["deployment_complete"].log.span_id == deploy.span.span_id


# -- module level, default client --------------------------------------------------------
@pytest.mark.usefixtures("no_default_client")
def test_module_level_decorator_without_any_client_is_a_quiet_no_op(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Importing and decorating never fail because telemetry is not configured."""
    assert telemetryflow.get_default_client() is None

    @api.track("report")
    def report(x: int) -> int:
        return x * 2

    with caplog.at_level(logging.DEBUG, logger="telemetryflow"):
        api.trace("k", "v")
        assert report(21) == 42
        api.event("nothing_listens", size=1)
        with api.track("block"):
            pass
    assert caplog.records == []
    take_metadata()


@pytest.mark.usefixtures("no_default_client")
def test_module_level_track_finds_the_default_client_at_call_time(api: Any) -> None:
    @api.track("decorated_before_setup")
    def work() -> str:
        return "ok"

    assert work() == "ok"  # no client yet
    with capture() as cap:
        api.trace("stage", "late")
        assert work() == "ok"
        api.event("late_event", n=1)
        (span,) = spans_named(cap, "decorated_before_setup")
        assert span.attributes["stage"] == "late"
        assert [e.log.event_name for e in cap.logs()] == ["late_event"]
    assert work() == "ok"  # the client is gone again: back to a no-op


def test_explicit_default_client_wins(api: Any) -> None:
    with capture() as first, capture() as second:
        set_default_client(first.client)
        try:
            with api.track("explicit"):
                pass
        finally:
            set_default_client(None)
        assert first.span_names() == ["explicit"]
        assert second.span_names() == []


def test_uninitialized_client_runs_the_code_and_records_nothing() -> None:
    from telemetryflow import TelemetryFlowBuilder

    client = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_x", "tfs_y")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_service("svc")
        .build()
    )

    @client.track("early")
    def early() -> int:
        return 1

    assert early() == 1
    client.event("early_event")


@pytest.mark.skipif(not hasattr(telemetryflow, "track"), reason="needs the __init__ exports")
def test_top_level_exports() -> None:
    for name in ("event", "trace", "track"):
        assert getattr(telemetryflow, name) is getattr(_conveniences, name)
    for name in ("event", "trace", "track"):
        assert name in telemetryflow.__all__


# -- over a real wire -------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_everything_arrives_at_a_real_receiver(receiver: OTLPReceiver, protocol: str) -> None:
    client = builder_for(receiver, protocol).build()
    client.set_feature_flags({"fast_path": True})
    with client:

        @client.track("job")
        def job() -> bool:
            client.event("job_step", step=1)
            return client.is_enabled("fast_path", user_id="u1")

        client.trace("job.id", 7)
        assert job() is True
        client.capture_exception(ValueError("boom"))
        client.track_event("signup", {"plan": "pro"}, distinct_id="u1")
    assert receiver.wait_for_spans(1) and receiver.wait_for_logs(4)
    (span,) = receiver.spans()
    assert span.name == "job" and span.attributes["job.id"] == 7
    events = {entry.log.event_name for entry in receiver.logs()}
    assert events == {"job_step", "feature_flag.evaluation", "exception", "signup"}
    assert receiver.wait_for_metric(DURATION_METRIC) is not None
    assert receiver.wait_for_metric("telemetryflow.errors") is not None


@pytest.mark.parametrize("fault", ["stalled", "down"])
def test_calls_never_wait_for_a_stalled_or_missing_collector(
    receiver: OTLPReceiver, fault: str
) -> None:
    """Exports run on background threads: a collector that never answers, or is not
    there at all, changes nothing for the calling thread.

    No clock decides it. A stalled collector holds each export attempt for a minute (the
    attempt timeout); against a missing one an attempt either waits for it as long or
    fails at once, and then the next waits a minute or more (the backoff). So while the
    calls run, no attempt can have ended (stalled) and no signal can have made a second
    one (down), unless a call waited for an export: the attempts it waited for would
    have ended first."""
    minute = timedelta(seconds=60)
    builder = (
        builder_for(receiver)
        .with_batch_settings(timeout=timedelta(milliseconds=10), max_size=8)
        .with_timeout(minute)
        .with_retry(max_retries=3, backoff=2 * minute)
        .with_retry_max_backoff(2 * minute)  # jitter keeps it at one minute or more
    )
    client = builder.build()
    client.set_feature_flags({"f": {"rollout": 50}})
    client.initialize()
    if fault == "stalled":
        receiver.blackhole()
    else:
        receiver.go_down()

    @client.track("work")
    def work(n: int) -> int:
        return n

    done = 0
    try:
        for n in range(300):
            client.trace("n", n)
            work(n)
            client.event("tick", n=n)
            client.capture_error("x", code="E")
            client.track_event("e", {"n": n})
            client.is_enabled("f", user_id=str(n))
            done += 1
        failed = {name: s["requests_failed"] for name, s in client._stats_snapshot().items()}
        exported = {name: s["exported"] for name, s in client._stats_snapshot().items()}
    finally:
        started = time.perf_counter()
        client.shutdown(timeout=1.0)
        shutdown_took = time.perf_counter() - started
        receiver.blackhole(False)
    assert done == 300
    assert exported == {"traces": 0, "metrics": 0, "logs": 0}
    if fault == "stalled":
        assert failed == {"traces": 0, "metrics": 0, "logs": 0}  # every attempt still open
    else:
        assert all(count <= 1 for count in failed.values()), failed  # no retry reached
    assert shutdown_took < 30.0, shutdown_took  # its own deadline, not the attempt's minute


# -- any value, never an exception -------------------------------------------------------------
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=JSONISH | st.sets(st.integers(), max_size=4) | st.builds(object))
def test_trace_turns_any_value_into_a_valid_attribute(value: Any) -> None:
    _track.add_metadata("k", value)
    pending = take_metadata() or {}
    if value is None:
        assert pending == {}
        return
    kept = BoundedAttributes(attributes=pending)  # what OpenTelemetry would keep
    assert "k" in kept, pending
