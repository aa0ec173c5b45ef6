"""The gRPC receiver's worker threads cannot be held by calls that never send a message."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest
from collector_helpers import KEY_A, KEY_B, make_span, metadata_for, trace_request
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from telemetryflow.collector import Collector

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _silent(stop: threading.Event) -> Iterator[bytes]:
    """A request stream that never yields its message (until the test ends)."""
    stop.wait(60)
    yield from ()


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _open_silent(channel: grpc.Channel, count: int, stop: threading.Event) -> list[grpc.Future]:
    call = channel.stream_unary(
        _EXPORT,
        request_serializer=None,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
    )
    return [
        call.future(_silent(stop), metadata=metadata_for(KEY_A), timeout=60) for _ in range(count)
    ]


def _wait_for(futures: list[grpc.Future], count: int) -> list[grpc.Future]:
    """The first ``count`` futures to finish (bounded: at most 30 s of polling)."""
    finished = threading.Event()
    for future in futures:
        future.add_done_callback(lambda _: finished.set())
    for _ in range(300):
        done = [f for f in futures if f.done()]
        if len(done) >= count:
            return done
        finished.wait(0.1)
        finished.clear()
    raise AssertionError(f"only {sum(f.done() for f in futures)} of {count} calls ended")


def _code(future: grpc.Future) -> grpc.StatusCode:
    error = future.exception(timeout=30)
    assert isinstance(error, grpc.Call)
    return error.code()


def test_one_key_silent_streams_leave_workers_for_others(
    make_collector: Callable[..., Collector], stop: threading.Event
) -> None:
    collector = make_collector(grpc_workers=8)
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        silent = _open_silent(channel, 8, stop)
        # past its share of the workers, the key's further calls are refused at once
        done = _wait_for(silent, 4)
        assert [_code(f) for f in done] == [grpc.StatusCode.UNAVAILABLE] * 4
        assert sum(not f.done() for f in silent) == 4  # four still hold a worker each
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for n in range(3):
            span = make_span(TRACE, f"{n + 1:016x}", f"b-{n}")
            stub.Export(trace_request("svc", [span]), metadata=metadata_for(KEY_B), timeout=20)
        for future in silent:
            future.cancel()


def test_a_message_that_never_arrives_ends_the_call(
    make_collector: Callable[..., Collector], stop: threading.Event
) -> None:
    collector = make_collector(body_timeout=1.0)
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        silent = _open_silent(channel, 2, stop)
        assert [_code(f) for f in silent] == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
        # the workers are free again: the same key exports
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        span = make_span(TRACE, f"{1:016x}", "after")
        stub.Export(trace_request("svc", [span]), metadata=metadata_for(KEY_A), timeout=20)
